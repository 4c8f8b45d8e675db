// parallel_for on the process's OpenMP thread team when one is loaded, else on a small pool.
//
// Why not simply a pool of our own: torch runs its ops on an OpenMP team whose threads spin for a
// while after every parallel region. With our own workers next to them, a busy machine saw the
// spinning team take the cores our workers needed (2 threads 14x slower than 1). Running our
// kernels on the same team removes the competition: the threads that spin are the ones that take
// our work. The team is reached through the OpenMP runtime's GCC ABI entry point GOMP_parallel,
// which libgomp (torch's wheels), LLVM's libomp and Intel's libiomp5 all export; it is looked up
// in the already loaded runtime, so nothing is linked against OpenMP here.
//
// Either way the work is split into many small chunks taken from a shared counter, so a thread
// that the OS deschedules delays at most one chunk: the others take the rest.
#include "thread_pool.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>
#include <pthread.h>
#endif
#if defined(__linux__)
#include <link.h>
#endif

namespace bidrn {
namespace {

// The range [0, jobs) in chunks handed out by an atomic counter.
struct Work {
  const std::function<void(int64_t, int64_t)>* body;
  int64_t jobs;
  int64_t chunk;
  std::atomic<int64_t> next{0};

  void take_chunks() {
    for (;;) {
      const int64_t begin = next.fetch_add(chunk);
      if (begin >= jobs) return;
      (*body)(begin, std::min(jobs, begin + chunk));
    }
  }
};

// Chunks per thread: small enough to balance a thread the OS has descheduled, large enough that
// taking one costs nothing next to its work.
constexpr int64_t kChunksPerThread = 8;

// ---- the OpenMP team --------------------------------------------------------------------------
using GompParallel = void (*)(void (*)(void*), void*, unsigned, unsigned);

#if defined(__linux__)
int find_openmp(struct dl_phdr_info* info, size_t, void* result) {
  const char* name = info->dlpi_name;
  if (!name || !*name) return 0;
  const char* base = std::strrchr(name, '/');
  base = base ? base + 1 : name;
  if (std::strncmp(base, "libgomp", 7) != 0 && std::strncmp(base, "libomp", 6) != 0 &&
      std::strncmp(base, "libiomp5", 8) != 0)
    return 0;
  void* handle = dlopen(name, RTLD_LAZY | RTLD_NOLOAD);
  if (!handle) return 0;
  *static_cast<void**>(result) = dlsym(handle, "GOMP_parallel");
  return *static_cast<void**>(result) != nullptr;
}
#endif

GompParallel loaded_openmp() {
  void* symbol = nullptr;
#if defined(__linux__)
  dl_iterate_phdr(find_openmp, &symbol);
#elif defined(__APPLE__)
  symbol = dlsym(RTLD_DEFAULT, "GOMP_parallel");
#endif
  return reinterpret_cast<GompParallel>(symbol);
}

void take_chunks(void* work) { static_cast<Work*>(work)->take_chunks(); }

// ---- our own pool (no OpenMP runtime in the process) ------------------------------------------
class Pool {
 public:
  void run(Work* work, int threads) {
    std::lock_guard<std::mutex> call_guard(call_mutex_);  // one parallel region at a time
    ensure_workers(threads - 1);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      work_ = work;
      wanted_ = threads - 1;
      joined_ = finished_ = 0;
      ++generation_;
    }
    wake_.notify_all();
    work->take_chunks();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return finished_ == joined_ && (joined_ == wanted_ || work->next >= work->jobs); });
    wanted_ = joined_;  // late workers of this generation must not start
    work_ = nullptr;
  }

 private:
  void ensure_workers(int count) {
    while (static_cast<int>(workers_) < count) {
      std::thread([this] { worker_loop(); }).detach();
      ++workers_;
    }
  }

  void worker_loop() {
    uint64_t seen = 0;
    for (;;) {
      Work* work;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (joined_ >= wanted_ || work_ == nullptr) continue;
        ++joined_;
        work = work_;
      }
      work->take_chunks();
      std::lock_guard<std::mutex> lock(mutex_);
      ++finished_;
      done_.notify_one();
    }
  }

  std::mutex call_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  Work* work_ = nullptr;
  int wanted_ = 0, joined_ = 0, finished_ = 0;
  uint64_t generation_ = 0;
  size_t workers_ = 0;
};

// Worker threads do not survive fork(); a child process starts with a fresh pool (the parent's
// pool object is deliberately leaked there, its mutexes may be held by threads that no longer exist).
Pool* pool = nullptr;

Pool& pool_instance() {
  static std::mutex creation;
  static bool registered = false;
  std::lock_guard<std::mutex> lock(creation);
  if (!registered) {
#if defined(__unix__) || defined(__APPLE__)
    pthread_atfork(nullptr, nullptr, [] { pool = nullptr; });
#endif
    registered = true;
  }
  if (pool == nullptr) pool = new Pool();
  return *pool;
}

std::atomic<int> backend{-1};  // -1: not chosen yet; else a ThreadBackend

}  // namespace

ThreadBackend thread_backend() {
  int chosen = backend.load();
  if (chosen < 0) {
    chosen = loaded_openmp() ? static_cast<int>(ThreadBackend::kOpenMP) : static_cast<int>(ThreadBackend::kPool);
    backend.store(chosen);
  }
  return static_cast<ThreadBackend>(chosen);
}

bool set_thread_backend(ThreadBackend wanted) {
  if (wanted == ThreadBackend::kOpenMP && !loaded_openmp()) return false;
  backend.store(static_cast<int>(wanted));
  return true;
}

void parallel_for(int64_t jobs, int threads, const std::function<void(int64_t, int64_t)>& body) {
  threads = static_cast<int>(std::min<int64_t>(std::max(threads, 1), jobs));
  if (threads <= 1) {
    if (jobs > 0) body(0, jobs);
    return;
  }
  Work work;
  work.body = &body;
  work.jobs = jobs;
  work.chunk = std::max<int64_t>(1, jobs / (threads * kChunksPerThread));
  if (thread_backend() == ThreadBackend::kOpenMP) {
    static const GompParallel gomp_parallel = loaded_openmp();
    gomp_parallel(take_chunks, &work, static_cast<unsigned>(threads), 0);
    return;
  }
  pool_instance().run(&work, threads);
}

}  // namespace bidrn
