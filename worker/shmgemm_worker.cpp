// shmgemm-worker: computes one worker's rows of a job that a coordinator placed in shared
// memory. Started by the coordinator (launch mode "spawn"); not meant to be run by hand.
#include <sys/prctl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <csignal>

#include "common/job.hpp"
#include "common/pool_protocol.hpp"
#include "common/segment.hpp"
#include "worker/attach.hpp"
#include "worker/blas_core.hpp"
#include "worker/pool_worker.hpp"
#include "worker/worker_run.hpp"

using namespace shmgemm;

namespace {

// Serves a Pool: maps its control block and arena by name and runs tasks until it stops.
int serve_pool(const std::string& name, std::size_t id) {
  try {
    SharedSegment control_segment = SharedSegment::attach(name, true);
    std::string problem;
    PoolControl* control = validate_pool(
        std::span<std::byte>(control_segment.data(), control_segment.size()), problem);
    if (control == nullptr) {
      fmt::print(stderr, "shmgemm-worker: pool {}: invalid control block: {}\n", name, problem);
      return 2;
    }
    if (id >= control->workers || ::getppid() != control->coordinator_pid) {
      fmt::print(stderr, "shmgemm-worker: pool {}: not this worker's pool\n", name);
      return 2;
    }
    const SharedSegment arena = SharedSegment::attach(control->arena_name, true);
    if (arena.size() < control->arena_bytes) {
      fmt::print(stderr, "shmgemm-worker: pool {}: arena smaller than announced\n", name);
      return 2;
    }
    return run_pool_worker(*control, arena.data(), static_cast<unsigned>(id));
  } catch (const std::exception& e) {
    fmt::print(stderr, "shmgemm-worker: pool {}: {}\n", name, e.what());
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "shmgemm-worker: computes one worker's block of rows of C = A·B for a shmgemm "
      "coordinator.\nStarted by `shmgemm multiply --launch spawn` and by host programs; "
      "not meant to be run by hand."};
  std::string job_name;
  std::size_t id = 0;
  bool probe = false;
  std::string pool_name;
  auto* job_opt = app.add_option("--job", job_name, "name of the job descriptor's shared segment");
  app.add_option("--pool", pool_name, "name of a Pool's control segment: serve it")
      ->excludes(job_opt);
  app.add_option("--id", id, "this worker's index in the job or pool");
  bool quiet = false;
  app.add_flag("--quiet", quiet,
               "report a failure only through the job's slot, which the coordinator prints");
  app.add_flag("--probe", probe, "start and exit at once (to measure the cost of launching)")
      ->excludes(job_opt);
  CLI11_PARSE(app, argc, argv);
  if (probe) return 0;
  // One thread so far: the kernels this CPU calls for, where OpenBLAS fell back and the
  // coordinator's environment did not say (a program started by hand).
  detail::use_worker_kernels();
  // Die with the coordinator.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (!pool_name.empty()) return serve_pool(pool_name, id);
  if (job_name.empty()) {
    fmt::print(stderr, "shmgemm-worker: --job is required\n");
    return 2;
  }

  SharedSegment segment;
  JobDescriptor* job = nullptr;
  try {
    segment = SharedSegment::attach(job_name, true);
  } catch (const std::exception& e) {
    fmt::print(stderr, "shmgemm-worker: {}\n", e.what());
    return 2;
  }
  std::string problem;
  job = validate_job(std::span<std::byte>(segment.data(), segment.size()), problem);
  if (job == nullptr) {
    fmt::print(stderr, "shmgemm-worker: job {}: invalid descriptor: {}\n", job_name, problem);
    return 2;
  }
  if (id >= job->workers) {
    fmt::print(stderr, "shmgemm-worker: job {}: --id {} is not below the job's {} workers\n",
               job_name, id, job->workers);
    return 2;
  }
  // The coordinator may have died before PR_SET_PDEATHSIG took effect.
  if (::getppid() != job->coordinator_pid) {
    fmt::print(stderr, "shmgemm-worker: job {}: coordinator {} is gone\n", job_name,
               job->coordinator_pid);
    return 3;
  }

  try {
    const AttachedOperands operands(*job);
    job->slots[id].state.store(static_cast<std::uint32_t>(SlotState::attached));
    job->attached.post();
    return run_phases(*job, id, operands.bound());
  } catch (const std::exception& e) {
    // With --quiet the coordinator reports the slot's message: one line, not two.
    fail_slot(*job, id, e.what());
    if (!quiet) fmt::print(stderr, "shmgemm-worker {}: {}\n", id, e.what());
    return 1;
  }
}
