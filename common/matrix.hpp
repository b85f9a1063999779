// Where a matrix's elements are in this process: a non-owning view over bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace shmgemm {

enum class Layout : std::uint32_t { row_major = 1, col_major = 2 };

// rows x cols elements; element (i, j) is at data + (i*ld + j) * item size in row-major order,
// or data + (j*ld + i) * item size in column-major order.
template <class Byte>
struct BasicMatrixRef {
  Byte* data = nullptr;
  std::uint64_t rows = 0;
  std::uint64_t cols = 0;
  std::uint64_t ld = 0;
  Layout layout = Layout::row_major;
};
using MatrixRef = BasicMatrixRef<std::byte>;
using ConstMatrixRef = BasicMatrixRef<const std::byte>;

// Bytes from the first element to one past the last, or nothing when that overflows 64 bits
// or ld is smaller than a row (row-major) or column (column-major).
std::optional<std::uint64_t> matrix_extent_bytes(std::uint64_t rows, std::uint64_t cols,
                                                 std::uint64_t ld, Layout layout,
                                                 std::size_t item_size);

// Copies rows [begin, end) of `from` (row-major) into the same rows of `to`, whatever its
// layout: one memcpy per row when `to` is row-major, element by element when column-major.
void copy_rows(const ConstMatrixRef& from, const MatrixRef& to, std::uint64_t begin,
               std::uint64_t end, std::size_t item_size);

}  // namespace shmgemm
