// The scalar kernel set compiled for the x86 POPCNT instruction (x86-64-v2 and later).
#include "bitconv.hpp"

#ifdef BIDRN_X86_DISPATCH
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("popcnt"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("popcnt")
#endif

#define BIDRN_SCALAR_NAMESPACE popcnt
#include "scalar_impl.hpp"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace bidrn {
const KernelSet& popcnt_kernels() {
  static const KernelSet set{"popcnt", popcnt::pack_rows, popcnt::conv_jobs};
  return set;
}
}  // namespace bidrn
#endif
