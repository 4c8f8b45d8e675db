// Vector primitives of width 1 (plain C++) for the shared epilogue and packing (epilogue.hpp,
// pack.hpp). Include inside the kernel set's target region; everything here has internal linkage.
#pragma once

#include <cstdint>

namespace bidrn {
namespace {

struct ScalarVec {
  using F = float;
  static constexpr int kWidth = 1;
  static F load_n(const float* p, int) { return *p; }
  static void store_n(float* p, F v, int) { *p = v; }
  static F load_int_n(const int32_t* p, int) { return static_cast<float>(*p); }
  static F set1(float v) { return v; }
  static F add(F a, F b) { return a + b; }
  static F sub(F a, F b) { return a - b; }
  static F mul(F a, F b) { return a * b; }
  static F div(F a, F b) { return a / b; }
  static F fmadd(F a, F b, F c) { return a * b + c; }
  static F min(F a, F b) { return b < a ? b : a; }
  static F max(F a, F b) { return a < b ? b : a; }
  static F prelu(F v, F slope) { return v > 0.0f ? v : v * slope; }
  // Bit k set where x[k] < limit[k] (limit 0 when null), for n <= kWidth lanes.
  static uint64_t negative_bits(const float* x, const float* limit, int) {
    return static_cast<uint64_t>(*x < (limit ? *limit : 0.0f));
  }
  static F abs_n(const float* x, int) { return *x < 0.0f ? -*x : *x; }
  static double sum(F v) { return v; }
};

}  // namespace
}  // namespace bidrn
