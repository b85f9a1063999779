#include "common/bus_guard.hpp"

#include "shmgemm/error.hpp"

#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <mutex>

namespace shmgemm {
namespace {

struct Guarded {
  std::atomic<std::uintptr_t> begin{0}, end{0};
  char what[480] = {};
};
constexpr std::size_t kSlots = 64;
Guarded g_guarded[kSlots];
std::mutex g_register;  // registration only; the handler reads without it
struct sigaction g_previous {};

// Where a worker's message goes instead of stderr.
std::atomic<char*> g_message{nullptr};
std::size_t g_message_bytes = 0;
std::atomic<std::atomic<std::uint32_t>*> g_state{nullptr};
std::atomic<std::int32_t*> g_code{nullptr};
std::uint32_t g_failed = 0;

void append(char* out, std::size_t& at, std::size_t cap, const char* s) {
  for (; *s && at + 1 < cap; ++s)
    out[at++] = *s;
  out[at] = '\0';
}

extern "C" void on_bus_error(int sig, siginfo_t* info, void* context) {
  const auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
  for (Guarded& g : g_guarded) {
    const std::uintptr_t begin = g.begin.load(std::memory_order_acquire);
    if (begin == 0 || addr < begin || addr >= g.end.load(std::memory_order_acquire)) continue;
    // Async-signal-safe: copies, a write, _exit. Only the first of threads that fault at once
    // reports; the others wait for its _exit, which ends them all.
    static std::atomic<bool> reported{false};
    if (reported.exchange(true))
      for (;;)
        ::pause();
    char line[640];
    std::size_t at = 0;
    append(line, at, sizeof line, g.what);
    append(line, at, sizeof line, ": changed or truncated while being read (SIGBUS)");
    if (char* field = g_message.load()) {
      std::size_t n = 0;
      append(field, n, g_message_bytes, line);
      if (auto* code = g_code.load()) *code = static_cast<std::int32_t>(ErrorCode::bad_file);
      if (auto* state = g_state.load()) state->store(g_failed, std::memory_order_release);
    } else {
      char out[660];
      std::size_t o = 0;
      append(out, o, sizeof out, "shmgemm: ");
      append(out, o, sizeof out, line);
      append(out, o, sizeof out, "\n");
      const ssize_t w = ::write(2, out, o);
      static_cast<void>(w);
    }
    ::_exit(1);
  }
  // Not ours: what would have happened without this handler.
  if (g_previous.sa_flags & SA_SIGINFO) {
    if (g_previous.sa_sigaction) return g_previous.sa_sigaction(sig, info, context);
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    return g_previous.sa_handler(sig);
  }
  ::signal(SIGBUS, SIG_DFL);  // returning re-runs the access, which now kills as it would have
}

void install() noexcept {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_bus_error;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, &g_previous);
  });
}

}  // namespace

void guard_mapping(const void* base, std::size_t bytes, std::string_view what) noexcept {
  if (base == nullptr || bytes == 0) return;
  install();
  const std::lock_guard lock(g_register);
  for (Guarded& g : g_guarded) {
    if (g.begin.load() != 0) continue;
    const std::size_t n = std::min(what.size(), sizeof g.what - 1);
    std::memcpy(g.what, what.data(), n);
    g.what[n] = '\0';
    g.end.store(reinterpret_cast<std::uintptr_t>(base) + bytes, std::memory_order_release);
    g.begin.store(reinterpret_cast<std::uintptr_t>(base), std::memory_order_release);
    return;
  }
}

void unguard_mapping(const void* base) noexcept {
  const std::lock_guard lock(g_register);
  for (Guarded& g : g_guarded)
    if (g.begin.load() == reinterpret_cast<std::uintptr_t>(base)) {
      g.begin.store(0, std::memory_order_release);
      g.end.store(0, std::memory_order_release);
    }
}

void report_bus_errors_to(char* message, std::size_t bytes, std::int32_t* code,
                          std::atomic<std::uint32_t>* state, std::uint32_t failed) noexcept {
  g_message_bytes = bytes;
  g_code.store(code);
  g_failed = failed;
  g_state.store(state);
  g_message.store(message);
}

}  // namespace shmgemm
