#include "worker/attach.hpp"

#include <fmt/format.h>

#include "common/mapped_file.hpp"
#include "shmgemm/error.hpp"

namespace shmgemm {

std::byte* AttachedOperands::map(const OperandRef& ref, char which, DType dtype, bool writable,
                                 const char* label) {
  const std::string name = *label ? std::string(label) : fmt::format("operand {}'s file", which);
  std::byte* base = nullptr;
  std::size_t size = 0;
  if (ref.storage == Storage::shm) {
    segments_.push_back(SharedSegment::attach(ref.name, writable));
    base = segments_.back().data();
    size = segments_.back().size();
  } else {
    files_.push_back(map_whole_file(ref.name, writable));
    base = static_cast<std::byte*>(files_.back().get_address());
    size = files_.back().get_size();
    if (!writable) guards_.emplace_back(base, size, name);
  }
  const std::uint64_t end = ref.offset + operand_extent(ref, dtype);  // no overflow: validated
  if (end > size && ref.storage == Storage::file && !writable)
    throw Error(ErrorCode::bad_file,
                fmt::format("{}: changed or truncated while being read (needs {} bytes, the file "
                            "now has {})",
                            name, end, size));
  if (end > size)
    throw Error(ErrorCode::bad_file,
                fmt::format("operand {} ({}): needs {} bytes, the mapping has {}", which, ref.name,
                            end, size));
  return base + ref.offset;
}

AttachedOperands::AttachedOperands(const JobDescriptor& job) {
  if (job.kind == JobKind::general) {
    const GeneralJob& g = job.general;
    GeneralOperands& ops = bound_.general;
    ops.a = map(job.a, 'A', g.a.dtype, false, job.label_a);
    ops.b = map(job.b, 'B', g.b.dtype, false, job.label_b);
    ops.c = map(job.c, 'C', g.result, true);
    // The prepare phase writes the prepared B, the multiply phase reads it.
    if (g.b_prepared && g.phase != Phase::scan)
      ops.prepared = map(job.prepared, 'P', g.compute, true);
    return;
  }
  auto bind = [&](const OperandRef& ref, char which, bool writable, const char* label = "") {
    MatrixRef m{map(ref, which, job.dtype, writable, label), ref.rows, ref.cols, ref.ld,
                ref.layout};
    return m;
  };
  const MatrixRef a = bind(job.a, 'A', false, job.label_a);
  const MatrixRef b = bind(job.b, 'B', false, job.label_b);
  bound_.a = {a.data, a.rows, a.cols, a.ld, a.layout};
  bound_.b = {b.data, b.rows, b.cols, b.ld, b.layout};
  bound_.c = bind(job.c, 'C', true);
}

}  // namespace shmgemm
