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

namespace bidrn {
namespace avx512 {

constexpr int kPixels = 6;

static void pack_rows(const PackArgs& a, int64_t begin, int64_t end) {
  const __m512 zero = _mm512_setzero_ps();
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
  for (int64_t row = begin; row < end; ++row) {
    const int64_t n = row / a.in_h, h = row % a.in_h;
    const float* src = a.input + n * a.in_stride_n + h * a.in_stride_h;
    uint64_t* dst = a.packed + ((n * a.buf_h + h + a.buf_top) * a.buf_w + a.buf_left) * a.words;
    __m512 abs_sum = _mm512_setzero_ps();
    for (int64_t w = 0; w < a.in_w; ++w, src += a.in_stride_w, dst += a.words) {
      for (int64_t j = 0; j < a.words; ++j) {
        uint64_t bits = 0;
        for (int64_t q = 0; q < 4; ++q) {
          const int64_t c = j * 64 + q * 16;
          if (c >= a.channels) break;
          const int64_t left = a.channels - c;
          const __mmask16 valid = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
          const __m512 x = _mm512_maskz_loadu_ps(valid, src + c);
          const __m512 limit = a.threshold ? _mm512_maskz_loadu_ps(valid, a.threshold + c) : zero;
          const __mmask16 negative = _mm512_mask_cmp_ps_mask(valid, x, limit, _CMP_LT_OQ);
          bits |= static_cast<uint64_t>(negative) << (q * 16);
          if (a.row_abs_sum)
            abs_sum = _mm512_add_ps(abs_sum, _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), abs_mask)));
        }
        dst[j] = bits;
      }
    }
    if (a.row_abs_sum) {
      alignas(64) float lanes[16];
      _mm512_store_ps(lanes, abs_sum);
      double total = 0.0;
      for (float lane : lanes) total += lane;
      a.row_abs_sum[row] = total;
    }
  }
}

// Convolve `pixels` (<= P) output pixels starting at `ow` for the 32 channels of chunk `oc0`.
template <int P>
static inline void tile(const ConvArgs& a, int64_t oh, int64_t ow, int pixels, int64_t oc0,
                        const uint64_t* row_base, float scale, float* out_row, const float* residual_row) {
  const int64_t taps = a.kernel_h * a.kernel_w;
  const int64_t block_stride = taps * a.words * kOcBlock;
  const uint64_t* pixel[P];
  for (int i = 0; i < P; ++i) {
    const int64_t x = ow + std::min(i, pixels - 1);
    pixel[i] = row_base + (x * a.stride_w + a.offset_w + a.buf_left) * a.words;
  }
  __m512i acc[P][4];
  for (int i = 0; i < P; ++i)
    for (int v = 0; v < 4; ++v) acc[i][v] = _mm512_setzero_si512();
  const uint64_t* w_tap = a.weights + (oc0 / kOcBlock) * block_stride;
  for (int64_t kh = 0; kh < a.kernel_h; ++kh)
    for (int64_t kw = 0; kw < a.kernel_w; ++kw, w_tap += a.words * kOcBlock) {
      const int64_t tap_offset = (kh * a.dilation_h * a.buf_w + kw * a.dilation_w) * a.words;
      for (int64_t j = 0; j < a.words; ++j) {
        const uint64_t* wp = w_tap + j * kOcBlock;
        const __m512i w0 = _mm512_loadu_si512(wp);
        const __m512i w1 = _mm512_loadu_si512(wp + block_stride);
        const __m512i w2 = _mm512_loadu_si512(wp + 2 * block_stride);
        const __m512i w3 = _mm512_loadu_si512(wp + 3 * block_stride);
        for (int i = 0; i < P; ++i) {
          const __m512i x = _mm512_set1_epi64(static_cast<long long>(pixel[i][tap_offset + j]));
          acc[i][0] = _mm512_add_epi64(acc[i][0], _mm512_popcnt_epi64(_mm512_xor_si512(x, w0)));
          acc[i][1] = _mm512_add_epi64(acc[i][1], _mm512_popcnt_epi64(_mm512_xor_si512(x, w1)));
          acc[i][2] = _mm512_add_epi64(acc[i][2], _mm512_popcnt_epi64(_mm512_xor_si512(x, w2)));
          acc[i][3] = _mm512_add_epi64(acc[i][3], _mm512_popcnt_epi64(_mm512_xor_si512(x, w3)));
        }
      }
    }
  // Epilogue: value = taps*C - 2*pop - correction; out = value * multiplier * scale + addend.
  const int64_t count = std::min<int64_t>(kOcChunk, a.out_channels - oc0);
  const __m512i full = _mm512_set1_epi32(static_cast<int>(taps * a.channels));
  const __m512 mul_lo = _mm512_mul_ps(_mm512_loadu_ps(a.multiplier + oc0), _mm512_set1_ps(scale));
  const __m512 mul_hi = _mm512_mul_ps(_mm512_loadu_ps(a.multiplier + oc0 + 16), _mm512_set1_ps(scale));
  const __m512 add_lo = _mm512_loadu_ps(a.addend + oc0);
  const __m512 add_hi = _mm512_loadu_ps(a.addend + oc0 + 16);
  const __mmask16 store_lo = count >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << count) - 1);
  const __mmask16 store_hi = count >= 32 ? static_cast<__mmask16>(0xffff)
                             : count > 16 ? static_cast<__mmask16>((1u << (count - 16)) - 1)
                                          : static_cast<__mmask16>(0);
  int64_t kh_lo, kh_hi;
  valid_tap_range(oh, a.stride_h, a.offset_h, a.dilation_h, a.kernel_h, a.in_h, &kh_lo, &kh_hi);
  const bool row_interior = kh_lo == 0 && kh_hi == a.kernel_h;
  alignas(64) int32_t correction[kOcChunk];
  for (int i = 0; i < pixels; ++i) {
    __m512i pop_lo = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(acc[i][0])),
                                        _mm512_cvtepi64_epi32(acc[i][1]), 1);
    __m512i pop_hi = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(acc[i][2])),
                                        _mm512_cvtepi64_epi32(acc[i][3]), 1);
    __m512i value_lo = _mm512_sub_epi32(full, _mm512_add_epi32(pop_lo, pop_lo));
    __m512i value_hi = _mm512_sub_epi32(full, _mm512_add_epi32(pop_hi, pop_hi));
    int64_t kw_lo, kw_hi;
    valid_tap_range(ow + i, a.stride_w, a.offset_w, a.dilation_w, a.kernel_w, a.in_w, &kw_lo, &kw_hi);
    if (!row_interior || kw_lo != 0 || kw_hi != a.kernel_w) {
      border_correction(a, oh, ow + i, oc0, kOcChunk, correction);
      value_lo = _mm512_sub_epi32(value_lo, _mm512_load_si512(correction));
      value_hi = _mm512_sub_epi32(value_hi, _mm512_load_si512(correction + 16));
    }
    float* out = out_row + (ow + i) * a.out_stride_w;
    __m512 y_lo = _mm512_fmadd_ps(_mm512_cvtepi32_ps(value_lo), mul_lo, add_lo);
    __m512 y_hi = _mm512_fmadd_ps(_mm512_cvtepi32_ps(value_hi), mul_hi, add_hi);
    if (a.post_slope) {  // v > 0 ? v : slope * v
      const __m512 zero = _mm512_setzero_ps();
      y_lo = _mm512_mask_mul_ps(y_lo, _mm512_cmp_ps_mask(y_lo, zero, _CMP_LE_OQ), y_lo,
                                _mm512_loadu_ps(a.post_slope + oc0));
      y_hi = _mm512_mask_mul_ps(y_hi, _mm512_cmp_ps_mask(y_hi, zero, _CMP_LE_OQ), y_hi,
                                _mm512_loadu_ps(a.post_slope + oc0 + 16));
    }
    if (residual_row) {
      const float* r = residual_row + (ow + i) * a.res_stride_w;
      y_lo = _mm512_add_ps(y_lo, _mm512_maskz_loadu_ps(store_lo, r));
      y_hi = _mm512_add_ps(y_hi, _mm512_maskz_loadu_ps(store_hi, r + 16));
    }
    if (a.post_scale) {
      y_lo = _mm512_fmadd_ps(y_lo, _mm512_loadu_ps(a.post_scale + oc0), _mm512_loadu_ps(a.post_shift + oc0));
      y_hi = _mm512_fmadd_ps(y_hi, _mm512_loadu_ps(a.post_scale + oc0 + 16), _mm512_loadu_ps(a.post_shift + oc0 + 16));
    }
    if (a.accumulate) {
      y_lo = _mm512_add_ps(y_lo, _mm512_maskz_loadu_ps(store_lo, out));
      y_hi = _mm512_add_ps(y_hi, _mm512_maskz_loadu_ps(store_hi, out + 16));
    }
    if (a.post_clamp) {
      const __m512 lower = _mm512_set1_ps(a.post_clamp[0]), upper = _mm512_set1_ps(a.post_clamp[1]);
      y_lo = _mm512_min_ps(_mm512_max_ps(y_lo, lower), upper);
      y_hi = _mm512_min_ps(_mm512_max_ps(y_hi, lower), upper);
    }
    _mm512_mask_storeu_ps(out, store_lo, y_lo);
    _mm512_mask_storeu_ps(out + 16, store_hi, y_hi);
  }
}

static void conv_jobs(const ConvArgs& a, int64_t begin, int64_t end) {
  const int64_t chunks = a.out_channels_padded / kOcChunk;
  for (int64_t job = begin; job < end; ++job) {
    const int64_t chunk = job % chunks, oh = (job / chunks) % a.out_h, n = job / (chunks * a.out_h);
    const int64_t oc0 = chunk * kOcChunk;
    if (oc0 >= a.out_channels) continue;
    const float scale = a.sample_scale ? a.sample_scale[n] : 1.0f;
    const uint64_t* row_base =
        a.packed + (n * a.buf_h + oh * a.stride_h + a.offset_h + a.buf_top) * a.buf_w * a.words;
    // Post-ops run in the tile epilogue, so tiles write straight into `out`.
    float* out_row = a.out + n * a.out_stride_n + oh * a.out_stride_h + oc0;
    const float* residual_row =
        a.residual ? a.residual + n * a.res_stride_n + oh * a.res_stride_h + oc0 : nullptr;
    for (int64_t ow = 0; ow < a.out_w; ow += kPixels) {
      const int pixels = static_cast<int>(std::min<int64_t>(kPixels, a.out_w - ow));
      tile<kPixels>(a, oh, ow, pixels, oc0, row_base, scale, out_row, residual_row);
    }
  }
}

}  // namespace avx512
}  // namespace bidrn

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace bidrn {
const KernelSet& avx512_kernels() {
  static const KernelSet set{"avx512", avx512::pack_rows, avx512::conv_jobs};
  return set;
}
}  // namespace bidrn
#endif
