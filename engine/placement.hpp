// Where a call's operands live while its workers compute, per backing: the .npy files mapped
// (file), shared segments (shm), the host's memory (fork inherits it; spawn stages it once),
// and a Pool's arena (no copy; see pool_jobs.cpp). Sets each operand's ref and C's area.
#pragma once

#include <memory>
#include <optional>

#include "common/fd.hpp"
#include "common/mapping.hpp"
#include "common/npy_file.hpp"
#include "common/segment.hpp"
#include "engine/product.hpp"
#include "shmgemm/array_view.hpp"
#include "shmgemm/shmgemm.hpp"

namespace shmgemm::detail {

// A new C-order result for a call whose plan is known (matmul's OwnedArray form). In process:
// private memory, with huge pages asked for when large and `huge_pages` (as numpy does for an
// array of 4 MiB or more; not for many small results in one block, whose first touch would
// then pay for compacting memory into huge pages). With workers: a memfd, written through
// a shared mapping (forked workers inherit it; spawned ones open /proc/PID/fd/N) and seen by
// this process through a private mapping of the same pages, so that nothing is copied back and
// the array is private memory as numpy's are (a later fork gets copy-on-write pages).
class NewResult {
 public:
  NewResult(std::uint64_t bytes, bool workers, bool huge_pages = true);
  NewResult(const NewResult&) = delete;
  NewResult& operator=(const NewResult&) = delete;
  // Where the engine writes C, and how workers find it.
  ResultArea area(Launch launch) const;
  // The result's memory, for an OwnedArray; the shared mapping is gone after this.
  std::shared_ptr<void> release();

 private:
  std::uint64_t bytes_ = 0;
  Fd memfd_;
  Mapping shared_;                 // the workers' mapping (with workers)
  std::shared_ptr<void> private_;  // what the caller keeps
};

// Faults in the pages of [p, p + bytes) for writing, in one system call (MADV_POPULATE_WRITE;
// nothing where the kernel lacks it).
void populate_for_writing(std::byte* p, std::uint64_t bytes);

// The operands of one one-shot call. Thread-safety: none.
class Placement {
 public:
  // .npy operands and output (multiply_npy), `p.a` and `p.b` read from the mappings:
  //  - file: workers map the files; C is the output's data section. No copy.
  //  - shm:  A and B are read once into new segments (each file's pages dropped as they are
  //          copied); C is a new segment, copied into the output by finish().
  // In process (no workers), the mappings are used as they are, whatever the backing.
  Placement(Product& p, const NpyMapping& a, const NpyMapping& b, const NpyOutput& out,
            Backing backing, bool workers);

  // Operands in this process's memory (matmul), written into `out`:
  //  - A and B: in process and with fork, used where they are; with spawn, copied once into
  //    segments unless they lie in a Pool's arena.
  //  - C: written in place when `out` is C-contiguous and the workers reach it (in process, or
  //    in a Pool's arena); else computed in an area of its own and copied into `out` by finish().
  Placement(Product& p, const MutableArrayView& out, Launch launch, bool workers);
  // The same operands, written into a new result (in place, whatever the plan).
  Placement(Product& p, const NewResult& out, Launch launch, bool workers);

  // Moves the result to its destination, when C was computed elsewhere. Then frees the rest.
  void finish();
  // Bytes copied to place A and B and to bring C back.
  std::uint64_t copied_bytes() const { return copied_; }

 private:
  void stage(Operand& op, std::string_view role, std::optional<SharedSegment>& seg,
             const NpyMapping* file);
  void release_rows(std::uint64_t begin, std::uint64_t bytes);
  void place_inputs(Product& p, Launch launch);

  std::optional<SharedSegment> a_seg_, b_seg_, c_seg_;
  std::vector<std::byte> c_own_;  // in process, for an `out` that is not C-contiguous
  const std::byte* c_from_ = nullptr;
  std::uint64_t c_bytes_ = 0;
  std::optional<MutableArrayView> c_to_;  // where finish() copies C, when it was computed elsewhere
  const NpyOutput* output_ = nullptr;     // the file behind c_to_, if any
  std::uint64_t copied_ = 0;
};

}  // namespace shmgemm::detail
