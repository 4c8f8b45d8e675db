// The kernels' ABI: the argument structs Python fills (bidrn/deploy/kernels.py mirrors them with
// ctypes and checks every field's offset against abi_layout() at import) and the kernel-set table.
//
// Data layout (see docs/deployment.md):
//   * activations are packed channels-last into 64-bit words, bit 1 = negative (x < threshold), so
//     sign(0) = +1; channel c is in word c / 64, bit c % 64; unused high bits are 0.
//   * the packed buffer is (batch, buf_h, buf_w, pixel_words * planes) with zero words (= +1) around
//     the real input; taps that land there are removed afterwards with per-tap weight sums
//     (zero-padding correction), so the inner loops have no bounds checks. A kernel set stores each
//     word as `planes` words: 1 (the word itself) or 2 (its low and high nibbles, for the AVX2
//     lookup-table popcount).
//   * weights are (out_channels_padded / 8, taps, words, 8): eight output channels side by side per
//     word, the same layout for every kernel set.
//   * result[o] = (taps * channels - 2 * popcount(a XOR w) - border_correction[o]) * multiplier[o]
//                 * sample_scale[n] + addend[o], then the post-ops, in this order (see epilogue.hpp):
//       v = v > 0 ? v : post_slope[o] * v;          (PReLU; a shift before it lives in addend)
//       v = v + residual;                           (an element, or the mean of a 2x2 window)
//       v = v * post_scale[o] + post_shift[o];      (e.g. a BatchNorm after the residual add)
//       v = v + earlier[n, oh, ow, o];              (accumulate: `out` itself, or another tensor)
//       out = min(max(out, clamp_lo), clamp_hi).    (the next unit's Hardtanh / ReLU)
//   * a conv of several branches (ConvArgs::branches, e.g. Fusion Down's) sums them in registers:
//     branch g reads its own words, weights and per-channel vectors, and its own residual channels;
//     v_0 = result_0 after its post-ops (with `earlier`), v_g = result_g after its post-ops + v_(g-1),
//     out = clamp(v_last): the same operations, in the same order, as one conv per branch with each
//     later branch accumulating into `out`.
#pragma once

#include <cstdint>

namespace bidrn {

#if defined(__GNUC__) || defined(__clang__)
#define BIDRN_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define BIDRN_ALWAYS_INLINE inline
#endif

// Raised whenever an argument struct (PackArgs, ConvArgs, QuantizeArgs, PoolArgs) gains, loses,
// retypes or reorders a field.
constexpr uint32_t kAbiVersion = 6;

constexpr int64_t kOcBlock = 8;   // output channels per weight word group
constexpr int64_t kOcChunk = 32;  // output channels per job (out_channels_padded is a multiple)
constexpr int kMaxTilePixels = 8;  // output pixels one epilogue call finishes at most (tiles.hpp checks)
constexpr int64_t kMaxBranches = 4;  // branches one conv sums in registers (ConvArgs::branches)

// One packing pass: float activations -> sign bits in a zero-bordered buffer.
struct PackArgs {
  uint32_t abi_version;     // kAbiVersion
  uint32_t struct_size;     // sizeof(PackArgs)
  const float* input;       // element (n, h, w, c) at n*in_stride_n + h*in_stride_h + w*in_stride_w + c
  const float* threshold;   // (channels) or nullptr (threshold 0)
  uint64_t* packed;         // (batch, buf_h, buf_w, pixel_words * planes)
  float* sample_mean_abs;   // (batch) out: mean |x| per sample (XNOR-Net's beta), or nullptr
  int64_t batch, in_h, in_w, channels;
  int64_t buf_h, buf_w, buf_top, buf_left;
  int64_t pixel_words;      // ceil(channels / 64)
  int64_t in_stride_n, in_stride_h, in_stride_w;  // in floats
};

// One packed convolution over a packed buffer, with its epilogue and post-ops.
struct ConvArgs {
  uint32_t abi_version;          // kAbiVersion
  uint32_t struct_size;          // sizeof(ConvArgs)
  const uint64_t* packed;        // PackArgs::packed
  const uint64_t* weights;       // (out_channels_padded / 8, kernel_h * kernel_w, words, 8)
  const int32_t* tap_sums;       // (kernel_h * kernel_w, out_channels_padded): channels - 2 popcount(w)
  const float* multiplier;       // (out_channels_padded)
  const float* addend;           // (out_channels_padded)
  const float* sample_scale;     // (batch) or nullptr
  float* out;                    // element (n, oh, ow, o) at n*out_stride_n + oh*out_stride_h + ow*out_stride_w + o
  // The packed input: this conv reads `words` words from word `word_offset` of every pixel.
  int64_t batch, in_h, in_w, buf_h, buf_w, buf_top, buf_left;
  int64_t pixel_words, word_offset, words, channels;
  // Geometry.
  int64_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w;
  int64_t offset_h, offset_w;    // input coordinate of output (0, 0) at tap (0, 0), e.g. -padding
  int64_t out_h, out_w, out_channels, out_channels_padded;
  int64_t out_stride_n, out_stride_h, out_stride_w;
  // Post-ops; null pointers (and zero flags) switch them off.
  const float* post_slope;       // (out_channels_padded)
  const float* post_scale;       // (out_channels_padded), needs post_shift
  const float* post_shift;       // (out_channels_padded)
  const float* residual;         // element (n, y, x, o) at n*res_stride_n + y*res_stride_h + x*res_stride_w + o
  int64_t res_stride_n, res_stride_h, res_stride_w;
  int64_t res_h, res_w;          // size of the residual map (for res_pool)
  int64_t res_pool;              // 0: element (oh, ow); 2: mean of the 2x2 window at (2 oh, 2 ow) inside the map
  int64_t res_channels;          // 0: output channel o reads residual channel o; else o % res_channels (a
                                 // multiple of kOcChunk), for branches that share one residual, run as one conv
  const float* accumulate_from;  // element (n, oh, ow, o) at n*acc_stride_n + oh*acc_stride_h + ow*acc_stride_w + o
  int64_t acc_stride_n, acc_stride_h, acc_stride_w;
  int64_t clamp;                 // clamp to [clamp_lo, clamp_hi]
  float clamp_lo, clamp_hi;
  // Scheduling: 1 = run row by row together with the previous conv of the same run() call (same
  // batch, out_h and out_channels_padded), e.g. the branches of one unit, so that the rows they
  // share (packed input, residual, an output they accumulate into) stay in cache. It may read what
  // the previous conv wrote only at the same output positions (through accumulate_from).
  int64_t joins_previous;
  // Branches summed in registers (1 to kMaxBranches; see the header comment). Branch g reads words
  // from word_offset + g * branch_words, weights and tap_sums one branch's size after branch g - 1's,
  // the per-channel vectors (multiplier, addend, post_slope, post_scale, post_shift) from
  // g * out_channels_padded, and the residual from residual + g * branch_residual (floats).
  int64_t branches, branch_words, branch_residual;
};

// One quantization pass: float activations -> uint8 with one scale and zero point, for the int8
// GEMMs of a frozen model's full-precision 1x1 convs (bidrn/deploy/dense.py):
//   out = min(max(floor(x * inverse_scale + zero_point + 0.5), 0), 255).
struct QuantizeArgs {
  uint32_t abi_version;     // kAbiVersion
  uint32_t struct_size;     // sizeof(QuantizeArgs)
  const float* input;       // element (n, h, w, c) at n*in_stride_n + h*in_stride_h + w*in_stride_w + c
  uint8_t* out;             // (batch, in_h, in_w, channels), contiguous
  int64_t batch, in_h, in_w, channels;
  int64_t in_stride_n, in_stride_h, in_stride_w;  // in floats
  float inverse_scale, zero_point;
};

// One max-pooling pass over channels-last activations, without the indices torch's CPU max pooling
// always computes (a frozen model's stems): out = max over the window's inside part, NaN winning.
struct PoolArgs {
  uint32_t abi_version;     // kAbiVersion
  uint32_t struct_size;     // sizeof(PoolArgs)
  const void* input;        // float32 or bfloat16 (bf16_input) element (n, h, w, c) at
                            // n*in_stride_n + h*in_stride_h + w*in_stride_w + c
  float* out;               // (batch, out_h, out_w, channels), contiguous, float32
  int64_t batch, in_h, in_w, channels;
  int64_t in_stride_n, in_stride_h, in_stride_w;  // in elements
  int64_t out_h, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w;
  int64_t bf16_input;       // 1: the input is bfloat16 (widened exactly), 0: float32
};

// Field lists, in declaration order, for abi_layout() (module.cpp) and its Python check.
#define BIDRN_PACK_FIELDS(X)                                                                             \
  X(abi_version) X(struct_size) X(input) X(threshold) X(packed) X(sample_mean_abs) X(batch) X(in_h)     \
  X(in_w) X(channels) X(buf_h) X(buf_w) X(buf_top) X(buf_left) X(pixel_words) X(in_stride_n)            \
  X(in_stride_h) X(in_stride_w)
#define BIDRN_QUANTIZE_FIELDS(X)                                                                         \
  X(abi_version) X(struct_size) X(input) X(out) X(batch) X(in_h) X(in_w) X(channels) X(in_stride_n)      \
  X(in_stride_h) X(in_stride_w) X(inverse_scale) X(zero_point)
#define BIDRN_POOL_FIELDS(X)                                                                             \
  X(abi_version) X(struct_size) X(input) X(out) X(batch) X(in_h) X(in_w) X(channels) X(in_stride_n)      \
  X(in_stride_h) X(in_stride_w) X(out_h) X(out_w) X(kernel_h) X(kernel_w) X(stride_h) X(stride_w)        \
  X(padding_h) X(padding_w) X(bf16_input)
#define BIDRN_CONV_FIELDS(X)                                                                              \
  X(abi_version) X(struct_size) X(packed) X(weights) X(tap_sums) X(multiplier) X(addend) X(sample_scale)  \
  X(out) X(batch) X(in_h) X(in_w) X(buf_h) X(buf_w) X(buf_top) X(buf_left) X(pixel_words)                \
  X(word_offset) X(words) X(channels) X(kernel_h) X(kernel_w) X(stride_h) X(stride_w) X(dilation_h)      \
  X(dilation_w) X(offset_h) X(offset_w) X(out_h) X(out_w) X(out_channels) X(out_channels_padded)         \
  X(out_stride_n) X(out_stride_h) X(out_stride_w) X(post_slope) X(post_scale) X(post_shift) X(residual)  \
  X(res_stride_n) X(res_stride_h) X(res_stride_w) X(res_h) X(res_w) X(res_pool) X(res_channels)          \
  X(accumulate_from) X(acc_stride_n) X(acc_stride_h) X(acc_stride_w) X(clamp) X(clamp_lo) X(clamp_hi)     \
  X(joins_previous) X(branches) X(branch_words) X(branch_residual)

// Pack rows [begin, end) of the flattened (batch, in_h) range (interior words only; the caller zeroes
// the border). With sample_mean_abs, also writes row_abs_sum[row] = sum of |x| over the row.
using PackRowsFn = void (*)(const PackArgs&, int64_t begin, int64_t end, double* row_abs_sum);
// Convolve jobs [begin, end) of the flattened (batch, out_h, out_channels_padded / kOcChunk) range.
using ConvJobsFn = void (*)(const ConvArgs&, int64_t begin, int64_t end);

struct KernelSet {
  const char* name;
  int64_t planes;  // words stored per packed word (see the header comment)
  PackRowsFn pack_rows;
  ConvJobsFn conv_jobs;
};

// Which taps of output index `out_index` fall inside the input: [first, last) in tap units.
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

// The outputs [lo, hi) along one axis whose taps all read real input (no zero padding).
struct Interior {
  int64_t lo, hi;
  bool contains(int64_t index) const { return index >= lo && index < hi; }
};

inline Interior interior_outputs(int64_t outputs, int64_t stride, int64_t offset, int64_t dilation, int64_t taps,
                                 int64_t size) {
  auto inside = [&](int64_t o) { return o * stride + offset >= 0 && o * stride + offset + (taps - 1) * dilation < size; };
  int64_t lo = 0;
  while (lo < outputs && !inside(lo)) ++lo;
  int64_t hi = lo;
  while (hi < outputs && inside(hi)) ++hi;
  return {lo, hi};
}

inline Interior interior_rows(const ConvArgs& a) {
  return interior_outputs(a.out_h, a.stride_h, a.offset_h, a.dilation_h, a.kernel_h, a.in_h);
}

inline Interior interior_columns(const ConvArgs& a) {
  return interior_outputs(a.out_w, a.stride_w, a.offset_w, a.dilation_w, a.kernel_w, a.in_w);
}

// Sum of the per-tap weight sums of every tap of output (oh, ow) that falls on the zero padding, for
// `count` output channels from `oc`; `correction` receives `count` values (common.cpp).
void border_correction(const ConvArgs& a, int64_t oh, int64_t ow, int64_t oc, int64_t count,
                       int32_t* correction);

// Quantize rows [begin, end) of the flattened (batch, in_h) range (common.cpp; plain C++ that the
// compiler vectorizes, the same for every kernel set).
void quantize_rows(const QuantizeArgs& a, int64_t begin, int64_t end);

// Pool output rows [begin, end) of the flattened (batch, out_h) range (common.cpp; plain C++ that the
// compiler vectorizes).
void max_pool_rows(const PoolArgs& a, int64_t begin, int64_t end);

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
