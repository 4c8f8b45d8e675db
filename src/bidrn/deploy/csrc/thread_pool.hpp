// parallel_for for the kernels: on the process's OpenMP team (torch's) when one is loaded, else on
// a small pool of sleeping workers (thread_pool.cpp explains why).
#pragma once

#include <cstdint>
#include <functional>

namespace bidrn {

enum class ThreadBackend { kOpenMP = 0, kPool = 1 };

// Run body(begin, end) over [0, jobs) in small chunks on up to `threads` threads (the caller
// included). Returns when every chunk is done.
void parallel_for(int64_t jobs, int threads, const std::function<void(int64_t, int64_t)>& body);

// Where parallel_for runs: the OpenMP team when an OpenMP runtime is loaded (chosen on first use).
ThreadBackend thread_backend();

// Choose the backend; false (and no change) when OpenMP is asked for but no runtime is loaded.
bool set_thread_backend(ThreadBackend backend);

}  // namespace bidrn
