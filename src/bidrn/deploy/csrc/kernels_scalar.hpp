// Portable scalar conv loop, included by kernels_generic.cpp (plain build) and kernels_popcnt.cpp
// (the same code compiled for the x86 POPCNT instruction) after simd_scalar.hpp, epilogue.hpp and
// pack.hpp. Internal linkage keeps the two compilations apart.
#pragma once

#include <cstring>

#include "bitconv.hpp"
#include "epilogue.hpp"
#include "simd_scalar.hpp"
#include "tiles.hpp"

namespace bidrn {
namespace {

// One output pixel at a time, all 32 channels of the job: popcounts, then the shared epilogue.
// Summed: a conv of several branches (ConvArgs::branches); compiled apart from the one-branch loop
// (conv_jobs_by_branches, tiles.hpp).
template <bool Summed>
void scalar_conv_jobs(const ConvArgs& a, int64_t begin, int64_t end) {
  const int64_t taps = a.kernel_h * a.kernel_w;
  const Interior rows = interior_rows(a), columns = interior_columns(a);
  const Branches<Summed> branches(a);
  int32_t lost[Branches<Summed>::kMax * kOcChunk];
  for_each_tile<1>(a, begin, end, [&](int64_t n, int64_t oh, int64_t ow, int, int64_t oc0) {
    const uint64_t* row_base =
        a.packed + (n * a.buf_h + oh * a.stride_h + a.offset_h + a.buf_top) * a.buf_w * a.pixel_words;
    for (int g = 0; g < branches.count(); ++g) {
      const ConvArgs& b = branches[g];
      int32_t* const branch_lost = lost + g * kOcChunk;
      const uint64_t* pixel = row_base + (ow * b.stride_w + b.offset_w + b.buf_left) * b.pixel_words + b.word_offset;
      std::memset(branch_lost, 0, sizeof(int32_t) * kOcChunk);
      for (int64_t kh = 0; kh < b.kernel_h; ++kh)
        for (int64_t kw = 0; kw < b.kernel_w; ++kw) {
          const int64_t t = kh * b.kernel_w + kw;
          const uint64_t* act = pixel + (kh * b.dilation_h * b.buf_w + kw * b.dilation_w) * b.pixel_words;
          for (int64_t block = 0; block < kOcChunk / kOcBlock; ++block) {
            const uint64_t* w = b.weights + (((oc0 / kOcBlock + block) * taps + t) * b.words) * kOcBlock;
            for (int64_t j = 0; j < b.words; ++j)
              for (int64_t k = 0; k < kOcBlock; ++k)
                branch_lost[block * kOcBlock + k] += 2 * __builtin_popcountll(act[j] ^ w[j * kOcBlock + k]);
          }
        }
      correct_border(b, rows, columns, oh, ow, 1, oc0, kOcChunk, branch_lost);
    }
    epilogue<ScalarVec, Summed>(a, n, oh, ow, 1, oc0, lost, kOcChunk);
  });
}

}  // namespace
}  // namespace bidrn
