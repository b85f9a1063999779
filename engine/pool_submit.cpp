// Pool::submit's side: a call's operands placed in the arena (used where they are, or staged),
// its job described there, and its first phase queued.
#include <fmt/format.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <new>
#include <optional>
#include <stop_token>
#include <vector>

#include "engine/engine_memory.hpp"
#include "engine/interrupt.hpp"
#include "engine/overlap.hpp"
#include "engine/pool_state.hpp"

namespace shmgemm::detail {

JobDescriptor* PoolState::take_descriptor() {
  {
    const std::lock_guard lock(mutex_);
    if (!spare_descriptors_.empty()) {
      JobDescriptor* job = spare_descriptors_.back();
      spare_descriptors_.pop_back();
      spare_bytes_ -= descriptor_bytes_.at(job);
      return job;
    }
  }
  std::size_t footprint = 0;
  auto* job = new (arena_.allocate(sizeof(JobDescriptor), &footprint)) JobDescriptor{};
  try {
    const std::lock_guard lock(mutex_);
    descriptor_bytes_[job] = footprint;
  } catch (...) {
    job->~JobDescriptor();
    arena_.free(job);
    throw;
  }
  return job;
}

void PoolState::return_descriptor(JobDescriptor* job) noexcept {
  const std::lock_guard lock(mutex_);
  try {
    spare_descriptors_.push_back(job);
    spare_bytes_ += descriptor_bytes_.at(job);
  } catch (...) {
    descriptor_bytes_.erase(job);
    job->~JobDescriptor();
    arena_.free(job);
  }
}

namespace {

// A job's JobControl callbacks: each stops the job when its token asks.
struct StopCallbacks {
  std::optional<std::stop_callback<std::function<void()>>> cancel, stop;
};

}  // namespace

std::future<Report> PoolState::submit(const ArrayView& a, const ArrayView& b,
                                      const MutableArrayView& out, std::function<void()> on_done,
                                      JobControl control) {
  JobRecord job;
  job.on_done = std::move(on_done);
  job.start = std::chrono::steady_clock::now();
  Product& p = job.product;
  check_usable();
  p.result = check_arrays(a, b, &out).result;
  Report& report = job.report;
  report.launch = launch_;
  report.backing = Backing::shm;
  std::uint64_t staged = 0;
  try {
    // Operands in the arena are used where they are; others are copied in (a stop request
    // on the job ends the copy: it may take a while for large operands).
    auto place = [&](const ArrayView& v) {
      std::optional<Operand> op = operand_in_place(v);
      if (op && arena_.contains(op->local, op->bytes())) {
        op->ref = arena_ref(arena_.offset_of(op->local));
        return *op;
      }
      const std::size_t bytes =
          op ? op->bytes() : static_cast<std::size_t>(v.size()) * item_size(v.dtype());
      auto* to = static_cast<std::byte*>(arena_.allocate(bytes, nullptr, /*zero=*/false));
      job.blocks.push_back(to);
      Operand placed = op ? *op : gather_into(v, to);
      if (op) {
        constexpr std::size_t kChunk = 16 << 20;
        for (std::size_t at = 0; at < bytes; at += kChunk) {
          if (control.stop.stop_requested())
            throw Error(ErrorCode::interrupted,
                        "stopped on request while its operands were staged");
          std::memcpy(to + at, op->local + at, std::min(kChunk, bytes - at));
        }
        placed.local = to;
      }
      placed.ref = arena_ref(arena_.offset_of(to));
      staged += bytes;
      return placed;
    };
    p.a = place(a);
    p.b = place(b);
    p.shape = matmul_shape(p.a.shape, p.b.shape, "", "");
    p.describe(report);
    std::promise<Report> ready;
    if (p.c_elements() == 0 || p.shape.k == 0) {
      if (p.c_elements() > 0) fill_zeros(out);
      for (void* block : job.blocks)
        arena_.free(block);
      ready.set_value(report);
      std::future<Report> future = ready.get_future();
      if (job.on_done) job.on_done();
      return future;
    }
    const std::uint64_t c_bytes = p.c_elements() * item_size(p.result);
    // In place when the workers reach `out` and it shares no memory with an operand (numpy's
    // rule: else computed apart, then copied in).
    if (out.is_c_contiguous() && arena_.contains(out.data(), c_bytes) &&
        !may_share_memory(a, out) && !may_share_memory(b, out)) {
      p.c = {static_cast<std::byte*>(out.mutable_data()), arena_ref(arena_.offset_of(out.data()))};
    } else {
      void* c = arena_.allocate(c_bytes, nullptr, /*zero=*/false);  // the workers write all of C
      job.blocks.push_back(c);
      p.c = {static_cast<std::byte*>(c), arena_ref(arena_.offset_of(c))};
      job.copy_to = out;
      staged += c_bytes;
    }
    job.plan = pool_plan(p.work(), workers_, threads_);
    report.workers = static_cast<unsigned>(job.plan.rows.size());
    report.threads_per_worker = threads_;
    report.plan_reason = job.plan.reason;
    report.copied_bytes = staged;
    job.job = take_descriptor();
    describe_job(*job.job, p, job.plan, options_);
    job.phases = std::make_unique<Phases>(*job.job);
    job.local = {p.a.local, p.b.local, p.c.local, nullptr};
    if (options_.timeout > 0 && std::isfinite(options_.timeout))
      job.deadline = deadline_after(options_.timeout);
    std::future<Report> future = job.promise.get_future();
    std::unique_lock lock(mutex_);
    const std::uint64_t id = next_job_++;
    lock.unlock();
    // JobControl's callbacks, registered before the job is in: a request from now on stops it
    // (one that comes before it is in finds no job, and is looked at again below).
    if (control.cancel.stop_possible() || control.stop.stop_possible()) {
      auto callbacks = std::make_shared<StopCallbacks>();
      if (control.cancel.stop_possible())
        callbacks->cancel.emplace(control.cancel,
                                  std::function<void()>([this, id] { stop_job(id, false); }));
      if (control.stop.stop_possible())
        callbacks->stop.emplace(control.stop,
                                std::function<void()>([this, id] { stop_job(id, true); }));
      job.stop_callbacks = std::move(callbacks);
    }
    lock.lock();
    slot_free_.wait(lock, [&] {
      return stopping_.load() ||
             free_slots_.size() >= std::max<std::size_t>(job.job->workers, kPoolTasks / 4);
    });
    if (stopping_.load()) throw Error(ErrorCode::shut_down, "the pool is closed");
    stats_.staged_bytes += staged;
    JobRecord& record = jobs_.emplace(id, std::move(job)).first->second;
    record.compute_start = std::chrono::steady_clock::now();
    std::vector<JobRecord> finished;
    advance(id, record, finished);  // its first phase
    lock.unlock();
    for (JobRecord& f : finished)
      finish_job(f);
    if (control.cancel.stop_requested()) stop_job(id, false);
    if (control.stop.stop_requested()) stop_job(id, true);
    return future;
  } catch (...) {
    if (job.job) return_descriptor(job.job);
    for (void* block : job.blocks)
      arena_.free(block);
    throw;
  }
}

}  // namespace shmgemm::detail
