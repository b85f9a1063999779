// np.matmul's general products, worker side: the phases of a job over a range
// of work, described by the job descriptor. They compute and nothing else: they know nothing of
// processes, launches or segment names.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

#include "common/job.hpp"
#include "common/matrix.hpp"

namespace shmgemm {

// A general job's operands as mapped in this process. `prepared` may be null before it exists.
struct GeneralOperands {
  const std::byte* a = nullptr;
  const std::byte* b = nullptr;
  std::byte* c = nullptr;
  std::byte* prepared = nullptr;
};

// The rows x cols block at `base` (strides in elements) as a matrix OpenBLAS
// takes directly (unit stride along one axis, a leading dimension that fits its int), or
// nothing when it must be gathered first.
std::optional<ConstMatrixRef> blas_view(const std::byte* base, std::uint64_t rows,
                                        std::uint64_t cols, std::uint64_t row_stride,
                                        std::uint64_t col_stride);

// Worker `id`'s share of `job`'s current phase (job.workers workers): scan writes the slot's
// max_a and max_b, prepare converts its share of B's rows, multiply computes the slot's rows,
// calling done(rows finished) after each chunk. In process: one worker, slot 0 covering C.
void run_phase(JobDescriptor& job, std::size_t id, const GeneralOperands& ops,
               const std::function<void(std::uint64_t)>& done);

}  // namespace shmgemm
