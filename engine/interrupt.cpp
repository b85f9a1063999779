#include "engine/interrupt.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstring>

#include "shmgemm/shmgemm.hpp"

namespace shmgemm {
namespace {

// Every signal whose default action ends the process and that a handler may catch: a run
// stopped by any of them kills its workers and removes what it made. SIGPIPE too: a reader of
// shmgemm's output that went away.
constexpr int kSignals[] = {SIGINT,  SIGTERM, SIGHUP,  SIGQUIT,   SIGUSR1, SIGUSR2,
                            SIGALRM, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGPIPE};
std::atomic<std::uint64_t> g_count{0};  // interrupts so far; lock-free, so signal-safe
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
volatile std::sig_atomic_t g_signal = 0;  // the latest
int g_event_fd = -1;
bool g_handled[sizeof kSignals / sizeof kSignals[0]] = {};
thread_local detail::StopScope* t_scope = nullptr;

extern "C" void on_interrupt(int sig) {
  // Async-signal-safe: stores and a write.
  const int saved = errno;
  g_signal = sig;
  g_count.fetch_add(1, std::memory_order_relaxed);
  const std::uint64_t one = 1;
  if (g_event_fd >= 0) {
    const ssize_t n = ::write(g_event_fd, &one, sizeof one);
    static_cast<void>(n);
  }
  errno = saved;
}

}  // namespace

void handle_interrupts() {
  enable_interrupt_requests();
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sa.sa_flags = SA_RESTART;  // calls that can be restarted are; the interrupt check decides
  sigemptyset(&sa.sa_mask);
  for (std::size_t i = 0; i < std::size(kSignals); ++i) {
    // An inherited SIG_IGN stays: `nohup shmgemm ...` must survive SIGHUP.
    struct sigaction old {};
    if (::sigaction(kSignals[i], nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
    ::sigaction(kSignals[i], &sa, nullptr);
    g_handled[i] = true;
  }
}

int interrupted_signal() {
  return g_signal;
}

void enable_interrupt_requests() {
  if (g_event_fd < 0) g_event_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

void request_interrupt(int sig) {
  on_interrupt(sig);
}

namespace detail {

StopScope::StopScope(double timeout_seconds, std::stop_token stop)
    // Nested in another scope: part of its operation, stopped by what stops it.
    : start_(t_scope ? t_scope->start_ : g_count.load(std::memory_order_relaxed)),
      timeout_(timeout_seconds > 0 && std::isfinite(timeout_seconds) ? timeout_seconds : 0),
      deadline_(deadline_after(timeout_)),
      stop_(std::move(stop)),
      outer_(t_scope) {
  if (stop_.stop_possible()) {
    wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_)
      throw Error(ErrorCode::resource,
                  fmt::format("cannot create an event descriptor: {}", std::strerror(errno)));
    on_stop_.emplace(stop_, Wake{wake_.get()});
  }
  // An interrupt that a finished call already answered must not wake this one's poll().
  if (g_event_fd >= 0 && t_scope == nullptr) {
    std::uint64_t drained = 0;
    const ssize_t n = ::read(g_event_fd, &drained, sizeof drained);
    static_cast<void>(n);
  }
  t_scope = this;
}

StopScope::~StopScope() {
  on_stop_.reset();  // before the descriptor it writes to
  t_scope = outer_;
}

void StopScope::Wake::operator()() const noexcept {
  const std::uint64_t one = 1;
  const ssize_t n = ::write(fd, &one, sizeof one);
  static_cast<void>(n);
}

int StopScope::signal() const noexcept {
  return g_count.load(std::memory_order_relaxed) != start_ ? g_signal : 0;
}

bool StopScope::stop_requested() const noexcept {
  for (const StopScope* s = this; s != nullptr; s = s->outer_)
    if (s->stop_.stop_requested()) return true;
  return false;
}

long long StopScope::left_ms() const noexcept {
  if (timeout_ <= 0) return -1;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline_ - std::chrono::steady_clock::now());
  return std::max<long long>(left.count(), 0);
}

std::chrono::steady_clock::time_point deadline_after(double seconds) {
  // Past what the clock can hold (2^63 ns, 292 years): the end of time.
  const auto now = std::chrono::steady_clock::now();
  const double room =
      std::chrono::duration<double>(std::chrono::steady_clock::time_point::max() - now).count();
  if (!(seconds < room)) return std::chrono::steady_clock::time_point::max();
  return now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                   std::chrono::duration<double>(seconds));
}

const StopScope* current_stop_scope() noexcept {
  return t_scope;
}

bool StopScope::stoppable() const noexcept {
  for (const StopScope* s = this; s != nullptr; s = s->outer_)
    if (s->stop_.stop_possible() || s->timeout_ > 0) return true;
  return false;
}

bool call_is_stoppable() noexcept {
  return g_event_fd >= 0 || (t_scope != nullptr && t_scope->stoppable());
}

int interrupt_fd() {
  return g_event_fd;
}

void throw_if_interrupted(bool deadline) {
  if (t_scope == nullptr) return;
  if (const int sig = t_scope->signal()) {
    const char* abbrev = sigabbrev_np(sig);
    throw Error(
        ErrorCode::interrupted,
        fmt::format("interrupted by SIG{}: stopped, output left unchanged", abbrev ? abbrev : "?"));
  }
  if (t_scope->stop_requested())
    throw Error(ErrorCode::interrupted, "stopped on request: output left unchanged");
  if (deadline && t_scope->left_ms() == 0)
    throw Error(ErrorCode::timed_out,
                timed_out_after(t_scope->timeout_seconds()) + ": stopped, output left unchanged");
}

std::string timed_out_after(double seconds) {
  return fmt::format("timed out after {:g} s", seconds);
}

void reset_interrupt_handlers_in_child() {
  for (std::size_t i = 0; i < std::size(kSignals); ++i)
    if (g_handled[i]) ::signal(kSignals[i], SIG_DFL);
}

}  // namespace detail
}  // namespace shmgemm
