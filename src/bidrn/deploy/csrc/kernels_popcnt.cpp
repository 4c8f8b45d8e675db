// The scalar kernel set compiled for the x86 POPCNT instruction (x86-64-v2 and later).
#include "bitconv.hpp"

#ifdef BIDRN_X86_DISPATCH
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("popcnt"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("popcnt")
#endif

#include "kernels_scalar.hpp"
#include "pack.hpp"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace bidrn {
const KernelSet& popcnt_kernels() {
  static const KernelSet set{"popcnt", 1, pack_rows<ScalarVec, 1>,
                                  conv_jobs_by_branches<scalar_conv_jobs<false>, scalar_conv_jobs<true>>};
  return set;
}
}  // namespace bidrn
#endif
