#include "engine/plan.hpp"

#include <algorithm>

namespace shmgemm::detail {

Plan make_plan(std::uint64_t m, std::uint64_t n, std::size_t item_size,
               std::size_t requested_workers, std::size_t requested_threads, std::size_t cores) {
  cores = std::max<std::size_t>(cores, 1);
  const std::size_t wanted = requested_workers ? requested_workers : cores;
  const RowSplit split = plan_row_split(m, wanted, cache_line_rows(n, item_size));
  Plan plan;
  plan.workers = split.workers;
  plan.block_factor = split.block_factor;
  plan.threads_per_worker =
      requested_threads ? requested_threads
                        : std::max<std::size_t>(1, cores / std::max<std::size_t>(1, plan.workers));
  for (std::size_t i = 0; i < plan.workers; ++i)
    plan.rows.push_back(partition_rows(m, plan.workers, i, plan.block_factor));
  return plan;
}

}  // namespace shmgemm::detail
