// libFuzzer target: validate_pool and check_task on pool control blocks corrupted anywhere, as
// fuzz_job_descriptor does for job descriptors: each 12-byte record of the input patches
// (u32 offset, u64 value) a valid control block. Whatever they accept must be safe for a worker:
// a valid worker count and arena name, and every accepted task inside the arena.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <string>

#include "common/pool_protocol.hpp"
#include "tests/fuzz/patch.hpp"

namespace {

using namespace shmgemm;

constexpr std::uint64_t kArena = 1 << 20;

void check_safe(const PoolControl& c) {
  if (c.magic != kPoolMagic || c.version != kPoolVersion) __builtin_trap();
  if (c.workers == 0 || c.workers > kPoolMaxWorkers || c.threads_per_worker == 0) __builtin_trap();
  if (std::memchr(c.arena_name, 0, sizeof c.arena_name) == nullptr) __builtin_trap();
  for (const PoolTask& t : c.tasks) {
    if (!check_task(t, kArena).empty()) continue;
    // Accepted: every byte the worker touches lies in the arena.
    const std::size_t item = t.dtype == DType::float32 ? 4 : 8;
    const auto ends_inside = [&](std::uint64_t offset, std::uint64_t rows, std::uint64_t cols,
                                 std::uint64_t ld, Layout layout) {
      if (rows == 0 || cols == 0) return true;
      const std::uint64_t last =
          layout == Layout::row_major ? (rows - 1) * ld + cols : (cols - 1) * ld + rows;
      return (layout == Layout::row_major ? ld >= cols : ld >= rows) &&
             offset + last * item <= kArena;
    };
    if (t.row_begin > t.row_end || t.row_end > t.m ||
        !ends_inside(t.a_offset, t.m, t.k, t.a_ld, t.a_layout) ||
        !ends_inside(t.b_offset, t.k, t.n, t.b_ld, t.b_layout) ||
        !ends_inside(t.c_offset, t.m, t.n, t.c_ld, Layout::row_major))
      __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  alignas(PoolControl) static std::byte pristine[sizeof(PoolControl)];
  alignas(PoolControl) static std::byte mem[sizeof(PoolControl)];
  static const bool made = [] {
    auto* c = new (pristine) PoolControl{};
    c->workers = 2;
    c->arena_bytes = kArena;
    return true;
  }();
  static_cast<void>(made);
  std::memcpy(mem, pristine, sizeof mem);
  const std::size_t mapped = fuzz::apply_patches(mem, sizeof mem, data, size);
  std::string problem;
  const PoolControl* c = validate_pool(std::span<std::byte>(mem, mapped), problem);
  if (c != nullptr) check_safe(*c);
  if ((c == nullptr) == problem.empty()) __builtin_trap();
  return 0;
}
