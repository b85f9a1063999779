// Runs one product's workers over placed operands: describe, launch, join, retry, report.
#pragma once

#include "common/dtype.hpp"
#include "engine/placement.hpp"
#include "engine/plan.hpp"
#include "shmgemm/shmgemm.hpp"

namespace shmgemm::detail {

struct RunStats {
  double compute_seconds = 0;  // first launch to last join
  unsigned retries = 0;
};

// Launches plan.workers workers over `placement` and joins them. Removes the segment names
// as soon as every worker has them mapped (at the end with spawn and retries). A failed block
// is recomputed by a fresh worker up to options.retries times; past that, throws
// Error(worker_failed) naming the worker and its rows, with the other workers killed.
// Throws Error(interrupted) when an interrupt arrives (see handle_interrupts()).
RunStats run_workers(DType dtype, std::uint64_t m, std::uint64_t k, std::uint64_t n,
                     const Plan& plan, Placement& placement, const Options& options);

}  // namespace shmgemm::detail
