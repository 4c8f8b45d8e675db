// Vector primitives of width 16 (AVX-512F) for the shared epilogue and packing (epilogue.hpp,
// pack.hpp). Include inside the "avx512f" target region; everything here has internal linkage.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace bidrn {
namespace {

struct Avx512Vec {
  using F = __m512;
  static constexpr int kWidth = 16;
  static __mmask16 lanes_below(int n) {
    return n >= kWidth ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1u);
  }
  static F load_n(const float* p, int n) { return _mm512_maskz_loadu_ps(lanes_below(n), p); }
  static void store_n(float* p, F v, int n) { _mm512_mask_storeu_ps(p, lanes_below(n), v); }
  static F load_int_n(const int32_t* p, int n) {
    return _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(lanes_below(n), p));
  }
  static F set1(float v) { return _mm512_set1_ps(v); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F div(F a, F b) { return _mm512_div_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F min(F a, F b) { return _mm512_min_ps(a, b); }
  static F max(F a, F b) { return _mm512_max_ps(a, b); }
  static F prelu(F v, F slope) {
    return _mm512_mask_mul_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LE_OQ), v, slope);
  }
  static uint64_t negative_bits(const float* x, const float* limit, int n) {
    const __mmask16 valid = lanes_below(n);
    const F value = _mm512_maskz_loadu_ps(valid, x);
    const F bound = limit ? _mm512_maskz_loadu_ps(valid, limit) : _mm512_setzero_ps();
    return static_cast<uint64_t>(_mm512_mask_cmp_ps_mask(valid, value, bound, _CMP_LT_OQ));
  }
  static F abs_n(const float* x, int n) {
    const __m512i bits = _mm512_castps_si512(load_n(x, n));
    return _mm512_castsi512_ps(_mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff)));
  }
  static double sum(F v) {
    alignas(64) float lanes[kWidth];
    _mm512_store_ps(lanes, v);
    double total = 0.0;
    for (float lane : lanes) total += lane;
    return total;
  }
};

}  // namespace
}  // namespace bidrn
