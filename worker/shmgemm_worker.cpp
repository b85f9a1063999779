// shmgemm-worker: computes one worker's rows of a job that a coordinator placed in shared
// memory. Started by the coordinator (launch mode "spawn"); not meant to be run by hand.
#include <sys/prctl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <csignal>

#include "common/job.hpp"
#include "common/segment.hpp"
#include "worker/attach.hpp"
#include "worker/worker_run.hpp"

using namespace shmgemm;

int main(int argc, char** argv) {
  CLI::App app{
      "shmgemm-worker: computes one worker's block of rows of C = A·B for a shmgemm "
      "coordinator.\nStarted by `shmgemm multiply --launch spawn` and by host programs; "
      "not meant to be run by hand."};
  std::string job_name;
  std::size_t id = 0;
  bool probe = false;
  auto* job_opt = app.add_option("--job", job_name, "name of the job descriptor's shared segment");
  app.add_option("--id", id, "this worker's index in the job")->needs(job_opt);
  app.add_flag("--probe", probe, "start and exit at once (to measure the cost of launching)")
      ->excludes(job_opt);
  CLI11_PARSE(app, argc, argv);
  if (probe) return 0;
  if (job_name.empty()) {
    fmt::print(stderr, "shmgemm-worker: --job is required\n");
    return 2;
  }

  // Die with the coordinator.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);

  SharedSegment segment;
  JobDescriptor* job = nullptr;
  try {
    segment = SharedSegment::attach(job_name, true);
  } catch (const std::exception& e) {
    fmt::print(stderr, "shmgemm-worker: {}\n", e.what());
    return 2;
  }
  std::string problem;
  const JobDescriptor* valid =
      validate_job(std::span<const std::byte>(segment.data(), segment.size()), problem);
  if (valid == nullptr) {
    fmt::print(stderr, "shmgemm-worker: job {}: invalid descriptor: {}\n", job_name, problem);
    return 2;
  }
  job = const_cast<JobDescriptor*>(valid);
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
    return run_worker(*job, id, operands.bound());
  } catch (const std::exception& e) {
    fail_slot(*job, id, e.what());
    fmt::print(stderr, "shmgemm-worker {}: {}\n", id, e.what());
    return 1;
  }
}
