// Whether two strided views may share memory: the question numpy's np.shares_memory answers,
// decided exactly for the views a matmul meets, and conservatively past a bound on the work.
#pragma once

#include <cstdint>

#include "shmgemm/array_view.hpp"

namespace shmgemm::detail {

enum class Overlap {
  none,   // no byte of one is a byte of the other
  some,   // at least one byte is shared
  maybe,  // the search gave up within its bound (`max_work`): treat as shared
};

// Whether some byte of `x`'s elements is a byte of `y`'s. First their extents (lowest to
// highest byte): apart, they share nothing. Else the exact question: is there an element index
// of each (0 <= i_d < shape_d) and a byte within each element such that the two addresses are
// equal, a bounded linear Diophantine equation with one term per axis of more than one element
// and per item size, solved by a depth-first search that bounds each unknown by what the
// others can still reach and by their common divisor. Past `max_work` steps: maybe.
Overlap overlap(const ArrayView& x, const ArrayView& y, std::uint64_t max_work = 1 << 16);

// True unless overlap() proves there is none: a product whose output this is for an operand
// must be computed elsewhere and copied in.
inline bool may_share_memory(const ArrayView& x, const ArrayView& y) {
  return overlap(x, y) != Overlap::none;
}

}  // namespace shmgemm::detail
