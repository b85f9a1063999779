#include "common/pool_protocol.hpp"

#include <fmt/format.h>
#include <cstring>

namespace shmgemm {

PoolControl* validate_pool(std::span<std::byte> bytes, std::string& problem) {
  if (bytes.size() < sizeof(PoolControl)) {
    problem = "control block too small";
    return nullptr;
  }
  auto* c = reinterpret_cast<PoolControl*>(bytes.data());
  if (c->magic != kPoolMagic || c->version != kPoolVersion ||
      c->control_bytes != sizeof(PoolControl)) {
    problem = "not a shmgemm pool control block of this version";
    return nullptr;
  }
  if (c->workers == 0 || c->workers > kPoolMaxWorkers || c->threads_per_worker == 0 ||
      std::memchr(c->arena_name, 0, sizeof c->arena_name) == nullptr) {
    problem = "bad worker count, thread count or arena name";
    return nullptr;
  }
  return c;
}

JobDescriptor* task_job(const PoolTask& task, std::byte* arena, std::uint64_t arena_bytes,
                        std::string& problem) {
  std::uint64_t end = 0;
  if (__builtin_add_overflow(task.job_offset, sizeof(JobDescriptor), &end) || end > arena_bytes) {
    problem = fmt::format("job descriptor outside the pool's {}-byte arena", arena_bytes);
    return nullptr;
  }
  std::byte* at = arena + task.job_offset;
  const JobDescriptor* job =
      validate_job(std::span<const std::byte>(at, sizeof(JobDescriptor)), problem);
  if (!job) return nullptr;
  if (task.slot >= job->workers) {
    problem = "a slot beyond the job's workers";
    return nullptr;
  }
  const GeneralJob& g = job->general;
  const bool prepared = g.b_prepared && g.phase != Phase::scan;
  const OperandRef* refs[] = {&job->a, &job->b, &job->c, &job->prepared};
  const DType types[] = {g.a.dtype, g.b.dtype, g.result, g.compute};
  for (int i = 0; i < (prepared ? 4 : 3); ++i) {
    if (refs[i]->storage != Storage::arena ||
        __builtin_add_overflow(refs[i]->offset, operand_extent(*refs[i], types[i]), &end) ||
        end > arena_bytes) {
      problem = fmt::format("operand {} outside the pool's {}-byte arena", "ABCP"[i], arena_bytes);
      return nullptr;
    }
  }
  return reinterpret_cast<JobDescriptor*>(at);
}

}  // namespace shmgemm
