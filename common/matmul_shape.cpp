#include "common/matmul_shape.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "common/npy.hpp"
#include "shmgemm/error.hpp"

namespace shmgemm {
namespace {

constexpr std::string_view kSignature = "(n?,k),(k,m?)->(n?,m?)";

std::uint64_t product_of(std::span<const std::uint64_t> dims) {
  std::uint64_t p = 1;
  for (std::uint64_t d : dims)
    p *= d;
  return p;
}

// "(2,3,4)->(2,newaxis,newaxis)": numpy's picture of an operand with its core axes set aside.
std::string remapped(const ArrayShape& x, std::size_t core) {
  std::string batch = "(";
  for (std::size_t i = 0; i + core < x.shape.size(); ++i)
    batch += fmt::format("{}{}", i ? "," : "", x.shape[i]);
  for (std::size_t i = 0; i < core; ++i)
    batch += std::string(batch.size() > 1 ? "," : "") + "newaxis";
  return shape_string(x.shape) + "->" + batch + ")";
}

// The operand's core matrix and its own batch axes. A 1-D operand becomes a row (left) or a
// column (right) whose extra dimension has size 1 and stride 0.
StackOperand core_of(const ArrayShape& x, bool left) {
  StackOperand s;
  const std::size_t nd = x.shape.size();
  if (nd == 1) {
    s.rows = left ? 1 : x.shape[0];
    s.cols = left ? x.shape[0] : 1;
    (left ? s.col_stride : s.row_stride) = x.strides[0];
    return s;
  }
  s.rows = x.shape[nd - 2];
  s.cols = x.shape[nd - 1];
  s.row_stride = s.rows == 1 ? 0 : x.strides[nd - 2];
  s.col_stride = s.cols == 1 ? 0 : x.strides[nd - 1];
  s.batch_shape.assign(x.shape.begin(), x.shape.end() - 2);
  s.batch_strides.assign(x.strides.begin(), x.strides.end() - 2);
  return s;
}

}  // namespace

std::vector<std::uint64_t> contiguous_strides(std::span<const std::uint64_t> shape, bool fortran) {
  std::vector<std::uint64_t> strides(shape.size());
  std::uint64_t step = 1;
  for (std::size_t j = 0; j < shape.size(); ++j) {
    const std::size_t i = fortran ? j : shape.size() - 1 - j;
    strides[i] = step;
    step *= std::max<std::uint64_t>(shape[i], 1);
  }
  return strides;
}

MatmulShape matmul_shape(const ArrayShape& a, const ArrayShape& b, std::string_view a_name,
                         std::string_view b_name) {
  // "a.npy (2,3) @ b.npy (4,5): " before numpy's words; nothing for unnamed operands.
  const std::string operands = a_name.empty() && b_name.empty()
                                   ? std::string()
                                   : fmt::format("{} {} @ {} {}: ", a_name, shape_string(a.shape),
                                                 b_name, shape_string(b.shape));
  for (int i = 0; i < 2; ++i) {
    const ArrayShape& x = i == 0 ? a : b;
    if (x.shape.empty())
      throw Error(ErrorCode::shape_mismatch,
                  fmt::format("{}matmul: Input operand {} does not have enough dimensions (has "
                              "0, gufunc core with signature {} requires 1)",
                              operands, i, kSignature));
  }
  MatmulShape r;
  r.a = core_of(a, true);
  r.b = core_of(b, false);
  if (r.a.cols != r.b.rows)
    throw Error(ErrorCode::shape_mismatch,
                fmt::format("{}matmul: Input operand 1 has a mismatch in its core dimension 0, "
                            "with gufunc signature {} (size {} is different from {})",
                            operands, kSignature, r.b.rows, r.a.cols));
  r.m = r.a.rows;
  r.k = r.a.cols;
  r.n = r.b.cols;

  // Batch axes broadcast from the right; an axis of size 1 (or a missing one) takes the other's.
  const std::size_t na = r.a.batch_shape.size(), nb = r.b.batch_shape.size();
  const std::size_t nd = std::max(na, nb);
  r.batch_shape.assign(nd, 1);
  r.a.broadcast_strides.assign(nd, 0);
  r.b.broadcast_strides.assign(nd, 0);
  for (std::size_t j = 0; j < nd; ++j) {
    const std::size_t i = nd - 1 - j;  // axis of the result, counted from the left
    const std::uint64_t da = j < na ? r.a.batch_shape[na - 1 - j] : 1;
    const std::uint64_t db = j < nb ? r.b.batch_shape[nb - 1 - j] : 1;
    if (da != db && da != 1 && db != 1)
      throw Error(ErrorCode::shape_mismatch,
                  fmt::format("{}operands could not be broadcast together with remapped shapes "
                              "[original->remapped]: {} {}  and requested shape ({},{})",
                              operands, remapped(a, a.shape.size() == 1 ? 1 : 2),
                              remapped(b, b.shape.size() == 1 ? 1 : 2), r.m, r.n));
    r.batch_shape[i] = da == 1 ? db : da;
    if (da != 1) r.a.broadcast_strides[i] = r.a.batch_strides[na - 1 - j];
    if (db != 1) r.b.broadcast_strides[i] = r.b.batch_strides[nb - 1 - j];
  }
  r.batch = product_of(r.batch_shape);
  r.out_shape = r.batch_shape;
  if (a.shape.size() > 1) r.out_shape.push_back(r.m);
  if (b.shape.size() > 1) r.out_shape.push_back(r.n);
  return r;
}

}  // namespace shmgemm
