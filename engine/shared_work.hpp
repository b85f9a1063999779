// Work that products of a set share: windows of one array multiplied by one operand, found
// before the set is split, so that each window's product is read from one larger product
// instead of being computed again.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "shmgemm/array_view.hpp"

namespace shmgemm::detail {

// Products whose results are windows of one product, `a @ b`:
// - by columns: one left operand (the same data, dtype, shape and strides) times right
//   operands that are column windows of one array (the same dtype, rows and strides, first
//   elements a whole number of columns apart): member i's result is columns
//   [offsets[i], offsets[i] + n_i) of a @ b, where b is their union;
// - by rows, mirrored: row windows of one left array times one right operand; member i's
//   result is rows [offsets[i], offsets[i] + m_i) of a @ b, where a is their union.
// The members' windows cover the union without a gap, so that the union reads only memory
// that some member reads, and computes at most the members' flops.
struct SharedProduct {
  ArrayView a, b;                      // the union's operands (2-D)
  bool by_columns = true;              // else by rows
  std::vector<std::size_t> members;    // indices into the set, at least two
  std::vector<std::uint64_t> offsets;  // each member's first column (row) in the union's result
  double member_flops = 0, flops = 0;  // the members' products, summed; the union's
};

struct SharedWork {
  std::vector<SharedProduct> groups;
  std::vector<std::size_t> alone;  // the indices of no group, in order
};

// The groups of `pairs` (each already checked by matmul_shape), whose products take `flops`
// each: 2-D operands only, none empty. A pair belongs to at most one group; column windows are
// looked for first. Pure.
SharedWork find_shared_work(std::span<const std::pair<ArrayView, ArrayView>> pairs,
                            std::span<const double> flops);

// A stack product whose matrices are overlapping windows of one array, as sliding_window_view
// and as_strided make them: `b` of shape (count, k, n) whose batch stride is `step` of its
// column strides, times one left operand (2-D, or a stack broadcast to every window); or,
// mirrored, `a` of shape (count, m, k) whose batch stride is `step` row strides, times one right
// operand. Product i is then columns [i * step, i * step + n) (rows [i * step, i * step + m))
// of one product, `a @ b` below, of (count - 1) * step + n columns (rows).
struct StackWindows {
  ArrayView a, b;  // the one product's operands (2-D)
  bool by_columns = true;
  std::uint64_t count = 0, step = 0;
};

// The byte where window `offset`'s product begins in the union's result (C order, `width`
// columns, `item` bytes an element): column `offset` of its first row by columns, else the
// start of row `offset`.
inline std::uint64_t window_start(std::size_t width, std::size_t item, bool by_columns,
                                  std::uint64_t offset) {
  return (by_columns ? offset : offset * width) * item;
}

// Copies window `offset`'s product (rows x cols) out of the union's result `joined` (C order,
// `width` columns, `item` bytes an element) to `to`, whose rows lie `row_stride` bytes apart and
// elements `col_stride`: columns [offset, offset + cols) of it by columns, else rows
// [offset, offset + rows).
void copy_window(const std::byte* joined, std::size_t width, std::size_t item, bool by_columns,
                 std::uint64_t offset, std::size_t rows, std::size_t cols, std::byte* to,
                 std::int64_t row_stride, std::int64_t col_stride);

// The windows of a stack product (already checked by matmul_shape), when its windows overlap
// (step below their width, so that the one product computes less than the stack would), and
// every operand is non-empty with positive strides along the windows. Pure.
std::optional<StackWindows> stack_windows(const ArrayView& a, const ArrayView& b);

}  // namespace shmgemm::detail
