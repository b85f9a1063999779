#include "mpi/grid.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

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
  const Grid* best = nullptr;
  for (const Grid& g : grids)
    if (g.memory_per_rank <= memory_per_rank &&
        (best == nullptr || g.bytes_read < best->bytes_read))
      best = &g;
  // Rows only (grids.front()), where it fits, unless a grid moves less than half as much: its
  // B travels between nodes by MPI, a grid's panels come from the file system.
  const Grid& rows = grids.front();
  if (rows.memory_per_rank <= memory_per_rank && best != nullptr &&
      rows.bytes_read <= 2 * best->bytes_read)
    return rows;
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

std::string scaling_table(const GridInput& product, std::span<const unsigned> nodes,
                          unsigned ranks_per_node, std::uint64_t memory_per_rank) {
  const double a = double(product.m) * double(product.k) * double(product.a_item),
               b = double(product.k) * double(product.n) * double(product.b_item),
               c = double(product.m) * double(product.n) * double(product.c_item);
  const auto size = [](double x) { return bytes_string(std::uint64_t(x)); };
  std::string t = fmt::format(
      "| nodes | ranks | rows only: a rank holds / moved | chosen grid | its rank holds / "
      "moved | SUMMA: a rank holds / moved | 2.5-D (copies): a rank holds / moved | lower "
      "bound on moved |\n|---|---|---|---|---|---|---|---|\n");
  for (unsigned n : nodes) {
    GridInput in = product;
    in.nodes = n;
    in.ranks = n * ranks_per_node;
    const double p = in.ranks;
    const Grid rows = grid_of(in, in.ranks, 1);
    std::string chosen = "none fits", chosen_figures = "";
    try {
      const Grid g = choose_grid(in, memory_per_rank);
      chosen = fmt::format("{} x {}", g.rows, g.cols);
      chosen_figures =
          fmt::format("{} / {}", size(double(g.memory_per_rank)), size(double(g.bytes_read)));
    } catch (const Error&) {
    }
    // SUMMA: every block of A broadcast along its row of the grid, every block of B along its
    // column; a rank holds its blocks of A, B and C and one panel of each operand in flight.
    const double q = std::sqrt(p);
    const double summa_memory = (2 * a + 2 * b + c) / p, summa_moved = (a + b) * q;
    // 2.5-D: `copies` replicas of the operands cut what moves by sqrt(copies).
    const double copies = std::max(
        1.0,
        std::min(std::floor(std::cbrt(p)), std::floor(double(memory_per_rank) * p / (a + b + c))));
    const double d25_memory = copies * (a + b + c) / p, d25_moved = (a + b) * std::sqrt(p / copies);
    const double s_elements = double(memory_per_rank) / double(product.c_item);
    const double bound = 2.0 * double(product.m) * double(product.n) * double(product.k) /
                         std::sqrt(s_elements) * double(product.c_item);
    t += fmt::format("| {} | {} | {} / {} | {} | {} | {} / {} | {} / {} ({:g}) | {} |\n", n,
                     in.ranks, size(double(rows.memory_per_rank)), size(double(rows.bytes_read)),
                     chosen, chosen_figures, size(summa_memory), size(summa_moved),
                     size(d25_memory), size(d25_moved), copies, size(bound));
  }
  return t;
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
