#include "engine/job_runner.hpp"

#include <unistd.h>

#include <fmt/format.h>
#include <chrono>
#include <memory>
#include <new>
#include <string>

#include "common/segment.hpp"
#include "engine/launcher.hpp"
#include "engine/worker_path.hpp"
#include "shmgemm/error.hpp"
#include "worker/worker_run.hpp"

namespace shmgemm::detail {
namespace {

struct DestroyJob {
  void operator()(JobDescriptor* job) const { job->~JobDescriptor(); }
};

Error worker_failure(const JobDescriptor& job, const WorkerExit& exit) {
  const WorkerSlot& slot = job.slots[exit.id];
  const std::string who = fmt::format("worker {} (rows {}-{})", exit.id, slot.row_begin,
                                      slot.row_end == 0 ? 0 : slot.row_end - 1);
  const bool has_message =
      slot.state.load() == static_cast<std::uint32_t>(SlotState::failed) && slot.message[0];
  if (has_message && WIFEXITED(exit.status))
    return Error(ErrorCode::worker_failed, fmt::format("{} failed: {}", who, slot.message));
  return Error(ErrorCode::worker_failed, fmt::format("{} {}", who, exit.describe()));
}

}  // namespace

double run_workers(DType dtype, std::uint64_t m, std::uint64_t k, std::uint64_t n, const Plan& plan,
                   Placement& placement, Launch launch) {
  // Describe the job in a segment the workers share: operands, shapes, each worker's rows.
  SharedSegment job_segment = SharedSegment::create("job", sizeof(JobDescriptor));
  std::unique_ptr<JobDescriptor, DestroyJob> job(new (job_segment.data()) JobDescriptor{});
  job->dtype = dtype;
  job->workers = static_cast<std::uint32_t>(plan.workers);
  job->threads_per_worker = static_cast<std::uint32_t>(plan.threads_per_worker);
  job->coordinator_pid = ::getpid();
  job->m = m;
  job->k = k;
  job->n = n;
  job->a = placement.a().ref;
  job->b = placement.b().ref;
  job->c = placement.c().ref;
  for (std::size_t i = 0; i < plan.workers; ++i) {
    job->slots[i].row_begin = plan.rows[i].begin;
    job->slots[i].row_end = plan.rows[i].end;
  }

  const auto start = std::chrono::steady_clock::now();
  Launcher launcher;
  if (launch == Launch::fork) {
    // Children inherit the mappings: no name is needed from here on.
    job_segment.unlink();
    placement.unlink_names();
    const BoundOperands ops{placement.a().local, placement.b().local, placement.c().local};
    for (std::size_t i = 0; i < plan.workers; ++i)
      launcher.fork_worker(i, [&job, &ops, i] { return run_worker(*job, i, ops); });
  } else {
    const std::string exe = worker_executable();
    const std::string threads = std::to_string(plan.threads_per_worker);
    for (std::size_t i = 0; i < plan.workers; ++i)
      launcher.spawn_worker(i, exe, {"--job", job_segment.name(), "--id", std::to_string(i)},
                            {{"OPENBLAS_NUM_THREADS", threads}});
    // Once every worker has mapped everything, the names can go: a crash from here on leaves
    // nothing in /dev/shm. A worker that ends before attaching is reported by join().
    launcher.wait_attached(job->attached, plan.workers);
    job_segment.unlink();
    placement.unlink_names();
  }
  const std::vector<WorkerExit> exits = launcher.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!exits.empty() && !exits.front().ok()) throw worker_failure(*job, exits.front());
  return seconds;
}

}  // namespace shmgemm::detail
