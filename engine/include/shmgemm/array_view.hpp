// shmgemm::ArrayView: an N-D typed, strided, non-owning view of an array, as numpy describes
// one (data pointer, dtype, shape, strides in bytes). Public API.
#pragma once

#include <cstdint>
#include <vector>

#include "shmgemm/dtype.hpp"
#include "shmgemm/error.hpp"
#include "shmgemm/export.hpp"

namespace shmgemm {

// shape[i] elements along axis i; element (i0, i1, ...) at data + i0*strides[0] + i1*strides[1]
// + ... bytes. Strides may take any value numpy can produce: negative (a reversed axis), 0 (a
// broadcast axis), not a multiple of the item size. Empty strides: C-contiguous. A view never
// owns its memory; one made from a `const void*` is read-only (an operand, never an output).
// Thread-safety: a view is a value; the memory it names is the caller's to guard.
class SHMGEMM_API ArrayView {
 public:
  ArrayView() = default;
  // Throws Error(invalid_argument) for a negative dimension, strides of another rank than the
  // shape, or more than 32 dimensions (numpy's limit).
  ArrayView(void* data, DType dtype, std::vector<std::int64_t> shape,
            std::vector<std::int64_t> strides = {});
  ArrayView(const void* data, DType dtype, std::vector<std::int64_t> shape,
            std::vector<std::int64_t> strides = {});

  void* data() const { return data_; }
  DType dtype() const { return dtype_; }
  const std::vector<std::int64_t>& shape() const { return shape_; }
  const std::vector<std::int64_t>& strides() const { return strides_; }
  std::size_t ndim() const { return shape_.size(); }
  // Elements: the product of the shape (1 for a 0-d view).
  std::int64_t size() const;
  // False for a view made from a const pointer.
  bool writable() const { return writable_; }
  // Strides as a C-order array of this shape has them (any stride of an axis of size <= 1).
  bool is_c_contiguous() const;

 private:
  void* data_ = nullptr;
  DType dtype_ = DType::float64;
  std::vector<std::int64_t> shape_, strides_;
  bool writable_ = false;
};

}  // namespace shmgemm
