// One worker's whole part of a job, shared by forked children, shmgemm-worker and a Pool's
// workers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>

#include "common/job.hpp"
#include "worker/general_kernel.hpp"

namespace shmgemm {

// A slot's work: computes it, calling done(count) as it goes (the slot's progress).
using SlotWork = std::function<void(const std::function<void(std::uint64_t)>& done)>;

// Worker `id`'s protocol around `work`: sets the BLAS thread count (job.threads_per_worker),
// runs `work`, and records the outcome in its slot (progress, state, message and error code;
// a SIGBUS on an operand's file fails it with a message). Returns the process exit status: 0
// on success. Never throws.
// `inject`: whether the test fault hook is asked about slot `id`.
int run_slot(JobDescriptor& job, std::size_t id, const SlotWork& work, bool inject = true) noexcept;

// run_slot over worker `id`'s share of the job's phase (run_phase).
// `inject`: whether the test fault hook is asked about slot `id` (a Pool's workers ask about
// themselves instead).
int run_worker(JobDescriptor& job, std::size_t id, const GeneralOperands& ops,
               bool inject = true) noexcept;

// run_worker for every phase of the job from its current one: while job.staged says another
// phase follows, the worker posts job.phase_done and waits on its slot's `go` for the
// coordinator to set it, mapping the prepared B (job.prepared) when it was made after `ops`.
// Returns the process exit status. Never throws.
int run_phases(JobDescriptor& job, std::size_t id, GeneralOperands ops) noexcept;

// Records a failure in worker `id`'s slot: its message and, for a shmgemm::Error, its code.
// Never throws.
void fail_slot(JobDescriptor& job, std::size_t id, std::string_view message,
               std::int32_t code = -1) noexcept;
// fail_slot for the exception being handled (call it in a catch block): a shmgemm::Error keeps
// its code, bad_alloc is ErrorCode::resource, anything else only its message. Never throws.
void fail_slot_with_current_exception(JobDescriptor& job, std::size_t id) noexcept;

}  // namespace shmgemm
