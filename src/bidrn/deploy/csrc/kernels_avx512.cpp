// AVX-512 kernel set: VPOPCNTQ on 512-bit vectors (Ice Lake, Zen 4 and later).
//
// Register tile: kPixels output pixels x 32 output channels (four vectors of eight 64-bit lanes,
// one lane per output channel); each activation word is broadcast once and XOR-popcounted against
// the four weight vectors.
#include "bitconv.hpp"

#ifdef BIDRN_X86_DISPATCH
#include <immintrin.h>

#include <algorithm>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vpopcntdq,popcnt"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vpopcntdq,popcnt")
// GCC 12 reports its own _mm256_undefined_si256() inside the AVX-512 conversion intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "epilogue.hpp"
#include "pack.hpp"
#include "simd_avx512.hpp"
#include "tiles.hpp"

namespace bidrn {
namespace {

constexpr int kPixels = 6;

// lost[0..32) = 2 * the popcounts of one pixel's 32 channels, held in four vectors of 64-bit lanes.
inline void store_doubled(const __m512i (&counts)[4], int32_t* lost) {
  const __m512i low = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(counts[0])),
                                         _mm512_cvtepi64_epi32(counts[1]), 1);
  const __m512i high = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(counts[2])),
                                          _mm512_cvtepi64_epi32(counts[3]), 1);
  _mm512_storeu_si512(lost, _mm512_add_epi32(low, low));
  _mm512_storeu_si512(lost + 16, _mm512_add_epi32(high, high));
}

// lost[i * kOcChunk + k] = 2 * popcount for pixel ow + i (i < pixels) and channel oc0 + k.
inline void tile_popcounts(const ConvArgs& a, const uint64_t* row_base, int64_t ow, int pixels, int64_t oc0,
                           int32_t* lost) {
  const int64_t taps = a.kernel_h * a.kernel_w;
  const int64_t block_stride = taps * a.words * kOcBlock;
  const uint64_t* pixel[kPixels];
  for (int i = 0; i < kPixels; ++i) {
    const int64_t x = ow + std::min(i, pixels - 1);  // a short tile repeats its last pixel
    pixel[i] = row_base + (x * a.stride_w + a.offset_w + a.buf_left) * a.pixel_words + a.word_offset;
  }
  __m512i acc[kPixels][4];
  for (int i = 0; i < kPixels; ++i)
    for (int v = 0; v < 4; ++v) acc[i][v] = _mm512_setzero_si512();
  const uint64_t* w_tap = a.weights + (oc0 / kOcBlock) * block_stride;
  for (int64_t kh = 0; kh < a.kernel_h; ++kh)
    for (int64_t kw = 0; kw < a.kernel_w; ++kw, w_tap += a.words * kOcBlock) {
      const int64_t tap_offset = (kh * a.dilation_h * a.buf_w + kw * a.dilation_w) * a.pixel_words;
      for (int64_t j = 0; j < a.words; ++j) {
        const uint64_t* wp = w_tap + j * kOcBlock;
        const __m512i w0 = _mm512_loadu_si512(wp);
        const __m512i w1 = _mm512_loadu_si512(wp + block_stride);
        const __m512i w2 = _mm512_loadu_si512(wp + 2 * block_stride);
        const __m512i w3 = _mm512_loadu_si512(wp + 3 * block_stride);
        for (int i = 0; i < kPixels; ++i) {
          const __m512i x = _mm512_set1_epi64(static_cast<long long>(pixel[i][tap_offset + j]));
          acc[i][0] = _mm512_add_epi64(acc[i][0], _mm512_popcnt_epi64(_mm512_xor_si512(x, w0)));
          acc[i][1] = _mm512_add_epi64(acc[i][1], _mm512_popcnt_epi64(_mm512_xor_si512(x, w1)));
          acc[i][2] = _mm512_add_epi64(acc[i][2], _mm512_popcnt_epi64(_mm512_xor_si512(x, w2)));
          acc[i][3] = _mm512_add_epi64(acc[i][3], _mm512_popcnt_epi64(_mm512_xor_si512(x, w3)));
        }
      }
    }
  for (int i = 0; i < pixels; ++i) store_doubled(acc[i], lost + i * kOcChunk);
}

// tile_popcounts for a 1x1 conv over one word per pixel (64 input channels or fewer): nothing to
// accumulate, so each result is one XOR-popcount, written straight to `lost`.
inline void single_word_popcounts(const ConvArgs& a, const uint64_t* row_base, int64_t ow, int pixels, int64_t oc0,
                                  int32_t* lost) {
  const uint64_t* w = a.weights + oc0;  // (out_channels_padded / 8, 1, 1, 8): channel oc0 is word oc0
  const __m512i w0 = _mm512_loadu_si512(w), w1 = _mm512_loadu_si512(w + 8);
  const __m512i w2 = _mm512_loadu_si512(w + 16), w3 = _mm512_loadu_si512(w + 24);
  const int64_t step = a.stride_w * a.pixel_words;
  const uint64_t* pixel = row_base + (ow * a.stride_w + a.offset_w + a.buf_left) * a.pixel_words + a.word_offset;
  for (int i = 0; i < pixels; ++i, pixel += step) {
    const __m512i x = _mm512_set1_epi64(static_cast<long long>(*pixel));
    const auto count = [&](__m512i block) { return _mm512_popcnt_epi64(_mm512_xor_si512(x, block)); };
    const __m512i counts[4] = {count(w0), count(w1), count(w2), count(w3)};
    store_doubled(counts, lost + i * kOcChunk);
  }
}

// Summed: a conv of several branches (ConvArgs::branches); compiled apart from the one-branch loop
// (conv_jobs_by_branches, tiles.hpp).
template <bool Summed>
void conv_jobs(const ConvArgs& a, int64_t begin, int64_t end) {
  const Interior rows = interior_rows(a), columns = interior_columns(a);
  const bool single_word = a.kernel_h * a.kernel_w == 1 && a.words == 1;
  constexpr int64_t kLostPerBranch = kPixels * kOcChunk;
  const Branches<Summed> branches(a);
  alignas(64) int32_t lost[Branches<Summed>::kMax * kLostPerBranch];
  for_each_tile<kPixels>(a, begin, end, [&](int64_t n, int64_t oh, int64_t ow, int pixels, int64_t oc0) {
    const uint64_t* row_base =
        a.packed + (n * a.buf_h + oh * a.stride_h + a.offset_h + a.buf_top) * a.buf_w * a.pixel_words;
    for (int g = 0; g < branches.count(); ++g) {
      const ConvArgs& b = branches[g];
      int32_t* const branch_lost = lost + g * kLostPerBranch;
      if (single_word)
        single_word_popcounts(b, row_base, ow, pixels, oc0, branch_lost);
      else
        tile_popcounts(b, row_base, ow, pixels, oc0, branch_lost);
      correct_border(b, rows, columns, oh, ow, pixels, oc0, kOcChunk, branch_lost);
    }
    epilogue<Avx512Vec, Summed>(a, n, oh, ow, pixels, oc0, lost, kLostPerBranch);
  });
}

}  // namespace
}  // namespace bidrn

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace bidrn {
const KernelSet& avx512_kernels() {
  static const KernelSet set{"avx512", 1, pack_rows<Avx512Vec, 1>,
                                  conv_jobs_by_branches<conv_jobs<false>, conv_jobs<true>>};
  return set;
}
}  // namespace bidrn
#endif
