#include "worker/test_fault.hpp"

#include <unistd.h>

#include <csignal>
#include <cstdlib>

#include "shmgemm/error.hpp"

namespace shmgemm {

void inject_test_fault(std::size_t id, std::uint32_t attempt,
                       const std::function<void(std::string_view)>& on_exit) {
  if (shmgemm_test_fault_hook == nullptr) return;  // production: no hook
  switch (shmgemm_test_fault_hook(id, attempt)) {
    case shmgemm_fault_kill:
      ::raise(SIGKILL);
      break;
    case shmgemm_fault_segv:
      ::raise(SIGSEGV);
      break;
    case shmgemm_fault_abort:
      std::abort();
    case shmgemm_fault_exit:
      on_exit("injected fault (test hook)");
      ::_exit(7);
    case shmgemm_fault_throw:
      throw Error(ErrorCode::internal, "injected fault (test hook)");
    case shmgemm_fault_stall:
      for (;;)
        ::pause();
    default:
      break;
  }
}

void inject_test_fault_after_work(std::size_t id, std::uint32_t attempt, bool last_phase) {
  if (shmgemm_test_fault_hook == nullptr) return;
  const int fault = shmgemm_test_fault_hook(id, attempt);
  if (fault == shmgemm_fault_dawdle) ::usleep(300'000);
  if (fault == shmgemm_fault_linger && last_phase)
    for (;;)
      ::pause();
}

}  // namespace shmgemm
