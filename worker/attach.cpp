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
  const GeneralJob& g = job.general;
  bound_.a = map(job.a, 'A', g.a.dtype, false, job.label_a);
  bound_.b = map(job.b, 'B', g.b.dtype, false, job.label_b);
  bound_.c = map(job.c, 'C', g.result, true);
  // The prepare phase writes the prepared B, the multiply phase reads it.
  if (g.b_prepared && g.phase != Phase::scan) bound_.prepared = map_prepared(job);
}

std::byte* AttachedOperands::map_prepared(const JobDescriptor& job) {
  return map(job.prepared, 'P', job.general.compute, true);
}

}  // namespace shmgemm
