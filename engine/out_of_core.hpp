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

struct PanelPlan {
  std::uint64_t budget = 0;         // the bytes the call keeps within
  unsigned threads = 1;             // OpenBLAS threads in this process
  std::uint64_t rows_per_step = 0;  // rows of A and C per step
  std::uint64_t panel_columns = 0;  // B's columns per panel (the last may have fewer)
  std::uint64_t panels = 1;         // 1: B fits whole beside a step of rows
  bool packed = false;              // the panels are read from a scratch file B is packed into
  bool c_resident = true;           // C stays in memory; else each step is written back
  // When C fits and B does not: A and B read once, in slabs of this many of A's columns and B's
  // rows, C = the sum of the slabs' products, held in memory (panels 1). 0: no slabs.
  std::uint64_t slab_depth = 0;
  std::uint64_t panels_instead = 0;  // with slabs: the panels B would have needed (A read as often)
};

// The bytes a call may keep resident: options.memory, or the memory available (MemAvailable,
// or the memory cgroup's limit less its usage) less an eighth.
std::uint64_t memory_budget(const Options& options);

// Whether `p` can be taken in panels: two matrices (or a 1-D A) from files, B mapped.
bool panels_apply(const Product& p);

// The panels of `p` within `budget` bytes, for at most `threads` OpenBLAS threads; `rows` the rows
// per step when the caller chose them (0: from the budget). Throws Error(resource) naming `what`
// (the option, or "the memory available") when not even one column of B fits, with the least
// that would do.
PanelPlan plan_panels(const Product& p, std::uint64_t budget, unsigned threads, std::uint64_t rows,
                      std::string_view what);

// C = A B into `out`, panel by panel (or slab by slab), in this process with the plan's
// OpenBLAS threads. Checks for interrupts, the deadline and `stop` between steps.
void multiply_panels(const Product& p, const NpyMapping& a, const NpyMapping& b,
                     const NpyOutput& out, const PanelPlan& plan, std::stop_token stop);

// The out-of-core plan of `p` when B does not fit beside a step of rows within `budget`:
// computes C into `out` (slabs or panels), fills the report's figures and returns true; false
// (nothing done) when the row streaming serves or the product is not two matrices.
bool multiply_out_of_core(const Product& p, const NpyMapping& a, const NpyMapping& b,
                          const NpyOutput& out, const Options& options, std::uint64_t budget,
                          Report& report);

}  // namespace shmgemm::detail
