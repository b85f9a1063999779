#include "engine/interrupt.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <fmt/format.h>
#include <csignal>
#include <cstdint>
#include <cstring>

#include "shmgemm/shmgemm.hpp"

namespace shmgemm {
namespace {

constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
volatile std::sig_atomic_t g_signal = 0;
int g_event_fd = -1;

extern "C" void on_interrupt(int sig) {
  // Async-signal-safe: a store and a write.
  const int saved = errno;
  g_signal = sig;
  const std::uint64_t one = 1;
  if (g_event_fd >= 0) {
    const ssize_t n = ::write(g_event_fd, &one, sizeof one);
    static_cast<void>(n);
  }
  errno = saved;
}

}  // namespace

void handle_interrupts() {
  if (g_event_fd < 0) g_event_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  for (int sig : kSignals)
    ::sigaction(sig, &sa, nullptr);
}

int interrupted_signal() {
  return g_signal;
}

namespace detail {

int interrupt_fd() {
  return g_event_fd;
}

void throw_if_interrupted() {
  if (const int sig = g_signal)
    throw Error(ErrorCode::interrupted,
                fmt::format("interrupted by {}: workers stopped, output left unchanged",
                            sig == SIGINT    ? "SIGINT"
                            : sig == SIGTERM ? "SIGTERM"
                                             : "SIGHUP"));
}

void reset_interrupt_handlers_in_child() {
  for (int sig : kSignals)
    ::signal(sig, SIG_DFL);
}

}  // namespace detail
}  // namespace shmgemm
