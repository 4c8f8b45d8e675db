// The one epilogue of every kernel set: integer XOR-popcount results -> float outputs, with the
// per-channel multiply-add, the per-sample scale and the post-ops (bitconv.hpp, in that order).
//
// Written once over a vector-primitive type V (simd_*.hpp); each kernel set includes this header
// inside its own target region, so it is compiled once per instruction set. Internal linkage keeps
// the copies apart.
#pragma once

#include <algorithm>
#include <cstdint>

#include "bitconv.hpp"

namespace bidrn {
namespace {

// The post-op operands of one output row, read once: ConvArgs is reached through a reference that
// the float stores below could alias, so without local copies every field would be reloaded per
// vector.
struct RowPostOps {
  const float* slope;
  const float* scale;
  const float* shift;
  const float* residual;  // the residual map of this sample, at channel 0 (branch 0's)
  int64_t res_stride_h, res_stride_w, res_h, res_w;
  int64_t res_channels;  // 0, or the period of the residual's channels (ConvArgs::res_channels)
  bool pool;
  const float* earlier;  // the accumulated tensor at (n, oh, 0, 0)
  int64_t acc_stride_w;
  bool clamp;
  float clamp_lo, clamp_hi;
  int branches;
  int64_t branch_residual;  // floats from one branch's residual channels to the next's
};

// The residual of output (oh, ow) for channels [oc, oc + n) of `image` when it is pooled: the mean of
// the valid part of the 2x2 window at (2 oh, 2 ow) (AvgPool2d(2, 2, ceil_mode=True,
// count_include_pad=False), summed row by row like torch).
template <class V>
inline typename V::F pooled_residual(const RowPostOps& p, const float* image, int64_t oh, int64_t ow, int64_t oc,
                                     int n) {
  image += oc;
  const int64_t y0 = 2 * oh, x0 = 2 * ow;
  const int64_t y1 = std::min(y0 + 2, p.res_h), x1 = std::min(x0 + 2, p.res_w);
  typename V::F total = V::set1(0.0f);
  for (int64_t y = y0; y < y1; ++y)
    for (int64_t x = x0; x < x1; ++x) total = V::add(total, V::load_n(image + y * p.res_stride_h + x * p.res_stride_w, n));
  return V::div(total, V::set1(static_cast<float>((y1 - y0) * (x1 - x0))));
}

// How far ahead (in output pixels of the row) the epilogue prefetches the streams it reads (the
// residual and the accumulated tensor) and the output it writes. A branch of a unit reads and writes
// only its channel slice of each pixel (a Fusion Up branch: 256 of every 1024 bytes), a pattern the
// hardware prefetchers miss; a 64 -> 256 Fusion Up unit at 2x64x64 took 4.3 ms without these
// prefetches and 2.0-2.6 ms with them (Zen 4, one thread; 6, 12 and 24 pixels were within noise).
constexpr int64_t kPrefetchPixels = 12;

// Prefetch (for a read, Write = 0, or a write, 1) the float `offset` elements after `base`. Near a
// row's end that is the next row's start (which helps) or, after the last row, past the tensor; the
// address is computed as an integer, since a pointer past its object is not valid C++, while a
// prefetch never faults, wherever it points.
template <int Write>
inline void prefetch_at(const float* base, int64_t offset) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(base) + static_cast<uintptr_t>(offset) * sizeof(float);
  __builtin_prefetch(reinterpret_cast<const void*>(address), Write);
}

// Fully unrolled loops over a tile's pixels keep its results in registers.
#if defined(__clang__)
#define BIDRN_UNROLL _Pragma("clang loop unroll(full)")
#elif defined(__GNUC__)
#define BIDRN_UNROLL _Pragma("GCC unroll 8")
#else
#define BIDRN_UNROLL
#endif

// Which post-ops run, and whether several branches are summed (kBranches, known at compile time).
// The common combinations are template arguments of epilogue_with (no branch per vector); any other
// combination runs a kDynamic instantiation, which tests the runtime mask.
enum PostOpFlag : unsigned {
  kSlope = 1,
  kResidual = 2,
  kPool = 4,
  kScale = 8,
  kEarlier = 16,
  kClamp = 32,
  kBranches = 64,
  kDynamic = 128
};

// One conv's (or branch's) per-channel epilogue terms for `width` channels from `offset` of its
// vectors, the multiplier times the sample's scale; the terms of post-ops that are off are neutral.
template <class V>
struct ChannelTerms {
  typename V::F multiplier, addend, slope, post_scale, post_shift;
};

template <class V>
BIDRN_ALWAYS_INLINE ChannelTerms<V> channel_terms(const ConvArgs& a, const RowPostOps& p, int64_t offset,
                                                  int width, typename V::F scale, bool slope_on, bool scale_on) {
  return {V::mul(V::load_n(a.multiplier + offset, width), scale), V::load_n(a.addend + offset, width),
          slope_on ? V::load_n(p.slope + offset, width) : V::set1(0.0f),
          scale_on ? V::load_n(p.scale + offset, width) : V::set1(1.0f),
          scale_on ? V::load_n(p.shift + offset, width) : V::set1(0.0f)};
}

// One output pixel's `width` channels of one conv (or branch) through its multiply-add, PReLU,
// residual (read from `residual`, the branch's channels) and BatchNorm multiply-add: what one
// conv and summed branches share before the accumulation and the clamp.
template <class V>
BIDRN_ALWAYS_INLINE typename V::F branch_value(const ChannelTerms<V>& t, typename V::F full, const int32_t* lost,
                                               const RowPostOps& p, const float* residual, int64_t oh, int64_t ow,
                                               int64_t res_oc, int width, bool slope_on, bool residual_on,
                                               bool pool_on, bool scale_on) {
  typename V::F y = V::fmadd(V::sub(full, V::load_int_n(lost, width)), t.multiplier, t.addend);
  if (slope_on) y = V::prelu(y, t.slope);
  if (residual_on) {
    if (pool_on)
      y = V::add(y, pooled_residual<V>(p, residual, oh, ow, res_oc, width));
    else
      y = V::add(y, V::load_n(residual + res_oc + oh * p.res_stride_h + ow * p.res_stride_w, width));
  }
  if (scale_on) y = V::fmadd(y, t.post_scale, t.post_shift);
  return y;
}

template <class V, unsigned Ops>
inline void epilogue_with(const ConvArgs& a, const RowPostOps& p, unsigned mask, int64_t n, int64_t oh,
                          int64_t ow0, int pixels, int64_t oc0, const int32_t* lost, int64_t lost_per_branch) {
  using F = typename V::F;
  const auto on = [mask](unsigned flag) { return (Ops & kDynamic) ? (mask & flag) != 0 : (Ops & flag) != 0; };
  const bool slope_on = on(kSlope), residual_on = on(kResidual), pool_on = on(kPool), scale_on = on(kScale);
  const bool earlier_on = on(kEarlier), clamp_on = on(kClamp);
  const int count = static_cast<int>(std::min<int64_t>(kOcChunk, a.out_channels - oc0));
  const F full = V::set1(static_cast<float>(a.kernel_h * a.kernel_w * a.channels));
  const F scale = V::set1(a.sample_scale ? a.sample_scale[n] : 1.0f);
  const F lower = V::set1(p.clamp_lo), upper = V::set1(p.clamp_hi);
  const int64_t out_stride_w = a.out_stride_w;
  float* const out_row = a.out + n * a.out_stride_n + oh * a.out_stride_h + ow0 * out_stride_w;
  const int64_t res_oc0 = p.res_channels ? oc0 % p.res_channels : oc0;  // a chunk never wraps
  for (int c = 0; c < count; c += V::kWidth) {
    const int width = std::min(V::kWidth, count - c);
    const int64_t oc = oc0 + c, res_oc = res_oc0 + c;
    // Every load of the tile before its first store: the output often lies a multiple of 4 KiB
    // away from the residual or accumulated tensor (same shapes, page-aligned), and a load behind a
    // store with the same low 12 address bits waits for that store (4K aliasing; a Fusion Up branch
    // took 0.73 ms with its output and accumulated tensor congruent mod 4 KiB, 0.38-0.46 now).
    F results[kMaxTilePixels] = {};
    if constexpr ((Ops & kBranches) == 0) {
      // One branch, without the loop over branches below: compiled with it, for one branch, a
      // 1x1 conv took 1.06x the instructions (AVX2, callgrind); with the two sharing the body as a
      // lambda, 1.11-1.15x (GCC drops the unroll pragma inside lambdas). Hence two pixel loops,
      // sharing their arithmetic as always-inlined functions (channel_terms, branch_value).
      const ChannelTerms<V> terms = channel_terms<V>(a, p, oc, width, scale, slope_on, scale_on);
      BIDRN_UNROLL
      for (int i = 0; i < kMaxTilePixels && i < pixels; ++i) {
        const int64_t ahead = ow0 + i + kPrefetchPixels;
        if (earlier_on) prefetch_at<0>(p.earlier, ahead * p.acc_stride_w + oc);
        if (residual_on && !pool_on) prefetch_at<0>(p.residual, res_oc + oh * p.res_stride_h + ahead * p.res_stride_w);
        prefetch_at<1>(out_row, (i + kPrefetchPixels) * out_stride_w + oc);
        F y = branch_value<V>(terms, full, lost + i * kOcChunk + c, p, p.residual, oh, ow0 + i, res_oc, width,
                              slope_on, residual_on, pool_on, scale_on);
        if (earlier_on) y = V::add(y, V::load_n(p.earlier + (ow0 + i) * p.acc_stride_w + oc, width));
        if (clamp_on) y = V::min(V::max(y, lower), upper);
        results[i] = y;
      }
    } else {
      const int branches = p.branches;
      for (int g = 0; g < branches; ++g) {
        const int64_t v = g * a.out_channels_padded + oc;  // branch g's per-channel vectors
        const float* const residual = residual_on ? p.residual + g * p.branch_residual : nullptr;
        const int32_t* const branch_lost = lost + g * lost_per_branch;
        const ChannelTerms<V> terms = channel_terms<V>(a, p, v, width, scale, slope_on, scale_on);
        BIDRN_UNROLL
        for (int i = 0; i < kMaxTilePixels && i < pixels; ++i) {
          const int64_t ahead = ow0 + i + kPrefetchPixels;
          if (earlier_on && g == 0) prefetch_at<0>(p.earlier, ahead * p.acc_stride_w + oc);
          if (residual_on && !pool_on) prefetch_at<0>(residual, res_oc + oh * p.res_stride_h + ahead * p.res_stride_w);
          if (g == 0) prefetch_at<1>(out_row, (i + kPrefetchPixels) * out_stride_w + oc);
          F y = branch_value<V>(terms, full, branch_lost + i * kOcChunk + c, p, residual, oh, ow0 + i, res_oc, width,
                                slope_on, residual_on, pool_on, scale_on);
          if (g > 0)
            y = V::add(y, results[i]);
          else if (earlier_on)
            y = V::add(y, V::load_n(p.earlier + (ow0 + i) * p.acc_stride_w + oc, width));
          if (clamp_on && g == branches - 1) y = V::min(V::max(y, lower), upper);
          results[i] = y;
        }
      }
    }
    BIDRN_UNROLL
    for (int i = 0; i < kMaxTilePixels && i < pixels; ++i) V::store_n(out_row + i * out_stride_w + oc, results[i], width);
  }
}

// Finish `pixels` outputs (n, oh, ow0 + i) for the channels [oc0, oc0 + kOcChunk) that exist.
// lost[g * lost_per_branch + i * kOcChunk + k] holds 2 * popcount + border correction of branch g,
// pixel i, channel oc0 + k, so the branch's integer result is taps * channels - lost.
//
// Picks the instantiation of epilogue_with for the conv's post-ops: none (a plain conv), the fused
// units' RPReLU + residual + BatchNorm with or without pooling, accumulation and clamp, or the
// dynamic one. Summed (ConvArgs::branches > 1) has instantiations of its own, compiled into conv
// loops of their own (the kernel sets' conv_jobs<true>): in one loop with those of one branch,
// the 3x3 and Fusion Up units of one branch ran 1.02-1.15x as long.
template <class V, bool Summed>
inline void epilogue(const ConvArgs& a, int64_t n, int64_t oh, int64_t ow0, int pixels, int64_t oc0,
                     const int32_t* lost, int64_t lost_per_branch) {
  const RowPostOps p{a.post_slope,
                     a.post_scale,
                     a.post_shift,
                     a.residual ? a.residual + n * a.res_stride_n : nullptr,
                     a.res_stride_h,
                     a.res_stride_w,
                     a.res_h,
                     a.res_w,
                     a.res_channels,
                     a.res_pool == 2,
                     a.accumulate_from ? a.accumulate_from + n * a.acc_stride_n + oh * a.acc_stride_h : nullptr,
                     a.acc_stride_w,
                     a.clamp != 0,
                     a.clamp_lo,
                     a.clamp_hi,
                     static_cast<int>(a.branches),
                     a.branch_residual};
  const unsigned mask = (p.slope ? kSlope : 0u) | (p.residual ? kResidual : 0u) | (p.pool ? kPool : 0u) |
                        (p.scale ? kScale : 0u) | (p.earlier ? kEarlier : 0u) | (p.clamp ? kClamp : 0u);
  constexpr unsigned kUnit = kSlope | kResidual | kScale;
#define BIDRN_EPILOGUE_CASE(ops) \
  case (ops):                    \
    return epilogue_with<V, (ops)>(a, p, mask, n, oh, ow0, pixels, oc0, lost, lost_per_branch);
  if constexpr (Summed) {
    switch (mask) {
      BIDRN_EPILOGUE_CASE(kUnit | kBranches)  // Fusion Down
      BIDRN_EPILOGUE_CASE(kUnit | kClamp | kBranches)
      default:
        return epilogue_with<V, kDynamic | kBranches>(a, p, mask, n, oh, ow0, pixels, oc0, lost, lost_per_branch);
    }
  } else {
    switch (mask) {
      BIDRN_EPILOGUE_CASE(0)
      BIDRN_EPILOGUE_CASE(kUnit)
      BIDRN_EPILOGUE_CASE(kUnit | kClamp)
      BIDRN_EPILOGUE_CASE(kUnit | kEarlier)
      BIDRN_EPILOGUE_CASE(kUnit | kEarlier | kClamp)
      BIDRN_EPILOGUE_CASE(kUnit | kPool)
      BIDRN_EPILOGUE_CASE(kUnit | kPool | kClamp)
      BIDRN_EPILOGUE_CASE(kUnit | kPool | kEarlier)
      BIDRN_EPILOGUE_CASE(kUnit | kPool | kEarlier | kClamp)
      default:
        return epilogue_with<V, kDynamic>(a, p, mask, n, oh, ow0, pixels, oc0, lost, lost_per_branch);
    }
  }
#undef BIDRN_EPILOGUE_CASE
}

// Add the zero-padding correction of the tile's outputs (oh, ow + i), i < pixels, that lie on the
// border (outside `rows` x `columns`) to lost[i * kOcChunk .. + count), count <= kOcChunk.
inline void correct_border(const ConvArgs& a, const Interior& rows, const Interior& columns, int64_t oh,
                           int64_t ow, int pixels, int64_t oc0, int64_t count, int32_t* lost) {
  for (int i = 0; i < pixels; ++i) {
    if (rows.contains(oh) && columns.contains(ow + i)) continue;
    int32_t correction[kOcChunk];
    border_correction(a, oh, ow + i, oc0, count, correction);
    for (int64_t k = 0; k < count; ++k) lost[i * kOcChunk + k] += correction[k];
  }
}

}  // namespace
}  // namespace bidrn
