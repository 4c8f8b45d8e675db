// ISA-independent helpers shared by every kernel set.
#include <algorithm>
#include <cstring>
#include <vector>

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

RowTarget row_target(const ConvArgs& a, int64_t n, int64_t oh, int64_t oc0) {
  if (!a.has_post_ops()) return {a.out + n * a.out_stride_n + oh * a.out_stride_h + oc0, a.out_stride_w};
  thread_local std::vector<float> scratch;
  if (scratch.size() < static_cast<size_t>(a.out_w * kOcChunk)) scratch.resize(a.out_w * kOcChunk);
  return {scratch.data(), kOcChunk};
}

void apply_post_ops(const ConvArgs& a, int64_t n, int64_t oh, int64_t oc0, const float* scratch) {
  const int64_t count = std::min<int64_t>(kOcChunk, a.out_channels - oc0);
  float v[kOcChunk];
  for (int64_t ow = 0; ow < a.out_w; ++ow) {
    const float* src = scratch + ow * kOcChunk;
    for (int64_t k = 0; k < count; ++k) v[k] = src[k];
    if (a.post_slope) {
      const float* slope = a.post_slope + oc0;
      for (int64_t k = 0; k < count; ++k) v[k] = v[k] > 0.0f ? v[k] : slope[k] * v[k];
    }
    if (a.residual) {
      const float* r = a.residual + n * a.res_stride_n + oh * a.res_stride_h + ow * a.res_stride_w + oc0;
      for (int64_t k = 0; k < count; ++k) v[k] += r[k];
    }
    if (a.post_scale) {
      const float* scale = a.post_scale + oc0;
      const float* shift = a.post_shift + oc0;
      for (int64_t k = 0; k < count; ++k) v[k] = v[k] * scale[k] + shift[k];
    }
    float* dst = a.out + n * a.out_stride_n + oh * a.out_stride_h + ow * a.out_stride_w + oc0;
    if (a.accumulate)
      for (int64_t k = 0; k < count; ++k) v[k] += dst[k];
    if (a.post_clamp)
      for (int64_t k = 0; k < count; ++k) v[k] = std::min(std::max(v[k], a.post_clamp[0]), a.post_clamp[1]);
    for (int64_t k = 0; k < count; ++k) dst[k] = v[k];
  }
}

}  // namespace bidrn
