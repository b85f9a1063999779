// libFuzzer target: validate_pool on control blocks, and task_job on a pool task and the arena it
// points into, corrupted anywhere, as fuzz_job_descriptor does for job descriptors: each
// 12-byte record of the input patches (u32 offset, u64 value) a valid control block followed by
// a valid arena holding one job. Whatever they accept must be safe for a worker: a valid worker
// count and arena name; a job descriptor, and every operand the task's phase touches, inside the
// arena; a slot the job has.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <string>

#include "common/pool_protocol.hpp"
#include "tests/fuzz/patch.hpp"
#include "tests/job_fixture.hpp"

namespace {

using namespace shmgemm;

constexpr std::uint64_t kArena = 1 << 20;
constexpr std::uint64_t kJobAt = 4096;

struct Block {
  PoolControl control;
  alignas(64) std::byte arena[kArena];
};

void check_control(const PoolControl& c) {
  if (c.magic != kPoolMagic || c.version != kPoolVersion) __builtin_trap();
  if (c.workers == 0 || c.workers > kPoolMaxWorkers || c.threads_per_worker == 0) __builtin_trap();
  if (std::memchr(c.arena_name, 0, sizeof c.arena_name) == nullptr) __builtin_trap();
}

// An accepted job: every byte the task's worker may touch lies in the arena.
void check_job(const PoolTask& t, const JobDescriptor& job, const std::byte* arena) {
  const auto* at = reinterpret_cast<const std::byte*>(&job);
  if (at < arena || at + sizeof(JobDescriptor) > arena + kArena) __builtin_trap();
  if (t.slot >= job.workers) __builtin_trap();
  const GeneralJob& g = job.general;
  auto inside = [&](const OperandRef& r, DType d) {
    if (r.storage != Storage::arena) return false;
    if (r.rows == 0 || r.cols == 0) return r.offset <= kArena;
    const std::uint64_t last =
        r.layout == Layout::row_major ? (r.rows - 1) * r.ld + r.cols : (r.cols - 1) * r.ld + r.rows;
    return r.offset + last * item_size(d) <= kArena;
  };
  if (!inside(job.a, g.a.dtype) || !inside(job.b, g.b.dtype) || !inside(job.c, g.result))
    __builtin_trap();
  if (g.b_prepared && g.phase != Phase::scan && !inside(job.prepared, g.compute)) __builtin_trap();
}

OperandRef column(std::uint64_t offset, std::uint64_t elements) {
  return test::column_operand(Storage::arena, elements, "arena", offset);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static auto* pristine = new Block;
  static auto* mem = new Block;
  static const bool made = [] {
    auto* c = new (&pristine->control) PoolControl{};
    c->workers = 2;
    c->arena_bytes = kArena;
    copy_name(c->arena_name, "/proc/1/fd/3");
    // One 4x3 @ 3x5 float64 job of two slots; its operands after the descriptor.
    auto* job = new (pristine->arena + kJobAt) JobDescriptor{};
    job->workers = 2;
    job->m = 4;
    job->k = 3;
    job->n = 5;
    job->chunk_rows = 4;
    GeneralJob& g = job->general;
    g.result = g.compute = g.a.dtype = g.b.dtype = DType::float64;
    g.a = {DType::float64, 0, 12, 4, 3, 3, 1, {}, {}, {}};
    g.b = {DType::float64, 0, 15, 3, 5, 5, 1, {}, {}, {}};
    const std::uint64_t ops = kJobAt + sizeof(JobDescriptor);
    job->a = column(ops, 12);
    job->b = column(ops + 96, 15);
    job->c = column(ops + 216, 20);
    job->slots[0].row_end = 2;
    job->slots[1].row_begin = 2;
    job->slots[1].row_end = 4;
    PoolTask& t = c->tasks[0];
    t.job_offset = kJobAt;
    t.slot = 1;
    return true;
  }();
  static_cast<void>(made);
  std::memcpy(static_cast<void*>(mem), pristine, sizeof(Block));
  const std::size_t mapped =
      fuzz::apply_patches(reinterpret_cast<std::byte*>(mem), sizeof(Block), data, size);
  std::string problem;
  const PoolControl* c =
      validate_pool(std::span<std::byte>(reinterpret_cast<std::byte*>(&mem->control),
                                         std::min(mapped, sizeof(PoolControl))),
                    problem);
  if (c != nullptr) check_control(*c);
  if ((c == nullptr) == problem.empty()) __builtin_trap();
  problem.clear();
  const PoolTask& t = mem->control.tasks[0];
  const JobDescriptor* job = task_job(t, mem->arena, kArena, problem);
  if (job != nullptr) check_job(t, *job, mem->arena);
  if ((job == nullptr) == problem.empty()) __builtin_trap();
  return 0;
}
