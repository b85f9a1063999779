// A process-shared, robust pthread mutex to place in shared memory: when its owner dies, the
// next locker takes it over instead of waiting forever.
#pragma once

#include <pthread.h>

namespace shmgemm {

class RobustMutex {
 public:
  // Initialises in place; call once, in the creating process.
  RobustMutex();
  RobustMutex(const RobustMutex&) = delete;
  RobustMutex& operator=(const RobustMutex&) = delete;
  ~RobustMutex();

  // Locks; if the previous owner died holding it, makes it consistent and returns true.
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
  explicit RobustLock(RobustMutex& m) : m_(m) { m_.lock(); }
  ~RobustLock() { m_.unlock(); }
  RobustLock(const RobustLock&) = delete;
  RobustLock& operator=(const RobustLock&) = delete;

 private:
  RobustMutex& m_;
};

}  // namespace shmgemm
