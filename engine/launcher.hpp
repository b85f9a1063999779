// Starts processes and supervises them: Process is one child (forked, or spawned through
// Boost.Process), Launcher a set of workers. The only code in shmgemm that creates processes.
#pragma once

#include <sys/types.h>

#include <boost/interprocess/sync/interprocess_semaphore.hpp>

#include "common/fd.hpp"

#include <csignal>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace shmgemm::detail {

// What a spawned process runs and sees.
struct Command {
  std::string exe;                // a path
  std::vector<std::string> args;  // after argv[0] (which is `exe`)
  // This process's environment with these keys set (replacing any value they had).
  std::vector<std::pair<std::string, std::string>> env;
  int stdout_fd = -1, stderr_fd = -1;  // what the process gets as 1 and 2 (-1: this process's)
};

// How a shell reports a wait status: the exit status, or 128 + the signal that killed it.
int shell_status(int wait_status);

// One child process of this one, watched through a pidfd: its pid is always > 0 and its own
// (no kill or waitpid ever names a group, or any process). Destroying a Process that has not
// been reaped kills (SIGKILL) and reaps it. Move-only; thread-safety: none.
class Process {
 public:
  // Starts `command` through Boost.Process with vfork: no fork handlers run (OpenBLAS's
  // deadlocks when another thread of this process is inside OpenBLAS), and the environment is
  // given explicitly; it dies with the thread that started it (PR_SET_PDEATHSIG), as a forked
  // one does. Throws Error(resource) beginning "cannot start WHO" when it cannot be
  // started or watched (a descriptor for the pidfd is made sure of first); nothing is left
  // running then.
  static Process spawn(const Command& command, std::string_view who);
  // Forks a child that runs `body` and exits with its result, never returning into the
  // caller's stack; no in-process product of shmgemm's is inside OpenBLAS meanwhile
  // (ForkGuard). The child dies with this process (PR_SET_PDEATHSIG). Throws like spawn().
  static Process fork(const std::function<int()>& body, std::string_view who);

  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  ~Process();

  pid_t pid() const noexcept { return pid_; }
  // Readable once the process has ended (for poll); -1 once reaped.
  int pidfd() const noexcept { return pidfd_.get(); }
  bool reaped() const noexcept { return reaped_; }
  // The wait status once reaped (as from waitpid).
  int status() const noexcept { return status_; }

  // Reaps the process, waiting for it to end, and returns its wait status.
  int reap();
  // Waits for the process to end, calling `tick` at least every `tick_ms` meanwhile, and
  // returns shell_status(). An interrupt of this call (its StopScope: a signal, a stop
  // request, its deadline) sends the process the same signal (`forward_signal`) or SIGKILL,
  // reaps it and throws as throw_if_interrupted() does.
  int join(int tick_ms = 200, const std::function<void()>& tick = {}, bool forward_signal = false);
  // Sends `sig`, if the process has not been reaped. Never throws.
  void signal(int sig) const noexcept;
  // SIGKILLs and reaps it, if not reaped yet. Never throws.
  void kill() noexcept;
  // The signal that holds it stopped now (SIGSTOP, a debugger), else 0.
  int stop_signal() const;
  // Whether it has ended, without reaping it: nothing while it runs (or once reaped), else
  // whether it exited with status 0.
  std::optional<bool> ended_well() const;

 private:
  Process(pid_t pid, std::string_view who);
  // waitid() on it with WNOHANG | WNOWAIT and `flags` (WEXITED, WSTOPPED): whether it is in
  // such a state now, with `info` filled.
  bool peek(int flags, siginfo_t& info) const;

  pid_t pid_ = 0;
  Fd pidfd_;
  bool reaped_ = true;
  int status_ = 0;
};

// How a worker process ended.
struct WorkerExit {
  std::size_t id = 0;
  pid_t pid = 0;
  int status = 0;  // as from waitpid
  bool ok() const;
  // "exited with status 1", "was killed by signal 9"
  std::string describe() const;
};

// A set of worker processes, each watched through a pidfd, so that the exit of any one is
// noticed at once. Destroying a Launcher kills (SIGKILL) and reaps every worker still running.
// Thread-safety: none.
class Launcher {
 public:
  Launcher() = default;
  Launcher(const Launcher&) = delete;
  Launcher& operator=(const Launcher&) = delete;
  ~Launcher();

  // Process::fork for worker `id`: the child chooses the workers' OpenBLAS kernels and drops
  // this process's interrupt handlers, then runs `body`.
  void fork_worker(std::size_t id, const std::function<int()>& body);

  // Process::spawn of `exe` with `args` and `env`, and the workers' OpenBLAS kernels.
  void spawn_worker(std::size_t id, const std::string& exe, const std::vector<std::string>& args,
                    const std::vector<std::pair<std::string, std::string>>& env);

  // Waits for `count` posts on `attached`, or until a worker ends first without having
  // attached (then false): one that fails, or one that exits 0 when has_attached(id) says it
  // never attached (without has_attached, exiting 0 counts as having attached). Throws
  // Error(interrupted) or Error(timed_out), with every worker killed, as the StopScope says.
  bool wait_attached(boost::interprocess::interprocess_semaphore& attached, std::size_t count,
                     const std::function<bool(std::size_t)>& has_attached = {});

  // Blocks until at least one worker has exited (or `timeout_ms` passed, -1: no limit), and
  // reaps and returns those that have. Throws Error(interrupted), with every worker killed, when
  // an interrupt arrives first.
  std::vector<WorkerExit> wait_exits(int timeout_ms = -1);

  // SIGKILLs and reaps every worker still running. Never throws.
  void kill_all() noexcept;
  // SIGKILLs worker `id` if it runs; wait_exits() reaps it. Never throws.
  void kill_one(std::size_t id) noexcept;
  // The workers stopped by a signal now (SIGSTOP, a debugger), with the signal: they make no
  // progress until continued. (Process::stop_signal() of each.)
  std::vector<std::pair<std::size_t, int>> stopped() const;
  // The signal that holds worker `id` in a list stopped() gave, else 0.
  static int stop_signal(const std::vector<std::pair<std::size_t, int>>& stopped, std::size_t id);

  // Workers started and not yet reaped.
  std::size_t live() const;

 private:
  struct Child {
    std::size_t id = 0;
    Process process;
  };
  // Kills every worker and throws Error(interrupted) if an interrupt has arrived.
  void stop_if_interrupted();

  std::vector<Child> workers_;
};

}  // namespace shmgemm::detail
