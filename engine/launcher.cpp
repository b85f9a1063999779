#include "engine/launcher.hpp"

#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

// Boost 1.74 offers use_vfork only where the POSIX level still lists vfork; glibc has it at
// every level.
#define BOOST_POSIX_HAS_VFORK 1
#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <boost/process/exe.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/posix.hpp>

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

// poll() on `fds` (pidfds) and on what stops this thread's call (an interrupt, a stop request),
// for at most `wait_ms`, and not past the call's deadline.
int poll_with_stops(std::vector<pollfd>& fds, int wait_ms) {
  const StopScope* scope = current_stop_scope();
  if (interrupt_fd() >= 0) fds.push_back({interrupt_fd(), POLLIN, 0});
  if (scope && scope->stop_fd() >= 0) fds.push_back({scope->stop_fd(), POLLIN, 0});
  if (scope && scope->left_ms() >= 0)
    wait_ms = static_cast<int>(std::min<long long>(wait_ms, scope->left_ms()));
  return ::poll(fds.data(), fds.size(), wait_ms);
}

}  // namespace

int shell_status(int wait_status) {
  return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128 + WTERMSIG(wait_status);
}

Process::Process(pid_t pid, std::string_view who) : pid_(pid) {
  if (pid <= 0) throw Error(ErrorCode::internal, fmt::format("{}: no process to watch", who));
  pidfd_ = Fd(pidfd_open(pid));
  if (!pidfd_) {
    const int err = errno;
    kill_and_reap(pid);
    throw Error(ErrorCode::resource, fmt::format("cannot start {}: cannot watch process {}: {}",
                                                 who, pid, std::strerror(err)));
  }
  reaped_ = false;
}

Process::Process(Process&& other) noexcept
    : pid_(std::exchange(other.pid_, 0)),
      pidfd_(std::move(other.pidfd_)),
      reaped_(std::exchange(other.reaped_, true)),
      status_(other.status_) {}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    kill();
    pid_ = std::exchange(other.pid_, 0);
    pidfd_ = std::move(other.pidfd_);
    reaped_ = std::exchange(other.reaped_, true);
    status_ = other.status_;
  }
  return *this;
}

Process::~Process() {
  kill();
}

void Process::kill() noexcept {
  if (reaped_) return;
  shmgemm::detail::kill_and_reap(pid_);
  pidfd_.reset();
  reaped_ = true;
}

Process Process::spawn(const Command& command, std::string_view who) {
  namespace bp = boost::process;
  // The descriptor the pidfd takes: with none free, the process cannot be watched, and is
  // never started.
  if (Fd room(::open("/dev/null", O_RDONLY | O_CLOEXEC)); !room)
    throw Error(ErrorCode::resource, fmt::format("cannot start {}: {}", who, std::strerror(errno)));
  // This process's environment with command.env's keys replaced, given to the child as it is
  // (Boost.Process 1.74's environment type reads past its entries when looking a key up).
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    const std::string_view entry(*e);
    const bool replaced = std::any_of(command.env.begin(), command.env.end(), [&](const auto& kv) {
      return entry.size() > kv.first.size() && entry.starts_with(kv.first) &&
             entry[kv.first.size()] == '=';
    });
    if (!replaced) env.emplace_back(entry);
  }
  for (const auto& [key, value] : command.env)
    env.push_back(key + "=" + value);
  std::vector<char*> envp;
  for (std::string& e : env)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  const int out = command.stdout_fd >= 0 ? command.stdout_fd : 1;
  const int err = command.stderr_fd >= 0 ? command.stderr_fd : 2;
  std::error_code failed;
  // A child that could not exec: Boost.Process reaps it, unless it had not exited yet when it
  // looked (under AddressSanitizer's vfork); then it is reaped here.
  pid_t unstarted = 0;
  // vfork, not fork: no fork handlers run.
  bp::child child(
      bp::exe = command.exe, bp::args = command.args, bp::posix::use_vfork,
      bp::extend::on_setup([&](auto& exec) { exec.env = envp.data(); }), bp::posix::fd.bind(1, out),
      bp::posix::fd.bind(2, err),
      // In the child, before exec: it dies with the thread that started it.
      bp::extend::on_exec_setup([](auto&) { ::prctl(PR_SET_PDEATHSIG, SIGKILL); }),
      bp::extend::on_error([&](auto& exec, const std::error_code&) { unstarted = exec.pid; }),
      failed);
  // Ours from here: Boost.Process's child would kill it when destroyed, and reap it when asked
  // whether it runs.
  child.detach();
  if (unstarted > 0) retry_eintr([&] { return ::waitpid(unstarted, nullptr, 0); });
  if (failed || child.id() <= 0)
    throw Error(ErrorCode::resource,
                fmt::format("cannot start {}: {}", who, failed ? failed.message() : "no process"));
  return Process(child.id(), who);
}

Process Process::fork(const std::function<int()>& body, std::string_view who) {
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
                fmt::format("cannot start {}: cannot fork: {}", who, std::strerror(errno)));
  if (pid == 0) {
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
  return Process(pid, who);
}

int Process::reap() {
  if (reaped_) return status_;
  if (retry_eintr([&] { return ::waitpid(pid_, &status_, 0); }) < 0)
    status_ = 0xff00;  // not ours to reap: call it failed
  pidfd_.reset();
  reaped_ = true;
  return status_;
}

int Process::join(int tick_ms, const std::function<void()>& tick, bool forward_signal) {
  const StopScope* scope = current_stop_scope();
  while (!reaped_) {
    if (tick) tick();
    std::vector<pollfd> fds = {{pidfd_.get(), POLLIN, 0}};
    if (poll_with_stops(fds, tick_ms) > 0 && (fds[0].revents & POLLIN)) {
      reap();
      break;
    }
    try {
      throw_if_interrupted();
    } catch (...) {
      const int sig = scope ? scope->signal() : 0;
      signal(forward_signal && sig != 0 ? sig : SIGKILL);
      reap();
      throw;
    }
  }
  return shell_status(status_);
}

void Process::signal(int sig) const noexcept {
  if (!reaped_ && pid_ > 0) ::kill(pid_, sig);
}

bool Process::peek(int flags, siginfo_t& info) const {
  info = {};
  return !reaped_ &&
         ::waitid(P_PID, static_cast<id_t>(pid_), &info, flags | WNOHANG | WNOWAIT) == 0 &&
         info.si_pid == pid_;
}

int Process::stop_signal() const {
  siginfo_t info;
  return peek(WSTOPPED, info) && info.si_code == CLD_STOPPED ? info.si_status : 0;
}

std::optional<bool> Process::ended_well() const {
  siginfo_t info;
  if (!peek(WEXITED, info)) return std::nullopt;
  return info.si_code == CLD_EXITED && info.si_status == 0;
}

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

void Launcher::fork_worker(std::size_t id, const std::function<int()>& body) {
  Process process = Process::fork(
      [&body] {
        // One thread: the kernels the workers run may be chosen here (worker/blas_core.hpp).
        use_worker_kernels();
        reset_interrupt_handlers_in_child();
        return body();
      },
      fmt::format("worker {}", id));
  workers_.push_back({id, std::move(process)});
}

void Launcher::spawn_worker(std::size_t id, const std::string& exe,
                            const std::vector<std::string>& args,
                            const std::vector<std::pair<std::string, std::string>>& env) {
  Command command{exe, args, env};
  // The kernels the workers run, where OpenBLAS would fall back in them (worker/blas_core.hpp).
  if (const auto kernel = worker_kernel_env()) command.env.push_back(*kernel);
  workers_.push_back({id, Process::spawn(command, fmt::format("worker {}", id))});
}

std::size_t Launcher::live() const {
  std::size_t n = 0;
  for (const Child& c : workers_)
    n += c.process.reaped() ? 0 : 1;
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
      if (c.process.reaped()) continue;
      fds.push_back({c.process.pidfd(), POLLIN, 0});
      polled.push_back(&c);
    }
    const int ready = poll_with_stops(fds, wait_ms);
    if (ready < 0 && errno != EINTR)
      throw Error(ErrorCode::internal, fmt::format("poll on workers: {}", std::strerror(errno)));
    stop_if_interrupted();
    if (ready <= 0) continue;
    for (std::size_t i = 0; i < polled.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Child& c = *polled[i];
      const int status = c.process.reap();
      exits.push_back({c.id, c.process.pid(), status});
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
      const std::optional<bool> ended_well = c.process.ended_well();
      if (!ended_well) continue;
      if (!*ended_well) return false;
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
    if (c.id == id) c.process.signal(SIGKILL);
}

std::vector<std::pair<std::size_t, int>> Launcher::stopped() const {
  std::vector<std::pair<std::size_t, int>> found;
  for (const Child& c : workers_)
    if (const int sig = c.process.stop_signal()) found.emplace_back(c.id, sig);
  return found;
}

int Launcher::stop_signal(const std::vector<std::pair<std::size_t, int>>& stopped, std::size_t id) {
  const auto held =
      std::find_if(stopped.begin(), stopped.end(), [id](const auto& s) { return s.first == id; });
  return held != stopped.end() ? held->second : 0;
}

void Launcher::kill_all() noexcept {
  for (Child& c : workers_)
    c.process.kill();
}

}  // namespace shmgemm::detail
