// shmgemm::MatrixView: a non-owning view of a matrix in the host program's memory. Public API.
#pragma once

#include <cstddef>
#include <string>
#include <type_traits>

#include "shmgemm/error.hpp"

namespace shmgemm {

enum class Order { row_major, col_major };

// rows x cols elements of T (double or float, const or not) at `data`. Element (i, j) is at
// data[i * ld + j] in row-major order and data[j * ld + i] in column-major order; ld is at
// least cols (row-major) or rows (column-major). A view never owns its memory. Thread-safety:
// a view is a value; the memory it names is the caller's to guard.
template <class T>
class MatrixView {
  static_assert(std::is_same_v<std::remove_const_t<T>, double> ||
                    std::is_same_v<std::remove_const_t<T>, float>,
                "shmgemm::MatrixView holds double or float");

 public:
  using value_type = T;

  MatrixView() = default;
  // Row-major, leading dimension = cols.
  MatrixView(T* data, std::size_t rows, std::size_t cols)
      : MatrixView(data, rows, cols, cols, Order::row_major) {}
  // Any leading dimension and order. Throws Error(invalid_argument) when ld is too small.
  MatrixView(T* data, std::size_t rows, std::size_t cols, std::size_t ld,
             Order order = Order::row_major)
      : data_(data), rows_(rows), cols_(cols), ld_(ld), order_(order) {
    const std::size_t line = order == Order::row_major ? cols : rows;
    if (ld < line && rows > 0 && cols > 0)
      throw Error(ErrorCode::invalid_argument,
                  "MatrixView: leading dimension " + std::to_string(ld) + " is smaller than the " +
                      std::to_string(line) + (order == Order::row_major ? " columns" : " rows"));
  }
  // A view of const T from a view of T.
  template <class U>
  requires std::is_same_v<const U, T> MatrixView(
      const MatrixView<U>& other)  // NOLINT: implicit, as T* converts to const T*
      : data_(other.data()),
        rows_(other.rows()),
        cols_(other.cols()),
        ld_(other.ld()),
        order_(other.order()) {}

  T* data() const { return data_; }
  std::size_t rows() const { return rows_; }
  std::size_t cols() const { return cols_; }
  std::size_t ld() const { return ld_; }
  Order order() const { return order_; }
  T& operator()(std::size_t i, std::size_t j) const {
    return order_ == Order::row_major ? data_[i * ld_ + j] : data_[j * ld_ + i];
  }

 private:
  T* data_ = nullptr;
  std::size_t rows_ = 0, cols_ = 0, ld_ = 0;
  Order order_ = Order::row_major;
};

}  // namespace shmgemm
