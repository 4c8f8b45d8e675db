// Persistent worker threads for parallel_for (see thread_pool.hpp).
#include "thread_pool.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace bidrn {
namespace {

class Pool {
 public:
  void run(int64_t jobs, int threads, const std::function<void(int64_t, int64_t)>& body) {
    std::lock_guard<std::mutex> call_guard(call_mutex_);  // one parallel region at a time
    ensure_workers(threads - 1);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      body_ = &body;
      jobs_ = jobs;
      parts_ = threads;
      next_part_.store(0);
      done_parts_ = 0;
      ++generation_;
    }
    wake_.notify_all();
    work();
    std::unique_lock<std::mutex> lock(mutex_);
    finished_.wait(lock, [&] { return done_parts_ == parts_; });
    body_ = nullptr;
  }

 private:
  // Take parts until none are left; each part is one contiguous range of jobs.
  void work() {
    for (;;) {
      const int part = next_part_.fetch_add(1);
      if (part >= parts_) return;
      const int64_t begin = jobs_ * part / parts_, end = jobs_ * (part + 1) / parts_;
      if (begin < end) (*body_)(begin, end);
      std::lock_guard<std::mutex> lock(mutex_);
      if (++done_parts_ == parts_) finished_.notify_one();
    }
  }

  void ensure_workers(int count) {
    while (static_cast<int>(workers_) < count) {
      std::thread([this] { worker_loop(); }).detach();
      ++workers_;
    }
  }

  void worker_loop() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
      }
      work();
    }
  }

  std::mutex call_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable finished_;
  const std::function<void(int64_t, int64_t)>* body_ = nullptr;
  int64_t jobs_ = 0;
  int parts_ = 0;
  std::atomic<int> next_part_{0};
  int done_parts_ = 0;
  uint64_t generation_ = 0;
  size_t workers_ = 0;
};

// Worker threads do not survive fork(); a child process starts with a fresh pool (the parent's
// pool object is deliberately leaked there, its mutexes may be held by threads that no longer exist).
Pool* pool = nullptr;

Pool& instance() {
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

}  // namespace

void parallel_for(int64_t jobs, int threads, const std::function<void(int64_t, int64_t)>& body) {
  threads = static_cast<int>(std::min<int64_t>(std::max(threads, 1), jobs));
  if (threads <= 1) {
    if (jobs > 0) body(0, jobs);
    return;
  }
  instance().run(jobs, threads, body);
}

}  // namespace bidrn
