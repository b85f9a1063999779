#include "engine/launcher.hpp"

#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>
#include <spawn.h>

#include <fmt/format.h>
#include <algorithm>
#include <boost/date_time/posix_time/posix_time_types.hpp>
#include <boost/interprocess/exceptions.hpp>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>

#include "engine/host_blas.hpp"
#include "engine/interrupt.hpp"
#include "shmgemm/error.hpp"
#include "worker/blas_core.hpp"

extern char** environ;

namespace shmgemm::detail {
namespace {

// glibc 2.36's <sys/pidfd.h> declares pidfd_open without C linkage for C++: call it directly.
int pidfd_open(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

// Kills and reaps child `pid`. Only ever for a pid > 0: kill(-1) signals every process the user
// may signal, and waitpid(-1) reaps any child.
void kill_and_reap(pid_t pid) noexcept {
  if (pid <= 0) return;
  ::kill(pid, SIGKILL);
  retry_eintr([pid] { return ::waitpid(pid, nullptr, 0); });
}

}  // namespace

bool WorkerExit::ok() const {
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::string WorkerExit::describe() const {
  if (WIFSIGNALED(status)) return fmt::format("was killed by signal {}", WTERMSIG(status));
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  return fmt::format("ended with wait status {}", status);
}

Launcher::~Launcher() {
  kill_all();
}

void Launcher::watch(std::size_t id, pid_t pid) {
  if (pid <= 0) throw Error(ErrorCode::internal, fmt::format("worker {}: no process to watch", id));
  Fd fd(pidfd_open(pid));
  if (!fd) {
    const int err = errno;
    kill_and_reap(pid);
    throw Error(ErrorCode::resource,
                fmt::format("cannot start worker {}: cannot watch process {}: {}", id, pid,
                            std::strerror(err)));
  }
  try {
    workers_.push_back({id, pid, std::move(fd), false});
  } catch (...) {
    kill_and_reap(pid);
    throw;
  }
}

void Launcher::fork_worker(std::size_t id, const std::function<int()>& body) {
  // Unflushed output would be written twice, once by the child.
  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  pid_t pid = 0;
  {
    // No in-process product of shmgemm's is inside OpenBLAS while its fork handler runs.
    ForkGuard guard;
    pid = ::fork();
    if (pid == 0) guard.in_child();
  }
  if (pid < 0)
    throw Error(ErrorCode::resource,
                fmt::format("cannot start worker {}: cannot fork: {}", id, std::strerror(errno)));
  if (pid == 0) {
    // One thread: the kernels the workers run may be chosen here (worker/blas_core.hpp).
    use_worker_kernels();
    reset_interrupt_handlers_in_child();
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(3);
    int code = 1;
    try {
      code = body();
    } catch (...) {
    }
    // _exit: no destructors or atexit handlers of the parent's objects run in the child.
    ::_exit(code);
  }
  watch(id, pid);
}

void Launcher::spawn_worker(std::size_t id, const std::string& exe,
                            const std::vector<std::string>& args,
                            const std::vector<std::pair<std::string, std::string>>& env) {
  std::vector<std::string> argv_s = {exe};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  // This process's environment, with `env`'s keys replaced.
  std::vector<std::string> env_s;
  for (char** e = environ; e && *e; ++e) {
    const std::string_view entry(*e);
    const bool replaced = std::any_of(env.begin(), env.end(), [&](const auto& kv) {
      return entry.size() > kv.first.size() && entry.substr(0, kv.first.size()) == kv.first &&
             entry[kv.first.size()] == '=';
    });
    if (!replaced) env_s.emplace_back(entry);
  }
  for (const auto& [key, value] : env)
    env_s.push_back(key + "=" + value);
  // The kernels the workers run, where OpenBLAS would fall back in them (worker/blas_core.hpp).
  if (const auto kernel = worker_kernel_env()) {
    std::erase_if(env_s, [&](const std::string& e) { return e.starts_with(kernel->first + "="); });
    env_s.push_back(kernel->first + "=" + kernel->second);
  }
  auto pointers = [](std::vector<std::string>& strings) {
    std::vector<char*> p;
    for (std::string& x : strings)
      p.push_back(x.data());
    p.push_back(nullptr);
    return p;
  };
  std::vector<char*> argv = pointers(argv_s), envp = pointers(env_s);
  // The descriptor the worker's pidfd takes: with none free, the worker cannot start, and is
  // never started.
  if (Fd room(::open("/dev/null", O_RDONLY | O_CLOEXEC)); !room)
    throw Error(ErrorCode::resource,
                fmt::format("cannot start worker {}: {}", id, std::strerror(errno)));
  // posix_spawn, not fork: glibc's runs no fork handlers, and OpenBLAS's (blas_thread_shutdown_)
  // deadlocks when another thread of this process is inside OpenBLAS (a host's numpy).
  pid_t pid = 0;
  if (const int err = ::posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv.data(), envp.data()))
    throw Error(ErrorCode::resource,
                fmt::format("cannot start worker {}: {}", id, std::strerror(err)));
  watch(id, pid);
}

std::size_t Launcher::live() const {
  std::size_t n = 0;
  for (const Child& c : workers_)
    n += c.reaped ? 0 : 1;
  return n;
}

std::vector<WorkerExit> Launcher::wait_exits(int timeout_ms) {
  std::vector<WorkerExit> exits;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  bool polled_once = false;
  while (exits.empty() && live() > 0) {
    // Bounded even without a timeout: another call may have drained the interrupt eventfd
    // (StopScope) after the signal that concerns this one.
    int wait_ms = 200;
    if (const StopScope* scope = current_stop_scope(); scope && scope->left_ms() >= 0)
      wait_ms = static_cast<int>(std::min<long long>(wait_ms, scope->left_ms()));
    if (timeout_ms >= 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 && polled_once) break;  // a zero timeout still polls once
      wait_ms = static_cast<int>(std::clamp<std::int64_t>(left.count(), 0, 200));
    }
    polled_once = true;
    std::vector<pollfd> fds;
    std::vector<Child*> polled;
    for (Child& c : workers_) {
      if (c.reaped) continue;
      fds.push_back({c.pidfd.get(), POLLIN, 0});
      polled.push_back(&c);
    }
    if (interrupt_fd() >= 0) fds.push_back({interrupt_fd(), POLLIN, 0});
    if (const StopScope* scope = current_stop_scope(); scope && scope->stop_fd() >= 0)
      fds.push_back({scope->stop_fd(), POLLIN, 0});
    const int ready = ::poll(fds.data(), fds.size(), wait_ms);
    if (ready < 0 && errno != EINTR)
      throw Error(ErrorCode::internal, fmt::format("poll on workers: {}", std::strerror(errno)));
    stop_if_interrupted();
    if (ready <= 0) continue;
    for (std::size_t i = 0; i < polled.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Child& c = *polled[i];
      int status = 0;
      if (retry_eintr([&] { return ::waitpid(c.pid, &status, 0); }) < 0)
        status = 0xff00;  // not ours to reap: call it failed
      c.reaped = true;
      c.pidfd.reset();
      exits.push_back({c.id, c.pid, status});
    }
  }
  return exits;
}

bool Launcher::wait_attached(boost::interprocess::interprocess_semaphore& attached,
                             std::size_t count,
                             const std::function<bool(std::size_t)>& has_attached) {
  std::size_t seen = 0;
  while (seen < count) {
    stop_if_interrupted();
    const auto deadline =
        boost::posix_time::microsec_clock::universal_time() + boost::posix_time::milliseconds(5);
    bool posted = false;
    try {
      posted = attached.timed_wait(deadline);
    } catch (const boost::interprocess::interprocess_exception&) {
      // sem_timedwait is never restarted after a signal handler (EINTR): look again, after
      // the interrupt check.
      continue;
    }
    if (posted) {
      ++seen;
      continue;
    }
    // Nobody attached for a while. A worker that failed never will, and wait_exits() reports
    // it; one that exited 0 attached first, unless has_attached says otherwise.
    for (const Child& c : workers_) {
      if (c.reaped) continue;
      siginfo_t info{};
      if (::waitid(P_PID, static_cast<id_t>(c.pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
          info.si_pid != c.pid)
        continue;
      const bool exited_well = info.si_code == CLD_EXITED && info.si_status == 0;
      if (!exited_well) return false;
      // Its post may still be pending: take the posts there are before judging.
      while (seen < count && attached.try_wait())
        ++seen;
      if (seen < count && has_attached && !has_attached(c.id)) return false;
    }
  }
  return true;
}

void Launcher::stop_if_interrupted() {
  try {
    throw_if_interrupted();
  } catch (...) {
    kill_all();
    throw;
  }
}

void Launcher::kill_one(std::size_t id) noexcept {
  for (const Child& c : workers_)
    if (c.id == id && !c.reaped && c.pid > 0) ::kill(c.pid, SIGKILL);
}

std::vector<std::pair<std::size_t, int>> Launcher::stopped() const {
  std::vector<std::pair<std::size_t, int>> found;
  for (const Child& c : workers_) {
    if (c.reaped) continue;
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(c.pid), &info, WSTOPPED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == c.pid && info.si_code == CLD_STOPPED)
      found.emplace_back(c.id, info.si_status);
  }
  return found;
}

void Launcher::kill_all() noexcept {
  for (Child& c : workers_) {
    if (c.reaped) continue;
    kill_and_reap(c.pid);
    c.pidfd.reset();
    c.reaped = true;
  }
}

}  // namespace shmgemm::detail
