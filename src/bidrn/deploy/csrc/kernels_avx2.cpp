// AVX2 kernel set: no vector popcount instruction, so popcounts use the nibble lookup table with
// VPSHUFB (Mula's method); per-byte counts are accumulated for up to 31 words and then widened
// with VPSADBW, which keeps the widening off the inner loop.
//
// Register tile: kPixels output pixels x kVectors vectors of four output channels (one 64-bit
// lane each). Nibbles of the weights are split once per word and reused by every pixel.
#include "bitconv.hpp"

#ifdef BIDRN_X86_DISPATCH
#include <immintrin.h>

#include <algorithm>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,popcnt"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,popcnt")
#endif

namespace bidrn {
namespace avx2 {

constexpr int kPixels = 3;
constexpr int kVectors = 2;
constexpr int kLanes = 4;              // output channels per vector
constexpr int64_t kMaxByteWords = 31;  // 31 words x 8 bits per byte <= 255

static void pack_rows(const PackArgs& a, int64_t begin, int64_t end) {
  const __m256 zero = _mm256_setzero_ps();
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t row = begin; row < end; ++row) {
    const int64_t n = row / a.in_h, h = row % a.in_h;
    const float* src = a.input + n * a.in_stride_n + h * a.in_stride_h;
    uint64_t* dst = a.packed + ((n * a.buf_h + h + a.buf_top) * a.buf_w + a.buf_left) * a.words;
    __m256 abs_sum = _mm256_setzero_ps();
    double tail_sum = 0.0;
    const int64_t full_groups = a.channels / 8;
    for (int64_t w = 0; w < a.in_w; ++w, src += a.in_stride_w, dst += a.words) {
      for (int64_t j = 0; j < a.words; ++j) dst[j] = 0;
      for (int64_t g = 0; g < full_groups; ++g) {
        const __m256 x = _mm256_loadu_ps(src + g * 8);
        const __m256 limit = a.threshold ? _mm256_loadu_ps(a.threshold + g * 8) : zero;
        const uint64_t negative = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(x, limit, _CMP_LT_OQ)));
        dst[g / 8] |= negative << ((g % 8) * 8);
        abs_sum = _mm256_add_ps(abs_sum, _mm256_and_ps(x, abs_mask));
      }
      for (int64_t c = full_groups * 8; c < a.channels; ++c) {
        const float limit = a.threshold ? a.threshold[c] : 0.0f;
        dst[c / 64] |= static_cast<uint64_t>(src[c] < limit) << (c % 64);
        tail_sum += src[c] < 0 ? -src[c] : src[c];
      }
    }
    if (a.row_abs_sum) {
      alignas(32) float lanes[8];
      _mm256_store_ps(lanes, abs_sum);
      for (float lane : lanes) tail_sum += lane;
      a.row_abs_sum[row] = tail_sum;
    }
  }
}

// Popcounts of (activation XOR weight) for `pixels` (<= kPixels) pixels from `ow` and the
// kVectors * 4 channels whose first weight block is `w_base` (+ `lane_offset` lanes), written to
// pop[i][v] as four 64-bit counts.
static inline void tile_popcounts(const ConvArgs& a, const uint64_t* const* pixel, const uint64_t* w_base,
                                  int64_t lane_offset, __m256i (&pop)[kPixels][kVectors]) {
  const int64_t taps = a.kernel_h * a.kernel_w;
  const int64_t block_stride = taps * a.words * kOcBlock;
  const __m256i low_nibbles = _mm256_set1_epi8(0x0f);
  const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1,
                                         2, 2, 3, 2, 3, 3, 4);
  const __m256i zero = _mm256_setzero_si256();
  __m256i bytes[kPixels][kVectors];
  for (int i = 0; i < kPixels; ++i)
    for (int v = 0; v < kVectors; ++v) {
      pop[i][v] = zero;
      bytes[i][v] = zero;
    }
  int64_t pending = 0;
  const uint64_t* w_tap = w_base;
  for (int64_t kh = 0; kh < a.kernel_h; ++kh)
    for (int64_t kw = 0; kw < a.kernel_w; ++kw, w_tap += a.words * kOcBlock) {
      const int64_t tap_offset = (kh * a.dilation_h * a.buf_w + kw * a.dilation_w) * a.words;
      for (int64_t j = 0; j < a.words; ++j) {
        __m256i w_lo[kVectors], w_hi[kVectors];
        for (int v = 0; v < kVectors; ++v) {
          const int64_t lane = lane_offset + v * kLanes;
          const uint64_t* wp = w_tap + (lane / kOcBlock) * block_stride + j * kOcBlock + lane % kOcBlock;
          const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp));
          w_lo[v] = _mm256_and_si256(w, low_nibbles);
          w_hi[v] = _mm256_and_si256(_mm256_srli_epi64(w, 4), low_nibbles);
        }
        for (int i = 0; i < kPixels; ++i) {
          const __m256i x = _mm256_set1_epi64x(static_cast<long long>(pixel[i][tap_offset + j]));
          const __m256i x_lo = _mm256_and_si256(x, low_nibbles);
          const __m256i x_hi = _mm256_and_si256(_mm256_srli_epi64(x, 4), low_nibbles);
          for (int v = 0; v < kVectors; ++v) {
            const __m256i count = _mm256_add_epi8(_mm256_shuffle_epi8(table, _mm256_xor_si256(x_lo, w_lo[v])),
                                                  _mm256_shuffle_epi8(table, _mm256_xor_si256(x_hi, w_hi[v])));
            bytes[i][v] = _mm256_add_epi8(bytes[i][v], count);
          }
        }
        if (++pending == kMaxByteWords) {
          for (int i = 0; i < kPixels; ++i)
            for (int v = 0; v < kVectors; ++v) {
              pop[i][v] = _mm256_add_epi64(pop[i][v], _mm256_sad_epu8(bytes[i][v], zero));
              bytes[i][v] = zero;
            }
          pending = 0;
        }
      }
    }
  for (int i = 0; i < kPixels; ++i)
    for (int v = 0; v < kVectors; ++v) pop[i][v] = _mm256_add_epi64(pop[i][v], _mm256_sad_epu8(bytes[i][v], zero));
}

static void conv_jobs(const ConvArgs& a, int64_t begin, int64_t end) {
  static_assert(kVectors * kLanes == 8, "the epilogue converts two vectors (8 channels) at a time");
  const int64_t chunks = a.out_channels_padded / kOcChunk;
  const int64_t taps = a.kernel_h * a.kernel_w;
  const __m256i full = _mm256_set1_epi32(static_cast<int>(taps * a.channels));
  alignas(32) int32_t correction[kOcChunk];
  for (int64_t job = begin; job < end; ++job) {
    const int64_t chunk = job % chunks, oh = (job / chunks) % a.out_h, n = job / (chunks * a.out_h);
    const int64_t oc0 = chunk * kOcChunk;
    if (oc0 >= a.out_channels) continue;
    const __m256 scale = _mm256_set1_ps(a.sample_scale ? a.sample_scale[n] : 1.0f);
    const uint64_t* row_base =
        a.packed + (n * a.buf_h + oh * a.stride_h + a.offset_h + a.buf_top) * a.buf_w * a.words;
    int64_t kh_lo, kh_hi;
    valid_tap_range(oh, a.stride_h, a.offset_h, a.dilation_h, a.kernel_h, a.in_h, &kh_lo, &kh_hi);
    const bool row_interior = kh_lo == 0 && kh_hi == a.kernel_h;
    // Post-ops run in the epilogue below, so results go straight into `out`.
    float* out_row = a.out + n * a.out_stride_n + oh * a.out_stride_h + oc0;
    const float* residual_row =
        a.residual ? a.residual + n * a.res_stride_n + oh * a.res_stride_h + oc0 : nullptr;
    for (int64_t ow = 0; ow < a.out_w; ow += kPixels) {
      const int pixels = static_cast<int>(std::min<int64_t>(kPixels, a.out_w - ow));
      const uint64_t* pixel[kPixels];
      bool border[kPixels];
      for (int i = 0; i < kPixels; ++i) {
        const int64_t x = ow + std::min(i, pixels - 1);
        pixel[i] = row_base + (x * a.stride_w + a.offset_w + a.buf_left) * a.words;
        int64_t kw_lo, kw_hi;
        valid_tap_range(x, a.stride_w, a.offset_w, a.dilation_w, a.kernel_w, a.in_w, &kw_lo, &kw_hi);
        border[i] = !row_interior || kw_lo != 0 || kw_hi != a.kernel_w;
      }
      for (int64_t lane = 0; lane < kOcChunk && oc0 + lane < a.out_channels; lane += kVectors * kLanes) {
        __m256i pop[kPixels][kVectors];
        tile_popcounts(a, pixel, a.weights + (oc0 / kOcBlock) * taps * a.words * kOcBlock, lane, pop);
        const int64_t oc = oc0 + lane;
        const int64_t count = std::min<int64_t>(kVectors * kLanes, a.out_channels - oc);
        const __m256 mul = _mm256_mul_ps(_mm256_loadu_ps(a.multiplier + oc), scale);
        const __m256 add = _mm256_loadu_ps(a.addend + oc);
        const __m256i valid = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)),
                                                 _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        for (int i = 0; i < pixels; ++i) {
          // Two vectors of four 64-bit counts -> eight 32-bit counts in channel order.
          const __m256i packed32 = _mm256_castps_si256(_mm256_shuffle_ps(
              _mm256_castsi256_ps(pop[i][0]), _mm256_castsi256_ps(pop[i][1]), _MM_SHUFFLE(2, 0, 2, 0)));
          const __m256i counts = _mm256_permute4x64_epi64(packed32, _MM_SHUFFLE(3, 1, 2, 0));
          __m256i value = _mm256_sub_epi32(full, _mm256_add_epi32(counts, counts));
          if (border[i]) {
            border_correction(a, oh, ow + i, oc, kVectors * kLanes, correction);
            value = _mm256_sub_epi32(value, _mm256_load_si256(reinterpret_cast<const __m256i*>(correction)));
          }
          __m256 y = _mm256_fmadd_ps(_mm256_cvtepi32_ps(value), mul, add);
          float* out = out_row + (ow + i) * a.out_stride_w + lane;
          if (a.post_slope) {  // v > 0 ? v : slope * v
            const __m256 scaled = _mm256_mul_ps(y, _mm256_loadu_ps(a.post_slope + oc));
            y = _mm256_blendv_ps(scaled, y, _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_GT_OQ));
          }
          if (residual_row) y = _mm256_add_ps(y, _mm256_maskload_ps(residual_row + (ow + i) * a.res_stride_w + lane, valid));
          if (a.post_scale) y = _mm256_fmadd_ps(y, _mm256_loadu_ps(a.post_scale + oc), _mm256_loadu_ps(a.post_shift + oc));
          if (a.accumulate) y = _mm256_add_ps(y, _mm256_maskload_ps(out, valid));
          if (a.post_clamp)
            y = _mm256_min_ps(_mm256_max_ps(y, _mm256_set1_ps(a.post_clamp[0])), _mm256_set1_ps(a.post_clamp[1]));
          _mm256_maskstore_ps(out, valid, y);
        }
      }
    }
  }
}

}  // namespace avx2
}  // namespace bidrn

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace bidrn {
const KernelSet& avx2_kernels() {
  static const KernelSet set{"avx2", avx2::pack_rows, avx2::conv_jobs};
  return set;
}
}  // namespace bidrn
#endif
