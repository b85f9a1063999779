// A pool worker: takes tasks off a Pool's queue and computes them in its arena until stopped.
#pragma once

#include <cstddef>

#include "common/pool_protocol.hpp"

namespace shmgemm {

// Runs worker `id` of the pool whose control block and arena are mapped here. Returns the exit
// status when the pool stops. Never throws.
int run_pool_worker(PoolControl& control, std::byte* arena, unsigned id) noexcept;

}  // namespace shmgemm
