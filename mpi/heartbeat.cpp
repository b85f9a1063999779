#include "mpi/heartbeat.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <map>
#include <vector>

namespace shmgemm::mpi {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kTag = 29;
// What every heartbeat carries: nothing but its arrival. Static, as MPI may still hold a send
// to an unreachable rank when the thread ends.
const char kBeat = 1;

// A rank cut off from rank 0 for this many times `lost_after` ends itself.
constexpr double kCutOffFactor = 3;

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

void send_beat(MPI_Comm comm, int to) {
  MPI_Request request = MPI_REQUEST_NULL;
  if (MPI_Isend(&kBeat, 1, MPI_CHAR, to, kTag, comm, &request) == MPI_SUCCESS)
    MPI_Request_free(&request);
}

// Receives every heartbeat that has arrived; `heard(rank)` for each.
template <class Heard>
void receive_beats(MPI_Comm comm, int from, Heard&& heard) {
  for (;;) {
    int flag = 0;
    MPI_Status status;
    if (MPI_Iprobe(from, kTag, comm, &flag, &status) != MPI_SUCCESS || !flag) return;
    char beat = 0;
    if (MPI_Recv(&beat, 1, MPI_CHAR, status.MPI_SOURCE, kTag, comm, MPI_STATUS_IGNORE) !=
        MPI_SUCCESS)
      return;
    heard(status.MPI_SOURCE);
  }
}

// Whether this process's parent is Open MPI's daemon (orted), which started it.
bool parent_is_open_mpi_daemon() {
  std::ifstream comm(fmt::format("/proc/{}/comm", ::getppid()));
  std::string name;
  return std::getline(comm, name) && name == "orted";
}

// "rank 2 and rank 3 on n2": the ranks grouped by their host.
std::string ranks_and_hosts(const std::vector<int>& ranks, const std::vector<std::string>& hosts) {
  std::map<std::string, std::vector<int>> by_host;
  for (int r : ranks)
    by_host[hosts[std::size_t(r)]].push_back(r);
  std::vector<std::string> parts;
  for (const auto& [host, rs] : by_host)
    parts.push_back(
        fmt::format("{} {} on {}", rs.size() == 1 ? "rank" : "ranks", fmt::join(rs, ", "), host));
  return fmt::format("{}", fmt::join(parts, "; "));
}

}  // namespace

Heartbeat::Heartbeat(const Topology& topo, double lost_after, double timeout,
                     std::function<void()> on_end)
    : topo_(topo), lost_after_(lost_after), timeout_(timeout), on_end_(std::move(on_end)) {
  MPI_Comm comm = MPI_COMM_NULL;
  check(MPI_Comm_dup(MPI_COMM_WORLD, &comm), "MPI_Comm_dup");
  comm_ = Comm(comm);
  if (topo_.size > 1 || timeout_ > 0) thread_ = std::thread([this] { run(); });
}

Heartbeat::~Heartbeat() {
  {
    const std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  // A rank unwinding alone (a failure the ranks did not agree on) is about to abort the job:
  // it must not wait for the others here.
  if (std::uncaught_exceptions() > 0) return;
  // Every rank has stopped sending: the beats still on their way are received and dropped, so
  // that no message is left unmatched when MPI finalizes.
  MPI_Barrier(comm_.get());
  receive_beats(comm_.get(), MPI_ANY_SOURCE, [](int) {});
}

void Heartbeat::end(const std::string& message, int status) {
  if (!message.empty()) {
    fmt::print(stderr, "shmgemm-mpi: {}\n", message);
    std::fflush(stderr);
  }
  on_end_();
  // Rank 0 ends the job: mpirun stops every rank it can reach. A rank cut off from rank 0 ends
  // itself (MPI_Finalize would wait for peers it cannot reach), and asks its node's Open MPI
  // daemon to end too: mpirun is out of its reach as well, and its TCP connection to mpirun
  // may otherwise wait on retransmissions for a quarter of an hour. On SIGTERM the daemon ends
  // the job's processes on this node and removes its folder in TMPDIR.
  if (topo_.rank == 0) MPI_Abort(MPI_COMM_WORLD, status);
  if (parent_is_open_mpi_daemon()) ::kill(::getppid(), SIGTERM);
  std::_Exit(status);
}

void Heartbeat::run() {
  const auto start = Clock::now();
  const double shortest = timeout_ > 0 ? std::min(lost_after_, timeout_) : lost_after_;
  const auto interval = std::chrono::duration<double>(std::clamp(shortest / 20, 0.01, 0.25));
  std::vector<Clock::time_point> heard(std::size_t(topo_.size), start);
  std::unique_lock lock(mutex_);
  while (!wake_.wait_for(lock, interval, [this] { return stop_; })) {
    const auto now = Clock::now();
    if (topo_.rank == 0) {
      receive_beats(comm_.get(), MPI_ANY_SOURCE, [&](int r) { heard[std::size_t(r)] = now; });
      for (int r = 1; r < topo_.size; ++r)
        send_beat(comm_.get(), r);
      std::vector<int> lost;
      for (int r = 1; r < topo_.size; ++r)
        if (std::chrono::duration<double>(now - heard[std::size_t(r)]).count() > lost_after_)
          lost.push_back(r);
      if (!lost.empty())
        end(fmt::format("lost {}: no heartbeat for {:g} s while {} (node down or unreachable)",
                        ranks_and_hosts(lost, topo_.hosts), lost_after_, step_.load()),
            1);
      if (timeout_ > 0 && since(start) > timeout_)
        end(fmt::format("--timeout {:g} s passed while {}", timeout_, step_.load()), 1);
    } else {
      receive_beats(comm_.get(), 0, [&](int) { heard[0] = now; });
      send_beat(comm_.get(), 0);
      // Cut off from rank 0, which says why if anyone can hear it. The node's daemon ends
      // this rank when it finds mpirun gone (its TCP keepalives), and cleans up after it;
      // where nothing does, the rank ends itself, quietly.
      if (std::chrono::duration<double>(now - heard[0]).count() > kCutOffFactor * lost_after_)
        end({}, 1);
    }
  }
}

}  // namespace shmgemm::mpi
