// Starts worker processes (fork, or spawn through Boost.Process) and joins them. The only code
// in shmgemm that creates processes.
#pragma once

#include <sys/types.h>

#include <boost/interprocess/sync/interprocess_semaphore.hpp>

#include "common/fd.hpp"

#include <cstddef>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace shmgemm::detail {

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

  // Forks a child that runs `body` and exits with its result, never returning into the
  // caller's stack. The child dies with this process (PR_SET_PDEATHSIG).
  void fork_worker(std::size_t id, const std::function<int()>& body);

  // Starts `exe` with `args`, this process's environment plus `env`.
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
  // progress until continued.
  std::vector<std::pair<std::size_t, int>> stopped() const;

  // Workers started and not yet reaped.
  std::size_t live() const;

 private:
  struct Child {
    std::size_t id = 0;
    pid_t pid = 0;  // always > 0: a pid of ours, never one that names a group or every process
    Fd pidfd;
    bool reaped = false;
  };
  // Takes charge of child `pid` (> 0). When it cannot be watched, kills and reaps it and throws.
  void watch(std::size_t id, pid_t pid);
  // Kills every worker and throws Error(interrupted) if an interrupt has arrived.
  void stop_if_interrupted();

  std::vector<Child> workers_;
};

}  // namespace shmgemm::detail
