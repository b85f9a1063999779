// A host program's array: a buffer of its own and a MutableArrayView of `shape` in it at byte
// `strides` (empty: C order), its first element placed so that negative strides stay inside the
// buffer. Uses the public API only.
#pragma once

#include <shmgemm/shmgemm.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

struct StridedArray {
  std::vector<std::byte> store;
  shmgemm::MutableArrayView view;
  StridedArray(shmgemm::DType dtype, std::vector<std::int64_t> shape,
               std::vector<std::int64_t> strides = {}) {
    const auto item = static_cast<std::int64_t>(shmgemm::item_size(dtype));
    if (strides.empty()) {
      strides.resize(shape.size());
      std::int64_t step = item;
      for (std::size_t i = shape.size(); i-- > 0;) {
        strides[i] = step;
        step *= std::max<std::int64_t>(shape[i], 1);
      }
    }
    std::int64_t lo = 0, hi = item;
    for (std::size_t i = 0; i < shape.size(); ++i)
      if (shape[i] > 1) (strides[i] < 0 ? lo : hi) += (shape[i] - 1) * strides[i];
    store.resize(static_cast<std::size_t>(hi - lo) + 16);
    view = shmgemm::MutableArrayView(store.data() - lo, dtype, shape, strides);
  }
  // The element at `index`.
  std::byte* at(const std::vector<std::int64_t>& index) const {
    auto* p = static_cast<std::byte*>(view.mutable_data());
    for (std::size_t i = 0; i < index.size(); ++i)
      p += index[i] * view.strides()[i];
    return p;
  }
};
