// How the rows of C are split among workers. Pure functions: no I/O, no state.
#pragma once

#include <cstddef>
#include <span>

namespace shmgemm {

// A half-open range of rows [begin, end).
struct RowRange {
  std::size_t begin = 0;
  std::size_t end = 0;
  std::size_t size() const { return end - begin; }
  bool operator==(const RowRange&) const = default;
};

// Rows of worker `work_id` among `n_way` workers, for a matrix of `m` rows cut in units of
// `block_factor` rows (the last unit may be partial).
//
// The ceil(m / block_factor) units are dealt out contiguously: every worker gets
// units / n_way of them and the first units % n_way workers one more, so lower ids get the
// slightly larger blocks, and the partial unit (the remainder that is not a multiple of the
// block factor) is the last unit, which goes to the last worker. Every boundary between two
// workers is a multiple of block_factor.
//
//    m  n_way  bf | ranges
//   10    3     1 | [0,4) [4,7) [7,10)
//   10    2     8 | [0,8) [8,10)            units 8+2: one each
//  100    3     8 | [0,40) [40,72) [72,100) 13 units: 5, 4, 4 (the last one partial)
//    7    3     1 | [0,3) [3,5) [5,7)
//    2    3     1 | [0,1) [1,2) [2,2)       empty: callers cap n_way at the units first
//
// Preconditions: n_way >= 1, work_id < n_way, block_factor >= 1.
RowRange partition_rows(std::size_t m, std::size_t n_way, std::size_t work_id,
                        std::size_t block_factor);

// The smallest number of rows of C (n columns of item_size bytes, stored contiguously from a
// cache-line boundary) that spans a whole number of cache lines. Boundaries at multiples of it
// keep two workers from writing the same cache line.
//   n=4000 f8: 1    n=6 f8: 4 (48 B rows)    n=1 f4: 16    n=0: 1
std::size_t cache_line_rows(std::size_t n, std::size_t item_size, std::size_t line_bytes = 64);

// Rows of part `id` when m rows, cut in units of `block_factor` rows, are dealt to parts in
// proportion to `weights` (one per part, each >= 1; the cores each part computes with). Part i
// starts at unit ceil(units x (w_0 + ... + w_{i-1}) / W) for W the sum of the weights, so every
// part gets its share rounded to a whole unit (within one unit of units x w_i / W), the parts are
// contiguous in order of id and cover [0, m), and every boundary is a multiple of block_factor.
//
//    m  weights  bf | ranges
//   10  1 1 1     1 | [0,4) [4,7) [7,10)
//   12  2 1 1     1 | [0,6) [6,9) [9,12)
//   10  1 3       4 | [0,4) [4,10)           3 units: ceil(0.75) = 1 to the first
//    2  1 1 1     1 | [0,1) [1,2) [2,2)      an empty part when units < parts
//
// Preconditions: weights not empty, each >= 1, id < weights.size(), block_factor >= 1.
RowRange partition_rows_weighted(std::size_t m, std::span<const unsigned> weights, std::size_t id,
                                 std::size_t block_factor);

// How many workers, and which block factor, for m rows when `requested` workers are asked for.
struct RowSplit {
  std::size_t workers = 0;       // min(requested, m): no worker is ever idle
  std::size_t block_factor = 1;  // `aligned_rows` when every worker can get a whole unit, else 1
};
RowSplit plan_row_split(std::size_t m, std::size_t requested, std::size_t aligned_rows);

}  // namespace shmgemm
