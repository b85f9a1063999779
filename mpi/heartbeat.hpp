// Heartbeats between rank 0 and every other rank, so that a lost node ends the job in bounded
// time. MPI has no timeout of its own over TCP: a rank whose peer's link went down waits in a
// collective for as long as TCP retransmits (a quarter of an hour). Here a thread of each rank
// exchanges a small message with rank 0 every interval on a communicator of its own:
// - rank 0 names the ranks (and their nodes) it has not heard from for `lost_after` seconds,
//   calls `on_end` (which removes the temporary output) and aborts the job;
// - a rank that has not heard from rank 0 for 3 x `lost_after` seconds is cut off: it calls
//   `on_end` and exits, so that nothing of the job runs on on a node nobody can reach (its
//   node's daemon, finding mpirun gone, usually ends it and cleans up before);
// - past `timeout` seconds (0: none), rank 0 says so, with the step the job was in, and aborts.
// Needs MPI_THREAD_MULTIPLE (Session provides it).
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "mpi/topology.hpp"

namespace shmgemm::mpi {

class Heartbeat {
 public:
  // Collective on MPI_COMM_WORLD (the communicator of its own is made here).
  Heartbeat(const Topology& topo, double lost_after, double timeout, std::function<void()> on_end);
  // Stops the thread once every rank is done with it: collective.
  ~Heartbeat();
  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;

  // The step the job is in, named in the timeout's message ("reading B", "computing").
  void step(const char* name) { step_.store(name); }

 private:
  void run();
  [[noreturn]] void end(const std::string& message, int status);

  const Topology& topo_;
  const double lost_after_, timeout_;
  std::function<void()> on_end_;
  Comm comm_;
  std::atomic<const char*> step_{"starting"};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace shmgemm::mpi
