// What the host-memory APIs (matmul, Pool) share: views as matrix refs, and the shape check.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "common/dtype.hpp"
#include "common/matrix.hpp"
#include "shmgemm/array_view.hpp"
#include "shmgemm/matrix_view.hpp"

namespace shmgemm::detail {

template <class T>
constexpr DType dtype_of() {
  return sizeof(T) == 8 ? DType::float64 : DType::float32;
}

template <class T>
auto ref_of(MatrixView<T> v) {
  using Byte = std::conditional_t<std::is_const_v<T>, const std::byte, std::byte>;
  return BasicMatrixRef<Byte>{
      reinterpret_cast<Byte*>(v.data()), v.rows(), v.cols(), std::max<std::uint64_t>(v.ld(), 1),
      v.order() == Order::row_major ? Layout::row_major : Layout::col_major};
}

// A matrix view as the N-D view of the same elements: a MutableArrayView when T is not const.
template <class T>
auto array_view(MatrixView<T> v) {
  using View = std::conditional_t<std::is_const_v<T>, ArrayView, MutableArrayView>;
  const auto item = static_cast<std::int64_t>(sizeof(T));
  const auto ld = static_cast<std::int64_t>(v.ld());
  std::vector<std::int64_t> strides = v.order() == Order::row_major
                                          ? std::vector<std::int64_t>{ld * item, item}
                                          : std::vector<std::int64_t>{item, ld * item};
  return View(v.data(), dtype_of<std::remove_const_t<T>>(),
              {static_cast<std::int64_t>(v.rows()), static_cast<std::int64_t>(v.cols())},
              std::move(strides));
}

// Throws Error(shape_mismatch) as numpy words it ("shapes (3,4) and (5,6) not aligned: 4 (dim 1)
// != 5 (dim 0)") when an m x k matrix cannot multiply a k2 x n one.
void check_aligned(std::uint64_t m, std::uint64_t k, std::uint64_t k2, std::uint64_t n);

// Throws Error(shape_mismatch) as numpy words it when a (m x k) and b (k2 x n) do not multiply
// into c (cm x cn), and Error(unsupported) for dimensions beyond BLAS's 32-bit ints.
void check_product_shapes(const ConstMatrixRef& a, const ConstMatrixRef& b, const MatrixRef& c);

}  // namespace shmgemm::detail
