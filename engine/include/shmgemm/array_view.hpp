// shmgemm::ArrayView: an N-D typed, strided, non-owning view of an array, as numpy describes
// one (data pointer, dtype, shape, strides in bytes). Public API.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "shmgemm/dtype.hpp"
#include "shmgemm/error.hpp"
#include "shmgemm/export.hpp"

namespace shmgemm {

// shape[i] elements along axis i; element (i0, i1, ...) at data + i0*strides[0] + i1*strides[1]
// + ... bytes. Strides may take any value numpy can produce: negative (a reversed axis), 0 (a
// broadcast axis), not a multiple of the item size. Empty strides: C-contiguous. A view never
// owns its memory. An ArrayView only reads (an operand); an output is a MutableArrayView, which
// only a non-const pointer makes, so a read-only array as an output does not compile.
// Thread-safety: a view is a value; the memory it names is the caller's to guard.
class SHMGEMM_API ArrayView {
 public:
  ArrayView() = default;
  // Throws Error(invalid_argument) for a negative dimension, strides of another rank than the
  // shape, or more than 32 dimensions (numpy's limit).
  ArrayView(const void* data, DType dtype, std::vector<std::int64_t> shape,
            std::vector<std::int64_t> strides = {});

  const void* data() const { return data_; }
  DType dtype() const { return dtype_; }
  const std::vector<std::int64_t>& shape() const { return shape_; }
  const std::vector<std::int64_t>& strides() const { return strides_; }
  std::size_t ndim() const { return shape_.size(); }
  // Elements: the product of the shape (1 for a 0-d view).
  std::int64_t size() const;
  // Strides as a C-order array of this shape has them (any stride of an axis of size <= 1).
  bool is_c_contiguous() const;

 private:
  const void* data_ = nullptr;
  DType dtype_ = DType::float64;
  std::vector<std::int64_t> shape_, strides_;
};

// A view that may be written: the `out` of a product. It is an ArrayView (an output may also be
// read, e.g. to check it against the operands), made only from memory the caller may write.
class SHMGEMM_API MutableArrayView : public ArrayView {
 public:
  MutableArrayView() = default;
  // Throws as ArrayView's constructor.
  MutableArrayView(void* data, DType dtype, std::vector<std::int64_t> shape,
                   std::vector<std::int64_t> strides = {})
      : ArrayView(data, dtype, std::move(shape), std::move(strides)), mutable_data_(data) {}

  void* mutable_data() const { return mutable_data_; }

 private:
  void* mutable_data_ = nullptr;
};

}  // namespace shmgemm
