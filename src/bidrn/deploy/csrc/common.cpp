// ISA-independent helpers shared by every kernel set.
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

}  // namespace bidrn
