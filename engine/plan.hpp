// The plan for one product: how many workers, how many BLAS threads each, which rows each.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/partition.hpp"

namespace shmgemm::detail {

struct Plan {
  std::size_t workers = 0;
  std::size_t threads_per_worker = 1;
  std::size_t block_factor = 1;
  std::vector<RowRange> rows;  // one per worker, contiguous, covering [0, m)
};

// `requested_workers` and `requested_threads` of 0 mean "choose": one worker per core, and
// cores / workers threads each (at least 1), so workers x threads never exceeds the cores
// unless the caller asks for it.
Plan make_plan(std::uint64_t m, std::uint64_t n, std::size_t item_size,
               std::size_t requested_workers, std::size_t requested_threads, std::size_t cores);

}  // namespace shmgemm::detail
