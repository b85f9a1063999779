// Out of core: a product of two .npy matrices whose B does not fit in the memory the call may
// use. When C fits, A and B are read once each, in slabs along k (A's columns, B's rows), and C
// summed slab by slab. Otherwise B is taken in column panels that fit; each panel is held whole
// while A streams past it a step of rows at a time, each step's block of C written into the output
// (and written back to the disk and dropped, when C does not fit either). A panel of a C-order B is
// a strided cut of its file: when the panel's piece of each row is narrower than a few pages,
// reading each panel from B would read every page of B every time, so B is first packed, in one
// pass, into an unnamed scratch file beside the output, panel after panel, and each panel is read
// back whole.
#pragma once

#include <cstdint>
#include <stop_token>

#include "common/npy_file.hpp"
#include "engine/product.hpp"
#include "shmgemm/shmgemm.hpp"

namespace shmgemm::detail {

// The bytes a call may keep resident: options.memory, or the memory available (MemAvailable,
// or the memory cgroup's limit less its usage) less an eighth.
std::uint64_t memory_budget(const Options& options);

// The out-of-core plan of `p` when B does not fit beside a step of rows within `budget`:
// computes C into `out` (slabs or panels), fills the report's figures and returns true; false
// (nothing done) when the row streaming serves or the product is not two matrices.
bool multiply_out_of_core(const Product& p, const NpyMapping& a, const NpyMapping& b,
                          const NpyOutput& out, const Options& options, std::uint64_t budget,
                          Report& report);

}  // namespace shmgemm::detail
