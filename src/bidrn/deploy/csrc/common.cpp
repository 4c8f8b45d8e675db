// ISA-independent helpers shared by every kernel set.
#include <algorithm>
#include <cstring>
#include <limits>

#include "bitconv.hpp"

namespace bidrn {

void border_correction(const ConvArgs& a, int64_t oh, int64_t ow, int64_t oc, int64_t count,
                       int32_t* correction) {
  std::memset(correction, 0, sizeof(int32_t) * count);
  int64_t kh_lo, kh_hi, kw_lo, kw_hi;
  valid_tap_range(oh, a.stride_h, a.offset_h, a.dilation_h, a.kernel_h, a.in_h, &kh_lo, &kh_hi);
  valid_tap_range(ow, a.stride_w, a.offset_w, a.dilation_w, a.kernel_w, a.in_w, &kw_lo, &kw_hi);
  for (int64_t kh = 0; kh < a.kernel_h; ++kh) {
    const bool row_inside = kh >= kh_lo && kh < kh_hi;
    for (int64_t kw = 0; kw < a.kernel_w; ++kw) {
      if (row_inside && kw >= kw_lo && kw < kw_hi) continue;
      const int32_t* sums = a.tap_sums + (kh * a.kernel_w + kw) * a.out_channels_padded + oc;
      for (int64_t i = 0; i < count; ++i) correction[i] += sums[i];
    }
  }
}

// The row loops below are compiled for AVX-512, AVX2 and the baseline on x86 and the loader picks
// one (4x faster than SSE2 alone). The clones are whole row loops, so a call dispatches once: a
// clone called per pixel cost as much as the work for a stem's 3 or 64 channels.
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define BIDRN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define BIDRN_CLONES
#endif

// One pixel's channels; the restrict-qualified pointers and the count in a local let the compiler
// vectorize (a uint8_t store may otherwise alias anything, QuantizeArgs included).
inline __attribute__((always_inline)) void quantize_pixel(const float* __restrict src, uint8_t* __restrict dst,
                                                          int64_t channels, float inverse_scale, float offset) {
  for (int64_t c = 0; c < channels; ++c) {
    // Two statements, so that no compiler fuses them into one FMA (torch's formula rounds twice);
    // floor() by truncation, the value being clamped to [0, 255] first.
    const float scaled = src[c] * inverse_scale;
    const float value = std::min(std::max(scaled + offset, 0.0f), 255.0f);
    dst[c] = static_cast<uint8_t>(static_cast<int32_t>(value));
  }
}

BIDRN_CLONES void quantize_rows(const QuantizeArgs& a, int64_t begin, int64_t end) {
  const float inverse_scale = a.inverse_scale, offset = a.zero_point + 0.5f;
  const int64_t channels = a.channels, width = a.in_w;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t n = row / a.in_h, h = row % a.in_h;
    const float* src = a.input + n * a.in_stride_n + h * a.in_stride_h;
    uint8_t* dst = a.out + row * width * channels;
    for (int64_t w = 0; w < width; ++w, src += a.in_stride_w, dst += channels)
      quantize_pixel(src, dst, channels, inverse_scale, offset);
  }
}

// A pooled element as float32: float32 as it is, bfloat16 widened (exactly).
inline float widen(float value) { return value; }
inline float widen(uint16_t value) {
  const uint32_t bits = static_cast<uint32_t>(value) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

// One output row: every output starts at -inf and takes the maximum over its window's taps inside
// the input, a NaN winning (as torch's max pooling). The channel loop is the vectorized one.
template <typename T>
inline __attribute__((always_inline)) void pool_row(const PoolArgs& a, int64_t row) {
  const T* input = static_cast<const T*>(a.input);
  const int64_t channels = a.channels, n = row / a.out_h, oh = row % a.out_h;
  const int64_t h0 = oh * a.stride_h - a.padding_h;
  const int64_t h_lo = std::max<int64_t>(h0, 0), h_hi = std::min(h0 + a.kernel_h, a.in_h);
  float* out_row = a.out + row * a.out_w * channels;
  std::fill(out_row, out_row + a.out_w * channels, -std::numeric_limits<float>::infinity());
  for (int64_t ow = 0; ow < a.out_w; ++ow) {
    float* __restrict dst = out_row + ow * channels;
    const int64_t w0 = ow * a.stride_w - a.padding_w;
    const int64_t w_lo = std::max<int64_t>(w0, 0), w_hi = std::min(w0 + a.kernel_w, a.in_w);
    for (int64_t h = h_lo; h < h_hi; ++h)
      for (int64_t w = w_lo; w < w_hi; ++w) {
        const T* __restrict src = input + n * a.in_stride_n + h * a.in_stride_h + w * a.in_stride_w;
        for (int64_t c = 0; c < channels; ++c) {
          const float value = widen(src[c]), best = dst[c];
          dst[c] = (value > best || value != value) ? value : best;
        }
      }
  }
}

// Each input type's row loop (see BIDRN_CLONES).
BIDRN_CLONES static void pool_rows_f32(const PoolArgs& a, int64_t begin, int64_t end) {
  for (int64_t row = begin; row < end; ++row) pool_row<float>(a, row);
}
BIDRN_CLONES static void pool_rows_bf16(const PoolArgs& a, int64_t begin, int64_t end) {
  for (int64_t row = begin; row < end; ++row) pool_row<uint16_t>(a, row);
}
#undef BIDRN_CLONES

void max_pool_rows(const PoolArgs& a, int64_t begin, int64_t end) {
  if (a.bf16_input)
    pool_rows_bf16(a, begin, end);
  else
    pool_rows_f32(a, begin, end);
}

}  // namespace bidrn
