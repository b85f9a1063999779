// The ranks as a grid of P_r x P_c: rank (i, j) computes the block of C of row panel i and
// column panel j, from A's row panel i and B's column panel j, so that it holds |A|/P_r + |B|/P_c
// + |C|/P bytes and B need not fit in one node. One column (P_c = 1) is the row decomposition,
// where the ranks of a node share one copy of all of B. A pure model: no MPI, no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace shmgemm::mpi {

struct GridInput {
  std::uint64_t m = 0, k = 0, n = 0;
  std::size_t a_item = 8, b_item = 8, c_item = 8;
  unsigned ranks = 1, nodes = 1;
};

struct Grid {
  unsigned rows = 1, cols = 1;
  // The bytes a rank holds: its panel of A, its panel of B (rows only: its share of its node's
  // copy of B) and its block of C.
  std::uint64_t memory_per_rank = 0;
  // A's and B's bytes that reach the ranks, all together: each panel of A once per column of
  // the grid, each panel of B once per row (rows only: A once, B once per node).
  std::uint64_t bytes_read = 0;
};

// The figures of the grid rows x cols (rows * cols = in.ranks).
Grid grid_of(const GridInput& in, unsigned rows, unsigned cols);

// Every grid of in.ranks ranks, rows only first, then by the columns.
std::vector<Grid> all_grids(const GridInput& in);

// The grid for `in` within `memory_per_rank` bytes: rows only where it fits, unless a grid
// that fits moves less than half as many bytes to the ranks; else, of the grids that fit, the
// one that moves the fewest. Throws Error(resource) naming --memory-per-rank, with the least
// any grid needs, when none fits.
Grid choose_grid(const GridInput& in, std::uint64_t memory_per_rank);

// The model at scale, as `shmgemm-mpi --plan-only` prints it: for each node count, the bytes a
// rank holds and the bytes that reach the ranks in all, for the row decomposition, the grid
// choose_grid() picks within `memory_per_rank`, SUMMA on a sqrt(P) x sqrt(P) grid, 2.5-D with
// as many copies as the memory allows (at most P^(1/3)), and the lower bound on the bytes moved
// for a rank holding `memory_per_rank` (Kwasniewski et al., "Red-blue pebbling revisited", SC'19:
// 2mnk / sqrt(S) elements in all, S the elements a rank holds). A Markdown table.
std::string scaling_table(const GridInput& product, std::span<const unsigned> nodes,
                          unsigned ranks_per_node, std::uint64_t memory_per_rank);

// "12.5 GiB": bytes for messages.
std::string bytes_string(std::uint64_t bytes);

}  // namespace shmgemm::mpi
