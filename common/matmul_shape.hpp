// numpy's shape rules for np.matmul: 1-D operands, stacks of matrices and broadcasting of the
// batch axes. A pure function: no I/O, no state.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace shmgemm {

// numpy allows at most this many dimensions.
inline constexpr std::size_t kMaxDims = 32;

// An operand as stored: its shape, and its strides in elements (C or Fortran order).
struct ArrayShape {
  std::vector<std::uint64_t> shape;
  std::vector<std::uint64_t> strides;
};

// Strides of a C-order (fortran = false) or Fortran-order array of `shape`, in elements.
std::vector<std::uint64_t> contiguous_strides(std::span<const std::uint64_t> shape, bool fortran);

// One operand of the product, seen as a stack of rows x cols matrices.
struct StackOperand {
  std::uint64_t rows = 0, cols = 0;
  std::uint64_t row_stride = 0, col_stride = 0;  // elements; 0 along a dimension of size 1
  // Its own batch axes (the leading ones), with their strides in elements.
  std::vector<std::uint64_t> batch_shape, batch_strides;
  // Strides in elements along the product's batch axes (MatmulShape::batch_shape): 0 where this
  // operand is broadcast.
  std::vector<std::uint64_t> broadcast_strides;
};

struct MatmulShape {
  std::uint64_t m = 0, k = 0, n = 0;       // one product: (m x k) @ (k x n)
  std::vector<std::uint64_t> batch_shape;  // the broadcast batch axes
  std::uint64_t batch = 1;                 // products: the product of batch_shape
  std::vector<std::uint64_t> out_shape;    // np.matmul's result shape (C order)
  StackOperand a, b;
};

// The product of `a` and `b` under numpy's rules: a 1-D left operand is a row and a 1-D right
// operand a column, both removed from the result; N-D operands are stacks of matrices in their
// last two axes, whose leading axes broadcast. Throws Error(shape_mismatch) with numpy's kind of
// message, after the operands `a_name` and `b_name` (file names; none when both are empty), for a
// 0-d operand, a core dimension mismatch or batch axes that do not broadcast.
MatmulShape matmul_shape(const ArrayShape& a, const ArrayShape& b, std::string_view a_name,
                         std::string_view b_name);

}  // namespace shmgemm
