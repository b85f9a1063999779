#include "engine/host_blas.hpp"

#include <dirent.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <new>
#include <thread>

namespace shmgemm::detail {
namespace {

std::shared_mutex& blas_lock() {
  // Never destroyed: a product or a fork may run while static destructors do.
  static auto* const lock = new std::shared_mutex;
  return *lock;
}

std::atomic<int> own_threads{0};

// Entries of /proc/self/task: the threads of this process; 0 where it cannot be read.
unsigned tasks() {
  DIR* dir = ::opendir("/proc/self/task");
  if (dir == nullptr) return 0;
  unsigned n = 0;
  while (const dirent* e = ::readdir(dir))
    n += e->d_name[0] != '.';
  ::closedir(dir);
  return n;
}

}  // namespace

ForkGuard::ForkGuard() : lock_(blas_lock()) {}

void ForkGuard::in_child() noexcept {
  static_cast<void>(lock_.release());
  new (&blas_lock()) std::shared_mutex;
}

InProcessBlas::InProcessBlas(int threads, bool place) {
  // The caller's count is read under the lock: another product of shmgemm's may be changing it.
  auto cap = [threads] {
    return affordable_blas_threads(std::clamp(threads, 1, std::max(blas_threads(), 1)));
  };
  {
    std::shared_lock lock(blas_lock());
    threads_ = cap();
    if (threads_ == blas_threads() && !(place && threads_ > 1)) {
      shared_ = std::move(lock);
      return;
    }
  }
  alone_ = std::unique_lock(blas_lock());
  threads_ = cap();
  count_.emplace(threads_);
  if (place && threads_ > 1) placement_.emplace(threads_);
}

OwnThread::OwnThread() {
  own_threads.fetch_add(1);
}

OwnThread::~OwnThread() {
  own_threads.fetch_sub(1);
}

unsigned other_threads() {
  const int n = static_cast<int>(tasks()) - 1 - blas_pool_threads() - own_threads.load();
  return static_cast<unsigned>(std::max(n, 0));
}

Launch resolve_launch(Launch launch) {
  if (launch != Launch::automatic) return launch;
  // A thread that has just finished (its last step done, as a host's join sees it) is listed
  // for some microseconds more: another thread is one still listed after a few looks.
  for (int look = 0; look < 4; ++look) {
    if (other_threads() == 0) return Launch::fork;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return Launch::spawn;
}

}  // namespace shmgemm::detail

namespace shmgemm {

HostBlasGuard::HostBlasGuard() : held_(true) {
  detail::blas_lock().lock_shared();
}

HostBlasGuard::HostBlasGuard(std::try_to_lock_t) : held_(detail::blas_lock().try_lock_shared()) {}

HostBlasGuard::~HostBlasGuard() {
  if (held_) detail::blas_lock().unlock_shared();
}

}  // namespace shmgemm
