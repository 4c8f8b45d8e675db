// Portable scalar kernel set: any CPU, any compiler.
#include "kernels_scalar.hpp"
#include "pack.hpp"

namespace bidrn {
const KernelSet& generic_kernels() {
  static const KernelSet set{"generic", 1, pack_rows<ScalarVec, 1>, scalar_conv_jobs};
  return set;
}
}  // namespace bidrn
