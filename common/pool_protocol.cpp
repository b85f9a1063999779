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

std::string check_task(const PoolTask& t, std::uint64_t arena_bytes) {
  const std::size_t item = item_size(t.dtype == DType::float32 ? DType::float32 : DType::float64);
  const auto fits = [&](std::uint64_t offset, std::uint64_t rows, std::uint64_t cols,
                        std::uint64_t ld, Layout layout) {
    const auto extent = matrix_extent_bytes(rows, cols, ld, layout, item);
    std::uint64_t end = 0;
    return extent && !__builtin_add_overflow(offset, *extent, &end) && end <= arena_bytes;
  };
  if (t.dtype != DType::float32 && t.dtype != DType::float64) return "unknown dtype";
  if (t.row_begin > t.row_end || t.row_end > t.m) return "rows outside the product";
  if (!fits(t.a_offset, t.m, t.k, t.a_ld, t.a_layout) ||
      !fits(t.b_offset, t.k, t.n, t.b_ld, t.b_layout) ||
      !fits(t.c_offset, t.m, t.n, t.c_ld, Layout::row_major))
    return fmt::format("operands outside the pool's {}-byte arena", arena_bytes);
  return {};
}

}  // namespace shmgemm
