// Vector primitives of width 4 (AArch64 NEON) for the shared epilogue and packing (epilogue.hpp,
// pack.hpp). Everything here has internal linkage.
#pragma once

#include <arm_neon.h>

#include <cstdint>

namespace bidrn {
namespace {

struct NeonVec {
  using F = float32x4_t;
  static constexpr int kWidth = 4;
  static F load_n(const float* p, int n) {
    if (n == kWidth) return vld1q_f32(p);
    float lanes[kWidth] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k = 0; k < n; ++k) lanes[k] = p[k];
    return vld1q_f32(lanes);
  }
  static void store_n(float* p, F v, int n) {
    if (n == kWidth) {
      vst1q_f32(p, v);
      return;
    }
    float lanes[kWidth];
    vst1q_f32(lanes, v);
    for (int k = 0; k < n; ++k) p[k] = lanes[k];
  }
  static F load_int_n(const int32_t* p, int n) {
    if (n == kWidth) return vcvtq_f32_s32(vld1q_s32(p));
    int32_t lanes[kWidth] = {0, 0, 0, 0};
    for (int k = 0; k < n; ++k) lanes[k] = p[k];
    return vcvtq_f32_s32(vld1q_s32(lanes));
  }
  static F set1(float v) { return vdupq_n_f32(v); }
  static F add(F a, F b) { return vaddq_f32(a, b); }
  static F sub(F a, F b) { return vsubq_f32(a, b); }
  static F mul(F a, F b) { return vmulq_f32(a, b); }
  static F div(F a, F b) { return vdivq_f32(a, b); }
  static F fmadd(F a, F b, F c) { return vfmaq_f32(c, a, b); }
  static F min(F a, F b) { return vminq_f32(a, b); }
  static F max(F a, F b) { return vmaxq_f32(a, b); }
  static F prelu(F v, F slope) { return vbslq_f32(vcgtq_f32(v, vdupq_n_f32(0.0f)), v, vmulq_f32(v, slope)); }
  static uint64_t negative_bits(const float* x, const float* limit, int n) {
    const F value = load_n(x, n);
    const F bound = limit ? load_n(limit, n) : vdupq_n_f32(0.0f);
    const uint32_t weights[kWidth] = {1, 2, 4, 8};
    const uint32x4_t bits = vandq_u32(vcltq_f32(value, bound), vld1q_u32(weights));
    return static_cast<uint64_t>(vaddvq_u32(bits) & ((1u << n) - 1u));
  }
  static F abs_n(const float* x, int n) { return vabsq_f32(load_n(x, n)); }
  static double sum(F v) {
    float lanes[kWidth];
    vst1q_f32(lanes, v);
    double total = 0.0;
    for (float lane : lanes) total += lane;
    return total;
  }
};

}  // namespace
}  // namespace bidrn
