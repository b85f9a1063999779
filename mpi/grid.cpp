#include "mpi/grid.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "shmgemm/error.hpp"

namespace shmgemm::mpi {
namespace {

std::uint64_t ceil_div(std::uint64_t x, std::uint64_t y) {
  return (x + y - 1) / y;
}

}  // namespace

Grid grid_of(const GridInput& in, unsigned rows, unsigned cols) {
  const std::uint64_t a = in.m * in.k * in.a_item, b = in.k * in.n * in.b_item,
                      c = in.m * in.n * in.c_item, ranks = std::uint64_t(rows) * cols;
  Grid g{rows, cols, 0, 0};
  if (cols == 1) {
    g.memory_per_rank = ceil_div(a, ranks) + ceil_div(b * in.nodes, ranks) + ceil_div(c, ranks);
    g.bytes_read = a + b * in.nodes;
  } else {
    g.memory_per_rank = ceil_div(a, rows) + ceil_div(b, cols) + ceil_div(c, ranks);
    g.bytes_read = a * cols + b * rows;
  }
  return g;
}

std::vector<Grid> all_grids(const GridInput& in) {
  std::vector<Grid> grids;
  for (unsigned cols = 1; cols <= in.ranks; ++cols)
    if (in.ranks % cols == 0) grids.push_back(grid_of(in, in.ranks / cols, cols));
  return grids;
}

Grid choose_grid(const GridInput& in, std::uint64_t memory_per_rank) {
  const std::vector<Grid> grids = all_grids(in);
  if (grids.front().memory_per_rank <= memory_per_rank) return grids.front();
  const Grid* best = nullptr;
  for (const Grid& g : grids)
    if (g.memory_per_rank <= memory_per_rank &&
        (best == nullptr || g.bytes_read < best->bytes_read))
      best = &g;
  if (best != nullptr) return *best;
  const Grid& least = *std::min_element(
      grids.begin(), grids.end(),
      [](const Grid& x, const Grid& y) { return x.memory_per_rank < y.memory_per_rank; });
  throw Error(ErrorCode::resource,
              fmt::format("--memory-per-rank {}: too little for this product on {} ranks; the "
                          "least any grid needs is {} a rank ({} x {})",
                          bytes_string(memory_per_rank), in.ranks,
                          bytes_string(least.memory_per_rank), least.rows, least.cols));
}

std::string bytes_string(std::uint64_t bytes) {
  constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double x = double(bytes);
  std::size_t u = 0;
  while (x >= 1024 && u + 1 < std::size(kUnits)) {
    x /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.3g} {}", x, kUnits[u]);
}

}  // namespace shmgemm::mpi
