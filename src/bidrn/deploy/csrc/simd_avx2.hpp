// Vector primitives of width 8 (AVX2 + FMA) for the shared epilogue and packing (epilogue.hpp,
// pack.hpp). Include inside the "avx2,fma" target region; everything here has internal linkage.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace bidrn {
namespace {

struct Avx2Vec {
  using F = __m256;
  static constexpr int kWidth = 8;
  static __m256i lanes_below(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static F load_n(const float* p, int n) {
    return n == kWidth ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lanes_below(n));
  }
  static void store_n(float* p, F v, int n) {
    if (n == kWidth)
      _mm256_storeu_ps(p, v);
    else
      _mm256_maskstore_ps(p, lanes_below(n), v);
  }
  static F load_int_n(const int32_t* p, int n) {
    const __m256i v = n == kWidth ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
                                  : _mm256_maskload_epi32(reinterpret_cast<const int*>(p), lanes_below(n));
    return _mm256_cvtepi32_ps(v);
  }
  static F set1(float v) { return _mm256_set1_ps(v); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F div(F a, F b) { return _mm256_div_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F min(F a, F b) { return _mm256_min_ps(a, b); }
  static F max(F a, F b) { return _mm256_max_ps(a, b); }
  static F prelu(F v, F slope) {
    return _mm256_blendv_ps(_mm256_mul_ps(v, slope), v, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ));
  }
  static uint64_t negative_bits(const float* x, const float* limit, int n) {
    const F value = load_n(x, n);
    const F bound = limit ? load_n(limit, n) : _mm256_setzero_ps();
    const int bits = _mm256_movemask_ps(_mm256_cmp_ps(value, bound, _CMP_LT_OQ));
    return static_cast<uint64_t>(static_cast<uint32_t>(bits) & ((1u << n) - 1u));
  }
  static F abs_n(const float* x, int n) {
    return _mm256_and_ps(load_n(x, n), _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
  }
  static double sum(F v) {
    alignas(32) float lanes[kWidth];
    _mm256_store_ps(lanes, v);
    double total = 0.0;
    for (float lane : lanes) total += lane;
    return total;
  }
};

}  // namespace
}  // namespace bidrn
