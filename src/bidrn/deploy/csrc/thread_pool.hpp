// A small persistent thread pool for the kernels.
//
// The extension does not link OpenMP: a second OpenMP runtime next to torch's would keep two
// spinning thread teams on the same cores. Workers are started on first use and sleep between
// calls; the calling thread always takes part in the work.
#pragma once

#include <cstdint>
#include <functional>

namespace bidrn {

// Run body(begin, end) over [0, jobs) split into contiguous ranges on up to `threads` threads
// (the caller included). Returns when every range is done.
void parallel_for(int64_t jobs, int threads, const std::function<void(int64_t, int64_t)>& body);

}  // namespace bidrn
