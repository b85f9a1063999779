// Puts A, B and C where every worker can map them: the backing of a run.
#pragma once

#include <optional>

#include "common/dtype.hpp"
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

// The operands of one run. Thread-safety: none.
class Placement {
 public:
  // .npy operands and output:
  //  - file: A and B are their files' mapped data sections; C is the output's. No copy.
  //  - shm:  A and B are read once into new segments; C is a new segment, copied into the
  //          output by finish().
  Placement(const NpyMapping& a, const NpyMapping& b, const NpyOutput& out, Backing backing);

  // Operands in this process's memory (matmul):
  //  - A and B: with fork, used where they are (workers inherit them); with spawn, copied once
  //    into segments unless they lie in a Pool's shared memory.
  //  - C: written in place when it is row-major in a Pool's shared memory; else a segment,
  //    copied into c by finish().
  Placement(const ConstMatrixRef& a, const ConstMatrixRef& b, const MatrixRef& c, DType dtype,
            Launch launch);

  const Placed<ConstMatrixRef>& a() const { return a_; }
  const Placed<ConstMatrixRef>& b() const { return b_; }
  const Placed<MatrixRef>& c() const { return c_; }
  // How messages name A and B: their files' names, empty for host memory.
  const std::string& label_a() const { return label_a_; }
  const std::string& label_b() const { return label_b_; }
  // Bytes copied to place A and B and to bring C back.
  std::uint64_t copied_bytes() const { return copied_; }

  // Moves the result to its destination: a copy when C was computed in a segment of its own.
  void finish();

 private:
  // After rows [begin, end) of C went to their destination: frees them in the segment, and
  // unmaps them in a file output.
  void release_rows(std::uint64_t begin, std::uint64_t end);
  Placed<ConstMatrixRef> stage(const ConstMatrixRef& m, std::string_view role, DType dtype,
                               std::optional<SharedSegment>& seg);

  Placed<ConstMatrixRef> a_, b_;
  Placed<MatrixRef> c_;
  std::optional<SharedSegment> a_seg_, b_seg_, c_seg_;
  MatrixRef destination_;              // where finish() copies C, when c_seg_ holds it
  const NpyOutput* output_ = nullptr;  // the file behind destination_, if any
  std::size_t item_ = 8;
  std::uint64_t copied_ = 0;
  std::string label_a_, label_b_;
};

}  // namespace shmgemm::detail
