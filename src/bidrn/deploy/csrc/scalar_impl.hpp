// Portable scalar kernels, included by kernels_generic.cpp (plain build) and kernels_popcnt.cpp
// (the same code compiled for the x86 POPCNT instruction). Define BIDRN_SCALAR_NAMESPACE first.
#include <algorithm>
#include <cstring>

#include "bitconv.hpp"

namespace bidrn {
namespace BIDRN_SCALAR_NAMESPACE {

static inline int popcount64(uint64_t x) { return __builtin_popcountll(x); }

static void pack_rows(const PackArgs& a, int64_t begin, int64_t end) {
  for (int64_t row = begin; row < end; ++row) {
    const int64_t n = row / a.in_h, h = row % a.in_h;
    const float* src = a.input + n * a.in_stride_n + h * a.in_stride_h;
    uint64_t* dst = a.packed + ((n * a.buf_h + h + a.buf_top) * a.buf_w + a.buf_left) * a.words;
    double abs_sum = 0.0;
    for (int64_t w = 0; w < a.in_w; ++w, src += a.in_stride_w, dst += a.words) {
      for (int64_t j = 0; j < a.words; ++j) {
        const int64_t c_end = std::min<int64_t>(a.channels, (j + 1) * 64);
        uint64_t bits = 0;
        for (int64_t c = j * 64; c < c_end; ++c) {
          const float limit = a.threshold ? a.threshold[c] : 0.0f;
          bits |= static_cast<uint64_t>(src[c] < limit) << (c - j * 64);
        }
        dst[j] = bits;
      }
      if (a.row_abs_sum)
        for (int64_t c = 0; c < a.channels; ++c) abs_sum += src[c] < 0 ? -src[c] : src[c];
    }
    if (a.row_abs_sum) a.row_abs_sum[row] = abs_sum;
  }
}

static void conv_jobs(const ConvArgs& a, int64_t begin, int64_t end) {
  const int64_t chunks = a.out_channels_padded / kOcChunk;
  const int64_t taps = a.kernel_h * a.kernel_w;
  const int32_t full = static_cast<int32_t>(taps * a.channels);
  int32_t pop[kOcChunk];
  int32_t correction[kOcChunk];
  for (int64_t job = begin; job < end; ++job) {
    const int64_t chunk = job % chunks, oh = (job / chunks) % a.out_h, n = job / (chunks * a.out_h);
    const int64_t oc0 = chunk * kOcChunk;
    const int64_t count = std::min<int64_t>(kOcChunk, a.out_channels - oc0);
    if (count <= 0) continue;
    const float scale = a.sample_scale ? a.sample_scale[n] : 1.0f;
    const uint64_t* row_base = a.packed + (n * a.buf_h + oh * a.stride_h + a.offset_h + a.buf_top) * a.buf_w * a.words;
    const RowTarget target = row_target(a, n, oh, oc0);
    for (int64_t ow = 0; ow < a.out_w; ++ow) {
      const uint64_t* pixel = row_base + (ow * a.stride_w + a.offset_w + a.buf_left) * a.words;
      std::memset(pop, 0, sizeof(pop));
      for (int64_t kh = 0; kh < a.kernel_h; ++kh)
        for (int64_t kw = 0; kw < a.kernel_w; ++kw) {
          const int64_t t = kh * a.kernel_w + kw;
          const uint64_t* act = pixel + (kh * a.dilation_h * a.buf_w + kw * a.dilation_w) * a.words;
          for (int64_t b = 0; b < kOcChunk / kOcBlock; ++b) {
            const uint64_t* w = a.weights + (((oc0 / kOcBlock + b) * taps + t) * a.words) * kOcBlock;
            for (int64_t j = 0; j < a.words; ++j)
              for (int64_t k = 0; k < kOcBlock; ++k) pop[b * kOcBlock + k] += popcount64(act[j] ^ w[j * kOcBlock + k]);
          }
        }
      border_correction(a, oh, ow, oc0, kOcChunk, correction);
      float* out = target.base + ow * target.pixel_stride;
      for (int64_t k = 0; k < count; ++k) {
        const float value = static_cast<float>(full - 2 * pop[k] - correction[k]);
        out[k] = value * (a.multiplier[oc0 + k] * scale) + a.addend[oc0 + k];
      }
    }
    if (a.has_post_ops()) apply_post_ops(a, n, oh, oc0, target.base);
  }
}

}  // namespace BIDRN_SCALAR_NAMESPACE
}  // namespace bidrn
