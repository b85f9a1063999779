// The one clock for durations: seconds on the steady clock.
#pragma once

#include <chrono>

namespace shmgemm {

using SteadyClock = std::chrono::steady_clock;

// Seconds from `start` to now.
inline double seconds_since(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

}  // namespace shmgemm
