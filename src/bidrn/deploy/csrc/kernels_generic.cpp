// Portable scalar kernel set: any CPU, any compiler.
#include "kernels_scalar.hpp"
#include "pack.hpp"

namespace bidrn {
const KernelSet& generic_kernels() {
  static const KernelSet set{"generic", 1, pack_rows<ScalarVec, 1>,
                                  conv_jobs_by_branches<scalar_conv_jobs<false>, scalar_conv_jobs<true>>};
  return set;
}
}  // namespace bidrn
