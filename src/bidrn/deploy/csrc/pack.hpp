// The one packing routine of every kernel set: float activations -> sign bits (bit 1 = x < threshold),
// written over a vector-primitive type V (simd_*.hpp) and compiled once per instruction set.
#pragma once

#include <algorithm>
#include <cstdint>

#include "bitconv.hpp"

namespace bidrn {
namespace {

constexpr uint64_t kLowNibbles = 0x0f0f0f0f0f0f0f0full;

// Sign bits of channels [c, c + lanes) of one pixel (bit k = channel c + k is negative), and their
// |x| added to `abs_total` when AbsSum.
template <class V, bool Threshold, bool AbsSum>
inline uint64_t group_bits(const float* x, const float* threshold, int lanes, typename V::F& abs_total) {
  if (AbsSum) abs_total = V::add(abs_total, V::abs_n(x, lanes));
  return V::negative_bits(x, Threshold ? threshold : nullptr, lanes);
}

template <class V, int Planes, bool Threshold, bool AbsSum>
void pack_rows_with(const PackArgs& a, int64_t begin, int64_t end, double* row_abs_sum) {
  constexpr int kGroups = 64 / V::kWidth;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t n = row / a.in_h, h = row % a.in_h;
    const float* src = a.input + n * a.in_stride_n + h * a.in_stride_h;
    uint64_t* dst = a.packed + ((n * a.buf_h + h + a.buf_top) * a.buf_w + a.buf_left) * a.pixel_words * Planes;
    typename V::F abs_total = V::set1(0.0f);
    for (int64_t w = 0; w < a.in_w; ++w, src += a.in_stride_w, dst += a.pixel_words * Planes) {
      for (int64_t j = 0; j < a.pixel_words; ++j) {
        const float* x = src + j * 64;
        const float* threshold = Threshold ? a.threshold + j * 64 : nullptr;
        const int64_t channels = std::min<int64_t>(64, a.channels - j * 64);
        uint64_t bits = 0;
        if (channels == 64) {
          for (int g = 0; g < kGroups; ++g)
            bits |= group_bits<V, Threshold, AbsSum>(x + g * V::kWidth, threshold + g * V::kWidth, V::kWidth,
                                                     abs_total)
                    << (g * V::kWidth);
        } else {
          for (int64_t c = 0; c < channels; c += V::kWidth) {
            const int lanes = static_cast<int>(std::min<int64_t>(V::kWidth, channels - c));
            bits |= group_bits<V, Threshold, AbsSum>(x + c, threshold + c, lanes, abs_total) << c;
          }
        }
        if (Planes == 1) {
          dst[j] = bits;
        } else {
          dst[2 * j] = bits & kLowNibbles;
          dst[2 * j + 1] = (bits >> 4) & kLowNibbles;
        }
      }
    }
    if (AbsSum) row_abs_sum[row] = V::sum(abs_total);
  }
}

// Pack rows [begin, end) of the flattened (batch, in_h) range; see PackRowsFn. With Planes == 2 each
// word is stored as its low nibbles, then its high nibbles (shifted down), for lookup-table popcounts.
template <class V, int Planes>
void pack_rows(const PackArgs& a, int64_t begin, int64_t end, double* row_abs_sum) {
  if (a.threshold)
    (row_abs_sum ? pack_rows_with<V, Planes, true, true> : pack_rows_with<V, Planes, true, false>)(a, begin, end,
                                                                                                  row_abs_sum);
  else
    (row_abs_sum ? pack_rows_with<V, Planes, false, true> : pack_rows_with<V, Planes, false, false>)(
        a, begin, end, row_abs_sum);
}

}  // namespace
}  // namespace bidrn
