// Portable scalar kernel set: any CPU, any compiler.
#define BIDRN_SCALAR_NAMESPACE generic
#include "scalar_impl.hpp"

namespace bidrn {
const KernelSet& generic_kernels() {
  static const KernelSet set{"generic", generic::pack_rows, generic::conv_jobs};
  return set;
}
}  // namespace bidrn
