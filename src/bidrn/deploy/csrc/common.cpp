// ISA-independent helpers shared by every kernel set.
#include <algorithm>
#include <cstring>

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

// One pixel's channels; the restrict-qualified pointers and the count in a local let the compiler
// vectorize (a uint8_t store may otherwise alias anything, QuantizeArgs included). On x86 it is
// compiled for AVX-512, AVX2 and the baseline and the loader picks one (4x faster than SSE2 alone).
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void quantize_pixel(const float* __restrict src, uint8_t* __restrict dst, int64_t channels,
                           float inverse_scale, float offset) {
  for (int64_t c = 0; c < channels; ++c) {
    // Two statements, so that no compiler fuses them into one FMA (torch's formula rounds twice);
    // floor() by truncation, the value being clamped to [0, 255] first.
    const float scaled = src[c] * inverse_scale;
    const float value = std::min(std::max(scaled + offset, 0.0f), 255.0f);
    dst[c] = static_cast<uint8_t>(static_cast<int32_t>(value));
  }
}

void quantize_rows(const QuantizeArgs& a, int64_t begin, int64_t end) {
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

}  // namespace bidrn
