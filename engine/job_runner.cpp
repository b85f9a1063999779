#include "engine/job_runner.hpp"

#include <unistd.h>

#include <fmt/format.h>
#include <boost/date_time/posix_time/posix_time_types.hpp>
#include <boost/interprocess/exceptions.hpp>
#include <chrono>
#include <fstream>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "common/segment.hpp"
#include "engine/host_blas.hpp"
#include "engine/interrupt.hpp"
#include "engine/launcher.hpp"
#include "engine/progress.hpp"
#include "engine/worker_path.hpp"
#include "shmgemm/error.hpp"
#include "worker/blas_core.hpp"
#include "worker/general_kernel.hpp"
#include "worker/slice_kernel.hpp"
#include "worker/worker_run.hpp"

namespace shmgemm::detail {
std::string worker_name(std::string_view who, std::size_t id, const WorkerSlot& slot) {
  return fmt::format("{} {} (rows {}-{})", who, id, slot.row_begin,
                     slot.row_end == 0 ? 0 : slot.row_end - 1);
}

std::string worker_progress(std::string_view who, std::size_t id, const WorkerSlot& slot,
                            int stop_signal) {
  return fmt::format("{} at {} of {} rows{}", worker_name(who, id, slot), slot.rows_done.load(),
                     slot.row_end - slot.row_begin,
                     stop_signal != 0 ? fmt::format(", stopped by SIG{}", sigabbrev_np(stop_signal))
                                      : std::string());
}

namespace {

std::string name_of(const JobDescriptor& job, std::size_t id) {
  return worker_name("worker", id, job.slots[id]);
}

bool all_done(const JobDescriptor& job, std::size_t workers) {
  for (std::size_t i = 0; i < workers; ++i)
    if (job.slots[i].state.load() != static_cast<std::uint32_t>(SlotState::done)) return false;
  return true;
}

}  // namespace

ErrorCode reported_code(std::int32_t code) {
  return code >= 0 && code <= static_cast<std::int32_t>(ErrorCode::cancelled)
             ? static_cast<ErrorCode>(code)
             : ErrorCode::worker_failed;
}

namespace {

Error worker_failure(const JobDescriptor& job, const WorkerExit& exit) {
  const WorkerSlot& slot = job.slots[exit.id];
  const std::string who = name_of(job, exit.id);
  const auto state = static_cast<SlotState>(slot.state.load());
  // A failure the worker reported: the code it would have had in process.
  if (state == SlotState::failed && slot.message[0] && WIFEXITED(exit.status))
    return Error(reported_code(slot.error_code), fmt::format("{} failed: {}", who, slot.message));
  if (exit.ok())  // exited 0 without saying it was done: its rows were never computed
    return Error(ErrorCode::worker_failed,
                 fmt::format("{} exited with status 0 without computing its rows{}", who,
                             state == SlotState::pending ? " (it never attached to the job)" : ""));
  return Error(ErrorCode::worker_failed, fmt::format("{} {}", who, exit.describe()));
}

// Error(timed_out) naming the workers that had not finished, how far each got, and which
// were stopped by a signal (`stopped`, as Launcher::stopped() saw them before they were killed).
Error timeout_failure(const JobDescriptor& job, std::size_t workers,
                      const std::vector<std::pair<std::size_t, int>>& stopped) {
  std::string late;
  for (std::size_t i = 0; i < workers; ++i) {
    if (job.slots[i].state.load() == static_cast<std::uint32_t>(SlotState::done)) continue;
    late +=
        fmt::format("{}{}", late.empty() ? "" : "; ",
                    worker_progress("worker", i, job.slots[i], Launcher::stop_signal(stopped, i)));
  }
  const StopScope* scope = current_stop_scope();
  return Error(ErrorCode::timed_out,
               fmt::format("{}: {}; workers stopped, output left unchanged",
                           timed_out_after(scope ? scope->timeout_seconds() : 0),
                           late.empty() ? "every worker had finished" : late));
}

}  // namespace

Plan plan_product(const ProductShape& shape, Options& options, Report& report) {
  const unsigned cores = available_cores();
  const bool automatic = !options.in_process && options.workers == 0;
  // Reading the cache costs ~0.2 ms in a fresh process: not for products too small to split.
  const bool tiny = automatic && too_small_for_workers(shape, cores);
  Calibration calibration;
  if (automatic && !tiny) calibration = load_calibration();
  if (tiny) calibration.source = "built-in defaults (the product is too small for workers to pay)";
  // This process may run slower kernels than its workers (OpenBLAS's fallback).
  if (kernel_here() != worker_kernel()) calibration.in_process_rate = calibration.fallback_rate;
  const auto host_threads = static_cast<std::size_t>(blas_threads());
  if (!options.in_process && !tiny) {
    // Fork or spawn is decided by a look at /proc (tens of us): not where workers lose even
    // when they start as cheaply as either launch can.
    bool decide = true;
    if (automatic && options.launch == Launch::automatic) {
      Calibration cheapest = calibration;
      cheapest.spawn_base_us = std::min(calibration.fork_base_us, calibration.spawn_base_us);
      cheapest.spawn_per_worker_us =
          std::min(calibration.fork_per_worker_us, calibration.spawn_per_worker_us);
      Options bound = options;
      bound.launch = Launch::spawn;
      decide = !make_plan(shape, bound, cores, cheapest, host_threads).in_process;
    }
    if (decide) options.launch = resolve_launch(options.launch);
  }
  report.launch = options.launch;
  Plan plan = make_plan(shape, options, cores, calibration, host_threads);
  report.automatic = plan.automatic;
  report.candidates = plan.candidates;
  report.plan_reason = plan.reason;
  if (automatic) report.calibration = calibration.source;
  report.threads_per_worker = static_cast<unsigned>(plan.threads_per_worker);
  report.workers = static_cast<unsigned>(plan.workers);
  report.in_process = plan.in_process;
  return plan;
}

std::uint64_t streaming_rows(const Options& options, bool over_budget) {
  if (options.rows_per_step > 0) return options.rows_per_step;
  return over_budget ? kChunkRows : 0;
}

Crew::Crew(JobDescriptor& job, std::string job_name, const Plan& plan, const Options& options)
    : job_(job),
      job_name_(std::move(job_name)),
      plan_(plan),
      options_(options),
      fork_(resolve_launch(options.launch) == Launch::fork),
      exe_(fork_ ? std::string() : worker_executable()),
      attempts_(plan.workers, 0) {}

// A slot as its worker finds it at the start of a phase: `state` pending for a fresh worker,
// attached for one that waited.
void Crew::reset_slot(std::size_t i, SlotState state) {
  WorkerSlot& slot = job_.slots[i];
  slot.attempt = attempts_[i];
  slot.message[0] = '\0';
  slot.error_code = -1;
  slot.rows_done.store(0);
  slot.state.store(static_cast<std::uint32_t>(state));
}

void Crew::start_worker(std::size_t i, const std::function<int(std::size_t)>& fork_body) {
  if (fork_)
    launcher_.fork_worker(i, [&fork_body, i] { return fork_body(i); });
  else
    launcher_.spawn_worker(i, exe_, {"--job", job_name_, "--id", std::to_string(i), "--quiet"},
                           {{"OPENBLAS_NUM_THREADS", std::to_string(plan_.threads_per_worker)}});
}

RunStats Crew::run(const std::function<int(std::size_t)>& fork_body, double flops_per_row) {
  const std::size_t workers = plan_.workers;
  const auto start = std::chrono::steady_clock::now();
  RunStats stats;
  for (std::size_t i = 0; i < workers; ++i)
    reset_slot(i, started_ ? SlotState::attached : SlotState::pending);
  if (started_) {
    // The workers wait on their slots (run_phases): the next phase is set.
    for (std::size_t i = 0; i < workers; ++i)
      job_.slots[i].go.post();
  } else {
    // Spawned workers compute while this process waits: its OpenBLAS threads must not spin
    // beside them (a fork stops them by itself).
    if (!fork_) stop_blas_pool();
    // Nothing is named: forked children inherit the mappings, spawned ones map the
    // coordinator's descriptors (SharedSegment, NpyMapping, NpyOutput), fresh ones for retries
    // too.
    for (std::size_t i = 0; i < workers; ++i)
      start_worker(i, fork_body);
    stats.launches += static_cast<unsigned>(workers);
    started_ = true;
    if (!fork_) {
      // A worker that ends before attaching (one that exits 0 included) fails the run below.
      try {
        launcher_.wait_attached(job_.attached, workers, [this](std::size_t i) {
          return job_.slots[i].state.load() != static_cast<std::uint32_t>(SlotState::pending);
        });
      } catch (const Error& e) {
        if (e.code() != ErrorCode::timed_out) throw;
        if (!all_done(job_, workers)) throw timeout_failure(job_, workers, {});
      }
    }
  }

  // Staged workers say they are done (phase_done) and wait; the others exit.
  const bool staged = job_.staged != 0;
  auto unfinished = [&] { return staged ? !all_done(job_, workers) : launcher_.live() > 0; };
  const int tick_ms = options_.progress ? 100 : 1000;
  ProgressBar progress(options_.progress && flops_per_row > 0, job_.m, flops_per_row);
  std::vector<bool> told_stopped(workers, false);
  while (unfinished()) {
    std::uint64_t rows_done = 0;
    for (std::size_t i = 0; i < workers; ++i)
      rows_done += job_.slots[i].rows_done.load();
    progress.update(rows_done);
    // The stall watchdog: a worker stopped by a signal makes no progress until continued.
    const auto stopped = launcher_.stopped();
    for (const auto& [id, sig] : stopped)
      if (!told_stopped[id] && options_.on_stall) {
        told_stopped[id] = true;
        options_.on_stall(fmt::format("{} is stopped by SIG{}; waiting for it{}", name_of(job_, id),
                                      sigabbrev_np(sig),
                                      options_.timeout > 0 ? " until the timeout" : ""));
      }
    std::vector<WorkerExit> exits;
    try {
      if (staged) {
        // A post is the usual wake-up; the short wait bounds how late an exit or an interrupt
        // is seen (wait_exits looks at both).
        const auto until = boost::posix_time::microsec_clock::universal_time() +
                           boost::posix_time::milliseconds(5);
        try {
          (void)job_.phase_done.timed_wait(until);
        } catch (const boost::interprocess::interprocess_exception&) {
          // sem_timedwait is not restarted after a signal handler: look again.
        }
        exits = launcher_.wait_exits(0);
      } else {
        exits = launcher_.wait_exits(tick_ms);
      }
    } catch (const Error& e) {
      if (e.code() != ErrorCode::timed_out) throw;
      // Work that is all done is never thrown away: the deadline applies while some remains.
      if (all_done(job_, workers)) break;
      throw timeout_failure(job_, workers, stopped);
    }
    for (const WorkerExit& exit : exits) {
      if (!staged && exit.ok() &&
          job_.slots[exit.id].state.load() == static_cast<std::uint32_t>(SlotState::done))
        continue;
      const Error failure = worker_failure(job_, exit);
      if (attempts_[exit.id] >= options_.retries) {
        launcher_.kill_all();
        throw failure;
      }
      ++attempts_[exit.id];
      ++stats.retries;
      if (options_.on_retry)
        options_.on_retry(fmt::format("{}; retrying ({} of {})", failure.what(), attempts_[exit.id],
                                      options_.retries));
      reset_slot(exit.id, SlotState::pending);
      start_worker(exit.id, fork_body);
      ++stats.launches;
    }
  }
  stats.compute_seconds = seconds_since(start);
  return stats;
}

RunStats launch_and_join(JobDescriptor& job, const std::string& job_name, const Plan& plan,
                         const std::function<int(std::size_t)>& fork_body, const Options& options,
                         double flops_per_row) {
  job.staged = 0;
  Crew crew(job, job_name, plan, options);
  return crew.run(fork_body, flops_per_row);
}

namespace {

// In this process: slot 0 covers all of C, with the plan's BLAS threads (InProcessBlas: the
// host's count and CPUs as they were afterwards, and no fork of shmgemm's meanwhile).
class InProcessExecutor final : public Executor {
 public:
  InProcessExecutor(const Plan& plan, const Options& options)
      : options_(options), threads_(static_cast<int>(plan.threads_per_worker)) {}
  JobDescriptor& job() override { return job_; }
  void run(const GeneralOperands& local, double flops_per_row) override {
    ProgressBar bar(options_.progress && flops_per_row > 0, job_.m, flops_per_row);
    // Where OpenBLAS would use its threads at all (from 64^3 multiply-adds a product; a stack
    // is one call per product), and the few system calls are nothing beside the product.
    constexpr double kPlaceFrom = 128.0 * 128.0 * 128.0;
    const double rows = double(job_.m) / double(std::max<std::uint64_t>(job_.general.batch, 1));
    const bool large = rows * double(job_.n) * double(job_.k) >= kPlaceFrom;
    const InProcessBlas blas(threads_, large);
    const std::uint64_t all_rows = job_.slots[0].row_end - job_.slots[0].row_begin;
    run_phase(job_, 0, local, [&](std::uint64_t done) {
      bar.update(done);
      if (done < all_rows) throw_if_interrupted();  // work all done is never thrown away
    });
  }
  std::byte* prepared_area(std::uint64_t bytes, std::uint64_t) override {
    prepared_.resize(bytes);
    return prepared_.data();
  }

 private:
  // This thread's descriptor, reused call after call: a new one is 180 KB to zero, which small
  // products would pay every time (describe_job sets every field the phases read).
  static JobDescriptor& thread_descriptor() {
    thread_local const std::unique_ptr<JobDescriptor> job = std::make_unique<JobDescriptor>();
    return *job;
  }
  const Options& options_;
  const int threads_;
  JobDescriptor& job_ = thread_descriptor();
  std::vector<std::byte> prepared_;
};

// Workers started for this call and joined (launch_and_join), over a job descriptor in a
// segment of its own.
class LaunchedExecutor final : public Executor {
 public:
  LaunchedExecutor(const Plan& plan, const Options& options) : plan_(plan), options_(options) {}
  JobDescriptor& job() override { return *described_.job; }
  void run(const GeneralOperands& local, double flops_per_row) override {
    JobDescriptor* job = described_.job;
    // One launch for every phase: the workers wait between them.
    job->staged = job->general.phase != Phase::multiply ? 1 : 0;
    if (!crew_) crew_.emplace(*job, described_.segment.name(), plan_, options_);
    const RunStats stats = crew_->run(
        [job, local](std::size_t i) { return run_phases(*job, i, local); }, flops_per_row);
    retries += stats.retries;
    launches += stats.launches;
  }
  std::byte* prepared_area(std::uint64_t bytes, std::uint64_t elements) override {
    check_shm_room(bytes, "the converted B");
    prepared_ = SharedSegment::create("bprep", std::max<std::uint64_t>(bytes, 1));
    OperandRef& ref = described_.job->prepared;
    ref = operand_ref(ConstMatrixRef{nullptr, elements, 1, 1, Layout::row_major}, Storage::shm,
                      prepared_->name(), 0);
    return prepared_->data();
  }

 private:
  const Plan& plan_;
  const Options& options_;
  JobSegment described_;
  std::optional<SharedSegment> prepared_;
  std::optional<Crew> crew_;  // after prepared_: its workers map the prepared B
};

}  // namespace

std::unique_ptr<Executor> one_shot_executor(const Plan& plan, const Options& options) {
  if (plan.in_process) return std::make_unique<InProcessExecutor>(plan, options);
  return std::make_unique<LaunchedExecutor>(plan, options);
}

Plan plan_call(const Product& p, Options& options, Report& report) {
  return plan_product(p.work(), options, report);
}

}  // namespace shmgemm::detail
