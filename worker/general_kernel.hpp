// np.matmul's general products, worker side: the phases of a JobKind::general job over a range
// of work. They compute and nothing else; they know nothing of processes or segments.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

#include "common/job.hpp"
#include "common/matrix.hpp"
#include "common/partition.hpp"

namespace shmgemm {

// A general job's operands as mapped in this process. `prepared` may be null before it exists.
struct GeneralOperands {
  const std::byte* a = nullptr;
  const std::byte* b = nullptr;
  std::byte* c = nullptr;
  std::byte* prepared = nullptr;
};

// The rows x cols block at `base` (strides in elements of `item` bytes) as a matrix OpenBLAS
// takes directly (unit stride along one axis, a leading dimension that fits its int), or
// nothing when it must be gathered first.
std::optional<ConstMatrixRef> blas_view(const std::byte* base, std::uint64_t rows,
                                        std::uint64_t cols, std::uint64_t row_stride,
                                        std::uint64_t col_stride);

// Phase::scan for worker `id` of `workers`: the largest magnitudes in its share of A's and of
// B's elements (integer operands).
void scan_share(const GeneralJob& g, const GeneralOperands& ops, std::size_t id,
                std::size_t workers, std::uint64_t& max_a, std::uint64_t& max_b);

// Phase::prepare's share of worker `id`: rows of B's stack (its matrices x k rows).
RowRange prepare_share(const GeneralJob& g, std::uint64_t k, std::size_t id, std::size_t workers);

// Phase::prepare: converts rows `rows` of B's stack into ops.prepared, in the compute type or,
// for integer products, as limbs_b limbs in doubles.
void prepare_rows(const GeneralJob& g, std::uint64_t k, std::uint64_t n, const GeneralOperands& ops,
                  RowRange rows);

// Phase::multiply: rows `rows` of the flattened C (batch x m rows of n), at most `chunk_rows`
// per BLAS call, calling done(rows finished) after each. Integer products run limb pair by limb
// pair in doubles and wrap into the result modulo 2^bits.
void multiply_rows(const GeneralJob& g, std::uint64_t k, std::uint64_t n,
                   const GeneralOperands& ops, RowRange rows, std::uint64_t chunk_rows,
                   const std::function<void(std::uint64_t)>& done);

}  // namespace shmgemm
