// Starts worker processes (fork, or spawn through Boost.Process) and joins them. The only code
// in shmgemm that creates processes.
#pragma once

#include <sys/types.h>

#include <boost/interprocess/sync/interprocess_semaphore.hpp>

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

  // Waits for `count` posts on `attached`, or until a worker exits first (then false).
  bool wait_attached(boost::interprocess::interprocess_semaphore& attached, std::size_t count);

  // Waits for every worker. When one fails, the others are killed at once. Returns each exit,
  // the first failure (if any) first.
  std::vector<WorkerExit> join();

  // SIGKILLs and reaps every worker still running. Never throws.
  void kill_all() noexcept;

  std::size_t size() const { return workers_.size(); }

 private:
  struct Child {
    std::size_t id = 0;
    pid_t pid = 0;
    int pidfd = -1;
    bool reaped = false;
  };
  void watch(std::size_t id, pid_t pid);
  // Polls the live workers for up to timeout_ms; reaps and returns those that exited.
  std::vector<WorkerExit> reap_exited(int timeout_ms);

  std::vector<Child> workers_;
};

}  // namespace shmgemm::detail
