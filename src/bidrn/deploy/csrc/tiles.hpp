// The one walk over a conv's jobs shared by every kernel set: which output tiles a call to
// ConvJobsFn computes, and in what order. Include inside the kernel set's target region (after
// bitconv.hpp), so that the tile function inlines.
#pragma once

#include <algorithm>
#include <cstdint>

#include "bitconv.hpp"

namespace bidrn {
namespace {

// Call tile(n, oh, ow, pixels, oc0) for jobs [begin, end) of the flattened (batch, out_h,
// out_channels_padded / kOcChunk) range, `Pixels` output pixels at a time (fewer at the row's end),
// skipping chunks that hold only padding channels.
//
// Always inlined into the kernel set's conv loop, with the tile function: since each kernel set's
// loop is compiled twice (one branch, summed branches), GCC otherwise keeps it a function of its
// own whose tile function reads what it captured through memory (AVX2: 1.05x the instructions).
//
// The jobs of one output row run tile by tile, every chunk of a tile before the next tile, so that a
// pixel's output channels are written one after the other rather than kOcChunk channels at a time
// across the whole row (measured 1.4x on a 1x1 64 -> 256 conv with AVX-512).
template <int Pixels, class TileFn>
BIDRN_ALWAYS_INLINE void for_each_tile(const ConvArgs& a, int64_t begin, int64_t end, TileFn&& tile) {
  static_assert(Pixels >= 1 && Pixels <= kMaxTilePixels, "the epilogue finishes at most kMaxTilePixels pixels");
  const int64_t chunks = a.out_channels_padded / kOcChunk;
  for (int64_t job = begin; job < end;) {
    const int64_t row = job / chunks, first_chunk = job % chunks;
    const int64_t last_chunk = std::min(chunks, first_chunk + (end - job));
    job += last_chunk - first_chunk;
    const int64_t oh = row % a.out_h, n = row / a.out_h;
    for (int64_t ow = 0; ow < a.out_w; ow += Pixels) {
      const int pixels = static_cast<int>(std::min<int64_t>(Pixels, a.out_w - ow));
      for (int64_t chunk = first_chunk; chunk < last_chunk && chunk * kOcChunk < a.out_channels; ++chunk)
        tile(n, oh, ow, pixels, chunk * kOcChunk);
    }
  }
}

// The branches of a conv (ConvArgs::branches) as convs of their own for the popcount loops: their
// weights, tap sums and first word. The epilogue reads the rest by branch (epilogue.hpp). Sums:
// whether the conv has several (the kernel sets' conv_jobs<true>); otherwise the conv is its
// own one branch, so the loops over branches are those of one conv, with no copy.
template <bool Sums>
class Branches {
 public:
  static constexpr int kMax = Sums ? static_cast<int>(kMaxBranches) : 1;

  explicit Branches(const ConvArgs& a) : conv_(a), count_(Sums ? static_cast<int>(a.branches) : 1) {
    const int64_t taps = a.kernel_h * a.kernel_w;
    for (int g = 0; Sums && g < count_; ++g) {
      ConvArgs& b = branch_[g];
      b = a;
      b.weights = a.weights + g * a.out_channels_padded * taps * a.words;
      b.tap_sums = a.tap_sums + g * taps * a.out_channels_padded;
      b.word_offset = a.word_offset + g * a.branch_words;
    }
  }
  int count() const { return count_; }
  const ConvArgs& operator[](int g) const { return Sums ? branch_[g] : conv_; }

 private:
  const ConvArgs& conv_;
  int count_;
  ConvArgs branch_[Sums ? kMaxBranches : 1];
};

// A kernel set's ConvJobsFn from its conv loop compiled for one branch and for summed branches
// (ConvArgs::branches), each with the epilogue instantiations of its own (epilogue.hpp).
template <ConvJobsFn OneBranch, ConvJobsFn Summed>
void conv_jobs_by_branches(const ConvArgs& a, int64_t begin, int64_t end) {
  (a.branches > 1 ? Summed : OneBranch)(a, begin, end);
}

}  // namespace
}  // namespace bidrn
