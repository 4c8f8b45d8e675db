// Shared declarations of the packed 1-bit convolution kernels.
//
// Data layout (see docs/deployment.md):
//   * activations are packed channels-last into 64-bit words, bit 1 = negative (x < threshold), so
//     sign(0) = +1; a pixel holds `words` = ceil(C / 64) words, channel c in word c / 64, bit c % 64;
//     unused high bits are 0.
//   * the packed activation buffer is (batch, buf_h, buf_w, words) with zero words (= +1) around the
//     real input; taps that land there are removed afterwards with per-tap weight sums (zero-padding
//     correction), so the inner loops have no bounds checks.
//   * kernel-layout weights are (out_channels_padded / 8, taps, words, 8): eight output channels
//     side by side per word, so one 512-bit load covers eight output channels.
//   * result[o] = (taps * channels - 2 * popcount(a XOR w) - border_correction[o]) * multiplier[o]
//                 * sample_scale[n] + addend[o], written channels-last as float32.
//   * optional post-ops, in this order (each skipped when its pointer is null):
//       v = v > 0 ? v : post_slope[o] * v;          (PReLU; a shift before it lives in addend)
//       v = v + residual[n, oh, ow, o];             (float32 channels-last view with its own strides)
//       v = v * post_scale[o] + post_shift[o];      (e.g. a BatchNorm after the residual add)
//       out = accumulate ? out + v : v;
//       out = min(max(out, post_clamp[0]), post_clamp[1]).  (the next unit's Hardtanh / ReLU)
#pragma once

#include <cstdint>

namespace bidrn {

constexpr int64_t kOcBlock = 8;   // output channels per weight vector group
constexpr int64_t kOcChunk = 32;  // output channels per job (out_channels_padded is a multiple)

struct PackArgs {
  const float* input;       // (batch, in_h, in_w, channels), channels contiguous, strides below
  const float* threshold;   // (channels) or nullptr (threshold 0)
  uint64_t* packed;         // (batch, buf_h, buf_w, words)
  double* row_abs_sum;      // (batch * in_h) sums of |x| per input row, or nullptr
  int64_t batch, in_h, in_w, channels;
  int64_t buf_h, buf_w, buf_top, buf_left, words;
  int64_t in_stride_n, in_stride_h, in_stride_w;  // in floats
};

struct ConvArgs {
  const uint64_t* packed;        // (batch, buf_h, buf_w, words)
  const uint64_t* weights;       // (out_channels_padded / 8, kernel_h * kernel_w, words, 8)
  const int32_t* tap_sums;       // (kernel_h * kernel_w, out_channels_padded): channels - 2 popcount(w)
  const float* multiplier;       // (out_channels_padded)
  const float* addend;           // (out_channels_padded)
  const float* sample_scale;     // (batch) or nullptr
  float* out;                    // element (n, oh, ow, o) at n*out_stride_n + oh*out_stride_h + ow*out_stride_w + o
  int64_t batch, in_h, in_w, buf_h, buf_w, buf_top, buf_left, words, channels;
  int64_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w;
  int64_t offset_h, offset_w;    // input coordinate of output (0, 0) at tap (0, 0), e.g. -padding
  int64_t out_h, out_w, out_channels, out_channels_padded;
  int64_t out_stride_n, out_stride_h, out_stride_w;
  // Post-ops (see the header comment); null pointers switch them off.
  const float* post_slope;       // (out_channels_padded)
  const float* residual;         // element (n, oh, ow, o) at n*res_stride_n + oh*res_stride_h + ow*res_stride_w + o
  const float* post_scale;       // (out_channels_padded)
  const float* post_shift;       // (out_channels_padded)
  int64_t res_stride_n, res_stride_h, res_stride_w;
  int64_t accumulate;
  const float* post_clamp;       // (2): lower and upper bound, or nullptr

  bool has_post_ops() const { return post_slope || residual || post_scale || accumulate || post_clamp; }
};

// Pack rows [begin, end) of the flattened (batch, in_h) index range (interior words only).
using PackRowsFn = void (*)(const PackArgs&, int64_t begin, int64_t end);
// Convolve jobs [begin, end) of the flattened (batch, out_h, out_channels_padded / kOcChunk) range.
using ConvJobsFn = void (*)(const ConvArgs&, int64_t begin, int64_t end);

struct KernelSet {
  const char* name;
  PackRowsFn pack_rows;
  ConvJobsFn conv_jobs;
};

// Which taps of output row `oh` fall inside the input: [first, last) in tap units.
inline void valid_tap_range(int64_t out_index, int64_t stride, int64_t offset, int64_t dilation,
                            int64_t taps, int64_t size, int64_t* first, int64_t* last) {
  const int64_t origin = out_index * stride + offset;
  int64_t lo = 0;
  while (lo < taps && origin + lo * dilation < 0) ++lo;
  int64_t hi = taps;
  while (hi > lo && origin + (hi - 1) * dilation >= size) --hi;
  *first = lo;
  *last = hi;
}

// Sum of the per-tap weight sums of every tap that falls outside the input (the zero padding),
// for `count` output channels starting at `oc`; `correction` receives `count` values.
void border_correction(const ConvArgs& a, int64_t oh, int64_t ow, int64_t oc, int64_t count,
                       int32_t* correction);

// Where a job's tiles write their results: straight into `out`, or, with post-ops, into a
// per-thread scratch row of out_w x kOcChunk floats that apply_post_ops then reads.
struct RowTarget {
  float* base;           // element of output channel oc0 at ow = 0
  int64_t pixel_stride;  // floats between consecutive ow
};
RowTarget row_target(const ConvArgs& a, int64_t n, int64_t oh, int64_t oc0);

// Apply the post-ops to the scratch row of job (n, oh, oc0) and store it into `out`.
void apply_post_ops(const ConvArgs& a, int64_t n, int64_t oh, int64_t oc0, const float* scratch);

// Kernel sets; the x86 ones exist only in builds for x86 with GCC or Clang.
const KernelSet& generic_kernels();
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define BIDRN_X86_DISPATCH 1
const KernelSet& popcnt_kernels();
const KernelSet& avx2_kernels();
const KernelSet& avx512_kernels();
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
#define BIDRN_NEON 1
const KernelSet& neon_kernels();
#endif

}  // namespace bidrn
