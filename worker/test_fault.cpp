#include "worker/test_fault.hpp"

#include "shmgemm/error.hpp"

#include <unistd.h>

#include <charconv>
#include <csignal>
#include <cstdlib>

namespace shmgemm {

void inject_test_fault(std::size_t id, std::uint32_t attempt,
                       const std::function<void(std::string_view)>& on_exit) {
  const char* spec = std::getenv("SHMGEMM_TEST_FAULT");
  if (spec == nullptr) return;
  const std::string_view s(spec);
  const std::size_t c1 = s.find(':');
  if (c1 == std::string_view::npos) return;
  std::size_t worker = 0;
  const bool all = s.substr(0, c1) == "all";
  if (!all && (std::from_chars(s.data(), s.data() + c1, worker).ec != std::errc() || worker != id))
    return;
  const std::string_view rest = s.substr(c1 + 1);
  const std::size_t c2 = rest.find(':');
  const std::string_view action = rest.substr(0, c2);
  if (c2 != std::string_view::npos) {
    std::uint32_t attempts = 0;
    std::from_chars(rest.data() + c2 + 1, rest.data() + rest.size(), attempts);
    if (attempt >= attempts) return;
  }
  if (action == "kill") ::raise(SIGKILL);
  if (action == "segv") ::raise(SIGSEGV);
  if (action == "abort") std::abort();
  if (action == "exit") {
    on_exit("injected fault (SHMGEMM_TEST_FAULT)");
    ::_exit(7);
  }
  if (action == "throw") throw Error(ErrorCode::internal, "injected fault (SHMGEMM_TEST_FAULT)");
  if (action == "stall")
    for (;;)
      ::pause();
}

}  // namespace shmgemm
