// A process-shared, robust pthread mutex to place in shared memory: when its owner dies, the
// next locker takes it over instead of waiting forever.
#pragma once

#include <pthread.h>

namespace shmgemm {

class RobustMutex {
 public:
  // Initialises in place; call once, in the creating process. Throws Error(resource) when
  // pthreads refuses.
  RobustMutex();
  RobustMutex(const RobustMutex&) = delete;
  RobustMutex& operator=(const RobustMutex&) = delete;
  ~RobustMutex();

  // Locks; if the previous owner died holding it, makes it consistent and returns true.
  // Throws Error(internal) for any other failure (a mutex that can no longer be recovered).
  bool lock();
  void unlock();

 private:
  pthread_mutex_t mutex_;
};

// RAII for RobustMutex.
class RobustLock {
 public:
  // A lock taken over from a dead owner is made consistent by lock(); the state it guards is
  // the caller's to check.
  explicit RobustLock(RobustMutex& m) : m_(m), recovered_(m_.lock()) {}
  ~RobustLock() { m_.unlock(); }
  RobustLock(const RobustLock&) = delete;
  RobustLock& operator=(const RobustLock&) = delete;
  // The previous owner died holding the lock: what it guards may be half updated.
  bool recovered() const { return recovered_; }

 private:
  RobustMutex& m_;
  bool recovered_;
};

}  // namespace shmgemm
