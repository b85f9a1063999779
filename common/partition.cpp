#include "common/partition.hpp"

#include <algorithm>
#include <cstdint>
#include <numeric>

namespace shmgemm {

RowRange partition_rows(std::size_t m, std::size_t n_way, std::size_t work_id,
                        std::size_t block_factor) {
  const std::size_t units = (m + block_factor - 1) / block_factor;
  const std::size_t base = units / n_way;
  const std::size_t extra = units % n_way;
  // Units before this worker: `base` for each earlier worker, plus one for each earlier
  // worker among the first `extra`.
  const std::size_t first_unit = work_id * base + std::min(work_id, extra);
  const std::size_t unit_count = base + (work_id < extra ? 1 : 0);
  const std::size_t begin = std::min(m, first_unit * block_factor);
  const std::size_t end = std::min(m, (first_unit + unit_count) * block_factor);
  return {begin, end};
}

RowRange partition_rows_weighted(std::size_t m, std::span<const unsigned> weights, std::size_t id,
                                 std::size_t block_factor) {
  const std::uint64_t units = (m + block_factor - 1) / block_factor;
  const std::uint64_t total = std::accumulate(weights.begin(), weights.end(), std::uint64_t{0});
  const std::uint64_t before =
      std::accumulate(weights.begin(), weights.begin() + id, std::uint64_t{0});
  const std::uint64_t through = before + weights[id];
  // The first unit of a part: its share of the units before it, rounded up.
  auto first_unit = [&](std::uint64_t weight_before) {
    return (units * weight_before + total - 1) / total;
  };
  const std::size_t begin = std::min<std::uint64_t>(m, first_unit(before) * block_factor);
  const std::size_t end = std::min<std::uint64_t>(m, first_unit(through) * block_factor);
  return {begin, end};
}

std::size_t cache_line_rows(std::size_t n, std::size_t item_size, std::size_t line_bytes) {
  const std::size_t row_bytes = n * item_size;
  if (row_bytes == 0) return 1;
  return line_bytes / std::gcd(row_bytes, line_bytes);
}

RowSplit plan_row_split(std::size_t m, std::size_t requested, std::size_t aligned_rows) {
  RowSplit split;
  split.workers = std::min(requested, m);
  if (split.workers == 0) return split;
  const std::size_t aligned_units = (m + aligned_rows - 1) / aligned_rows;
  // Aligned boundaries only when each worker still gets at least one unit.
  split.block_factor = aligned_units >= split.workers ? aligned_rows : 1;
  return split;
}

}  // namespace shmgemm
