// Puts A, B and C where every worker can map them: the backing of a run.
#pragma once

#include <optional>

#include "common/job.hpp"
#include "common/npy_file.hpp"
#include "common/segment.hpp"
#include "shmgemm/shmgemm.hpp"

namespace shmgemm::detail {

// One operand as this process sees it (`local`) and as a spawned worker finds it (`ref`).
template <class Ref>
struct Placed {
  Ref local;
  OperandRef ref;
};

// The operands of one run in one backing. Thread-safety: none.
//  - file: A and B are their .npy files' mapped data sections; C is the output's. No copy.
//  - shm:  A and B are read once into new named segments; C is a new segment, copied into the
//          output by finish().
class Placement {
 public:
  Placement(const NpyMapping& a, const NpyMapping& b, const NpyOutput& out, Backing backing);

  const Placed<ConstMatrixRef>& a() const { return a_; }
  const Placed<ConstMatrixRef>& b() const { return b_; }
  const Placed<MatrixRef>& c() const { return c_; }

  // Removes the segments' names (mappings stay valid): once every worker has attached, or
  // right away when workers are forked.
  void unlink_names() noexcept;
  // Moves the result into the output: a copy for shm, nothing for file.
  void finish(const NpyOutput& out) const;

 private:
  Placed<ConstMatrixRef> a_, b_;
  Placed<MatrixRef> c_;
  std::optional<SharedSegment> a_seg_, b_seg_, c_seg_;
};

}  // namespace shmgemm::detail
