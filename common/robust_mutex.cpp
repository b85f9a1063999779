#include "common/robust_mutex.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

#include "shmgemm/error.hpp"

namespace shmgemm {

RobustMutex::RobustMutex() {
  pthread_mutexattr_t attr;
  int rc = pthread_mutexattr_init(&attr);
  if (rc == 0) rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  if (rc == 0) rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  if (rc == 0) rc = pthread_mutex_init(&mutex_, &attr);
  pthread_mutexattr_destroy(&attr);
  if (rc != 0)
    throw Error(ErrorCode::resource,
                fmt::format("cannot make a process-shared robust mutex: {}", std::strerror(rc)));
}

RobustMutex::~RobustMutex() {
  pthread_mutex_destroy(&mutex_);
}

bool RobustMutex::lock() {
  const int rc = pthread_mutex_lock(&mutex_);
  if (rc == 0) return false;
  if (rc == EOWNERDEAD) {
    if (const int c = pthread_mutex_consistent(&mutex_); c != 0)
      throw Error(ErrorCode::internal,
                  fmt::format("cannot recover a mutex whose owner died: {}", std::strerror(c)));
    return true;
  }
  throw Error(ErrorCode::internal,
              fmt::format("cannot lock a shared mutex: {}", std::strerror(rc)));
}

void RobustMutex::unlock() {
  pthread_mutex_unlock(&mutex_);
}

}  // namespace shmgemm
