// ARM NEON kernel set (AArch64, where NEON is part of the base ISA): VCNT byte popcounts,
// accumulated per byte for up to 31 words and then widened with pairwise adds.
//
// Register tile: kPixels output pixels x 8 output channels (four vectors of two 64-bit lanes).
#include "bitconv.hpp"

#ifdef BIDRN_NEON
#include <arm_neon.h>

#include <algorithm>

namespace bidrn {
namespace neon {

constexpr int kPixels = 2;
constexpr int kVectors = 4;            // 4 vectors x 2 lanes = one block of 8 output channels
constexpr int64_t kMaxByteWords = 31;  // 31 words x 8 bits per byte <= 255

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

static inline uint64x2_t widen(uint8x16_t bytes) { return vpaddlq_u32(vpaddlq_u16(vpaddlq_u8(bytes))); }

static void conv_jobs(const ConvArgs& a, int64_t begin, int64_t end) {
  const int64_t chunks = a.out_channels_padded / kOcChunk;
  const int64_t taps = a.kernel_h * a.kernel_w;
  const int32_t full = static_cast<int32_t>(taps * a.channels);
  int32_t correction[kOcBlock];
  for (int64_t job = begin; job < end; ++job) {
    const int64_t chunk = job % chunks, oh = (job / chunks) % a.out_h, n = job / (chunks * a.out_h);
    const float scale = a.sample_scale ? a.sample_scale[n] : 1.0f;
    const uint64_t* row_base =
        a.packed + (n * a.buf_h + oh * a.stride_h + a.offset_h + a.buf_top) * a.buf_w * a.words;
    const int64_t oc0 = chunk * kOcChunk;
    if (oc0 >= a.out_channels) continue;
    const RowTarget target = row_target(a, n, oh, oc0);
    for (int64_t oc = oc0; oc < oc0 + kOcChunk && oc < a.out_channels; oc += kOcBlock) {
      const uint64_t* w_block = a.weights + (oc / kOcBlock) * taps * a.words * kOcBlock;
      for (int64_t ow = 0; ow < a.out_w; ow += kPixels) {
        const int pixels = static_cast<int>(std::min<int64_t>(kPixels, a.out_w - ow));
        const uint64_t* pixel[kPixels];
        for (int i = 0; i < kPixels; ++i)
          pixel[i] = row_base + ((ow + std::min(i, pixels - 1)) * a.stride_w + a.offset_w + a.buf_left) * a.words;
        uint64x2_t pop[kPixels][kVectors];
        uint8x16_t bytes[kPixels][kVectors];
        for (int i = 0; i < kPixels; ++i)
          for (int v = 0; v < kVectors; ++v) {
            pop[i][v] = vdupq_n_u64(0);
            bytes[i][v] = vdupq_n_u8(0);
          }
        int64_t pending = 0;
        const uint64_t* w_tap = w_block;
        for (int64_t kh = 0; kh < a.kernel_h; ++kh)
          for (int64_t kw = 0; kw < a.kernel_w; ++kw, w_tap += a.words * kOcBlock) {
            const int64_t tap_offset = (kh * a.dilation_h * a.buf_w + kw * a.dilation_w) * a.words;
            for (int64_t j = 0; j < a.words; ++j) {
              uint64x2_t w[kVectors];
              for (int v = 0; v < kVectors; ++v) w[v] = vld1q_u64(w_tap + j * kOcBlock + 2 * v);
              for (int i = 0; i < kPixels; ++i) {
                const uint64x2_t x = vdupq_n_u64(pixel[i][tap_offset + j]);
                for (int v = 0; v < kVectors; ++v)
                  bytes[i][v] = vaddq_u8(bytes[i][v], vcntq_u8(vreinterpretq_u8_u64(veorq_u64(x, w[v]))));
              }
              if (++pending == kMaxByteWords) {
                for (int i = 0; i < kPixels; ++i)
                  for (int v = 0; v < kVectors; ++v) {
                    pop[i][v] = vaddq_u64(pop[i][v], widen(bytes[i][v]));
                    bytes[i][v] = vdupq_n_u8(0);
                  }
                pending = 0;
              }
            }
          }
        const int64_t count = std::min<int64_t>(kOcBlock, a.out_channels - oc);
        for (int i = 0; i < pixels; ++i) {
          uint64_t counts[kOcBlock];
          for (int v = 0; v < kVectors; ++v) vst1q_u64(counts + 2 * v, vaddq_u64(pop[i][v], widen(bytes[i][v])));
          border_correction(a, oh, ow + i, oc, kOcBlock, correction);
          float* out = target.base + (ow + i) * target.pixel_stride + (oc - oc0);
          for (int64_t k = 0; k < count; ++k) {
            const float value = static_cast<float>(full - 2 * static_cast<int32_t>(counts[k]) - correction[k]);
            out[k] = value * (a.multiplier[oc + k] * scale) + a.addend[oc + k];
          }
        }
      }
    }
    if (a.has_post_ops()) apply_post_ops(a, n, oh, oc0, target.base);
  }
}

}  // namespace neon

const KernelSet& neon_kernels() {
  static const KernelSet set{"neon", neon::pack_rows, neon::conv_jobs};
  return set;
}

}  // namespace bidrn
#endif
