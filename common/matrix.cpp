#include "common/matrix.hpp"

#include <cstring>

namespace shmgemm {

std::optional<std::uint64_t> matrix_extent_bytes(std::uint64_t rows, std::uint64_t cols,
                                                 std::uint64_t ld, Layout layout,
                                                 std::size_t item_size) {
  // Lines are rows in row-major order and columns in column-major order.
  const std::uint64_t lines = layout == Layout::row_major ? rows : cols;
  const std::uint64_t line_len = layout == Layout::row_major ? cols : rows;
  if (ld < line_len) return std::nullopt;
  if (lines == 0 || line_len == 0) return 0;
  std::uint64_t elements = 0;
  if (__builtin_mul_overflow(lines - 1, ld, &elements) ||
      __builtin_add_overflow(elements, line_len, &elements))
    return std::nullopt;
  std::uint64_t bytes = 0;
  if (__builtin_mul_overflow(elements, item_size, &bytes)) return std::nullopt;
  return bytes;
}

void copy_rows(const ConstMatrixRef& from, const MatrixRef& to, std::uint64_t begin,
               std::uint64_t end, std::size_t item) {
  for (std::uint64_t i = begin; i < end; ++i) {
    const std::byte* row = from.data + i * from.ld * item;
    if (to.layout == Layout::row_major) {
      std::memcpy(to.data + i * to.ld * item, row, from.cols * item);
      continue;
    }
    for (std::uint64_t j = 0; j < from.cols; ++j)
      std::memcpy(to.data + (j * to.ld + i) * item, row + j * item, item);
  }
}

}  // namespace shmgemm
