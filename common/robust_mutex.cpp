#include "common/robust_mutex.hpp"

#include <cerrno>

namespace shmgemm {

RobustMutex::RobustMutex() {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&mutex_, &attr);
  pthread_mutexattr_destroy(&attr);
}

RobustMutex::~RobustMutex() {
  pthread_mutex_destroy(&mutex_);
}

bool RobustMutex::lock() {
  if (pthread_mutex_lock(&mutex_) == EOWNERDEAD) {
    pthread_mutex_consistent(&mutex_);
    return true;
  }
  return false;
}

void RobustMutex::unlock() {
  pthread_mutex_unlock(&mutex_);
}

}  // namespace shmgemm
