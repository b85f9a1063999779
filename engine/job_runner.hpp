// Runs one product's workers over placed operands: describe, launch, join, report failures.
#pragma once

#include "common/dtype.hpp"
#include "engine/placement.hpp"
#include "engine/plan.hpp"
#include "shmgemm/shmgemm.hpp"

namespace shmgemm::detail {

// Launches plan.workers workers over `placement` and joins them. Removes the segment names
// as soon as every worker has them mapped. Returns the seconds from the first launch to the
// last join. Throws Error(worker_failed) naming the first worker to fail and its rows; the
// other workers are killed by then.
double run_workers(DType dtype, std::uint64_t m, std::uint64_t k, std::uint64_t n, const Plan& plan,
                   Placement& placement, Launch launch);

}  // namespace shmgemm::detail
