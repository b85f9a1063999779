// The host's OpenBLAS, as a guest uses it. OpenBLAS's thread count and its pool threads' CPUs
// are process-wide; its fork handler shuts the pool down and deadlocks (or corrupts a product)
// when another thread is inside OpenBLAS at that moment. So:
//  - shmgemm's in-process products and its forks exclude each other through one process-wide
//    lock: a product that leaves OpenBLAS's state as it is holds it shared, one that changes
//    it for its duration (the thread count, the pool threads' CPUs) and a fork hold it alone;
//  - an in-process product runs on at most the caller's OpenBLAS thread count (a host's
//    threadpoolctl limit holds), and whatever it changes is given back when it ends, on every
//    path;
//  - threads shmgemm does not know may be inside OpenBLAS at any moment: with any of them alive,
//    Launch::automatic starts workers by spawn, which runs no fork handler.
#pragma once

#include <mutex>
#include <optional>
#include <shared_mutex>

#include "shmgemm/shmgemm.hpp"
#include "worker/slice_kernel.hpp"

namespace shmgemm::detail {

// Held alone for a fork: no in-process product of shmgemm's runs meanwhile.
class ForkGuard {
 public:
  ForkGuard();
  ForkGuard(const ForkGuard&) = delete;
  ForkGuard& operator=(const ForkGuard&) = delete;
  // In the child just forked: the lock as a new one (the child has one thread, and its copy of
  // the lock is held by a thread it does not have); the guard then lets nothing go. The parent
  // lets go when the guard is destroyed.
  void in_child() noexcept;

 private:
  std::unique_lock<std::shared_mutex> lock_;
};

// For its lifetime, OpenBLAS in this process runs an in-process product with `threads` threads
// (at most the caller's count), their CPUs placed apart when `place` (BlasThreadPlacement);
// then the count and CPUs are as before. Holds the lock shared where nothing changes, else alone.
class InProcessBlas {
 public:
  InProcessBlas(int threads, bool place);
  InProcessBlas(const InProcessBlas&) = delete;
  InProcessBlas& operator=(const InProcessBlas&) = delete;
  // The threads the product runs on.
  int threads() const { return threads_; }

 private:
  int threads_ = 1;
  std::shared_lock<std::shared_mutex> shared_;
  std::unique_lock<std::shared_mutex> alone_;
  std::optional<ScopedBlasThreads> count_;
  std::optional<BlasThreadPlacement> placement_;
};

// A thread of shmgemm's own that never calls OpenBLAS (a Pool's monitor): not counted among the
// threads that may be inside OpenBLAS while it lives.
class OwnThread {
 public:
  OwnThread();
  ~OwnThread();
  OwnThread(const OwnThread&) = delete;
  OwnThread& operator=(const OwnThread&) = delete;
};

// The threads of this process that may be inside OpenBLAS, besides the calling one: all of
// them (/proc/self/task) but this one, OpenBLAS's own pool and shmgemm's own threads.
unsigned other_threads();

// `launch`, with Launch::automatic decided now: fork where no other thread may be inside
// OpenBLAS (other_threads() is 0 at one of a few looks 50 us apart: a thread that has just
// finished stays listed a little while), else spawn.
Launch resolve_launch(Launch launch);

}  // namespace shmgemm::detail
