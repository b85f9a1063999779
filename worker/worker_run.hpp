// One worker's whole part of a job, shared by forked children and shmgemm-worker.
#pragma once

#include <cstddef>

#include "common/job.hpp"
#include "common/matrix.hpp"
#include "worker/general_kernel.hpp"

namespace shmgemm {

// The job's operands as mapped in this process.
struct BoundOperands {
  ConstMatrixRef a;
  ConstMatrixRef b;
  MatrixRef c;
  GeneralOperands general;  // JobKind::general
};

// Sets the BLAS thread count, computes worker `id`'s rows (or its share of a general job's phase)
// and records the outcome in its slot (rows done, state, message). Returns the process exit status:
// 0 on success. Never throws.
// `inject`: whether the test fault hook is asked about slot `id` (a Pool's workers ask about
// themselves instead).
int run_worker(JobDescriptor& job, std::size_t id, const BoundOperands& ops,
               bool inject = true) noexcept;

// Releases the pages of rows `rows` of A (row-major) and of C in this process: done with, they
// need not stay resident (file mappings: clean pages are dropped, dirty ones written back).
void release_rows(DType dtype, const BoundOperands& ops, RowRange rows) noexcept;

// Records a failure in worker `id`'s slot. Never throws.
void fail_slot(JobDescriptor& job, std::size_t id, std::string_view message) noexcept;

}  // namespace shmgemm
