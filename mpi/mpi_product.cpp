#include "mpi/mpi_product.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>

#include "common/clock.hpp"
#include "common/fd.hpp"
#include "common/mapped_file.hpp"
#include "common/npy.hpp"
#include "common/npy_file.hpp"
#include "common/promote.hpp"
#include "common/segment.hpp"
#include "engine/plan.hpp"
#include "engine/product.hpp"
#include "engine/tooling.hpp"
#include "mpi/agree.hpp"
#include "mpi/heartbeat.hpp"
#include "mpi/temp_output.hpp"
#include "worker/test_fault.hpp"

namespace shmgemm::mpi {
namespace {

using Clock = std::chrono::steady_clock;

// The operands as the headers describe them.
struct Operand {
  std::string path;
  NpyHeader header;
  bool fortran = false;  // a Fortran-order 2-D array (a 1-D one is the same in either order)
};

struct Checked {
  Operand a, b;
  std::optional<NpyMapping> a_map;  // A, mapped and checked; its rows are used in place
  std::optional<NpyMapping> b_map;  // B, the same (used in place on one node)
  MatmulShape shape;
  DType dtype = DType::float64;
  NpyHeader out;  // C's header as it will be written
  std::string out_header_bytes;
  // What this rank sees at A's and B's paths: dtype, shape, order, size and a hash of sampled
  // bytes, readable up to the '#'. Ranks compare theirs with rank 0's.
  std::string seen;
};

// "(300,200) float64 C, 480128 bytes": a file as this rank sees it, for the cross-check.
std::string describe_file(const NpyMapping& f) {
  const NpyHeader& h = f.header();
  return fmt::format("{} {} {}, {} bytes", shape_string(h.shape), dtype_name(h.dtype),
                     h.fortran_order ? "Fortran order" : "C order", h.data_offset + h.data_bytes);
}

// FNV-1a over up to 4 KiB at the start, the middle and the end of the data: the same file on
// every node hashes the same; a stale or node-local copy almost surely does not.
std::uint64_t sampled_hash(const NpyMapping& f) {
  const std::uint64_t bytes = f.header().data_bytes, chunk = std::min<std::uint64_t>(bytes, 4096);
  std::uint64_t h = 1469598103934665603ULL;
  for (const std::uint64_t at : {std::uint64_t{0}, (bytes - chunk) / 2, bytes - chunk})
    for (std::uint64_t i = 0; i < chunk; ++i) {
      h ^= static_cast<std::uint8_t>(f.data()[at + i]);
      h *= 1099511628211ULL;
    }
  return h;
}

// The same checks and messages as `shmgemm multiply`, plus what this program does not take.
Checked check_operands(const std::filesystem::path& a_path, const std::filesystem::path& b_path,
                       const std::filesystem::path& out_path) {
  Checked c;
  const NpyMapping& a = c.a_map.emplace(NpyMapping::open(a_path));
  const NpyMapping& b = c.b_map.emplace(NpyMapping::open(b_path));
  c.seen = fmt::format("{}: {}; {}: {}#{:016x}{:016x}", a.path(), describe_file(a), b.path(),
                       describe_file(b), sampled_hash(a), sampled_hash(b));
  c.shape = detail::npy_matmul_shape(a, b);
  const DType da = a.header().dtype, db = b.header().dtype;
  // numpy's result dtype (the engine refuses what it cannot compute, float16, with its words).
  c.dtype = result_type(da, db);
  // After the operands, as `shmgemm multiply` does.
  check_output_path(out_path);
  c.a = {a.path(), a.header(), a.header().fortran_order && a.header().shape.size() == 2};
  c.b = {b.path(), b.header(), b.header().fortran_order && b.header().shape.size() == 2};
  c.out_header_bytes = format_npy_header(c.dtype, c.shape.out_shape);
  c.out = parse_npy_header(c.out_header_bytes, out_path.string());
  return c;
}

// The slowest rank's value of `x`, on every rank.
double slowest(double x) {
  double most = 0;
  check(MPI_Allreduce(&x, &most, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce");
  return most;
}

// Reserves the output's blocks, so that a full disk fails here and not halfway through.
void reserve(const std::string& path, std::uint64_t bytes, const std::string& target) {
  const Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd)
    throw Error(ErrorCode::resource,
                fmt::format("{}: cannot open {}: {}", target, path, std::strerror(errno)));
  int rc = bytes > 0 ? ::posix_fallocate(fd.get(), 0, static_cast<off_t>(bytes)) : 0;
  // A file system without fallocate: the size at least, for the ranks that map the file.
  if (rc == EOPNOTSUPP && ::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) rc = errno;
  if (rc != 0 && rc != EOPNOTSUPP)
    throw Error(ErrorCode::resource, fmt::format("{}: cannot reserve {} bytes for the output: {}",
                                                 target, bytes, std::strerror(rc)));
}

constexpr std::uint64_t kPage = 4096;

// The offset in elements of matrix `index` of a stack (C order over `batch_shape`) in an
// operand whose strides along those axes are `strides` (0 where it is broadcast).
std::uint64_t batch_offset(std::uint64_t index, const std::vector<std::uint64_t>& batch_shape,
                           const std::vector<std::uint64_t>& strides) {
  std::uint64_t offset = 0;
  for (std::size_t d = batch_shape.size(); d-- > 0;) {
    offset += (index % batch_shape[d]) * strides[d];
    index /= batch_shape[d];
  }
  return offset;
}

std::unique_ptr<std::byte[]> buffer(std::uint64_t bytes) {
  return std::make_unique_for_overwrite<std::byte[]>(std::max<std::uint64_t>(bytes, 1));
}

}  // namespace

MpiReport multiply_mpi(const Topology& topo, const std::filesystem::path& a_path,
                       const std::filesystem::path& b_path, const std::filesystem::path& out_path,
                       const MpiOptions& options) {
  const auto start = Clock::now();
  // A lost rank or node, or --timeout, ends the job in bounded time, the output as it was.
  Heartbeat heartbeat(topo, options.lost_after, options.timeout, [] { remove_temp_output(); });
  heartbeat.step("checking the operands");
  MpiReport r;
  r.ranks = topo.size;
  r.nodes = topo.nodes;
  r.one_rank_per_node = topo.one_rank_per_node;
  // On one node, the engine's way: B and C mapped, nothing copied into a window or written
  // through MPI-IO. Across nodes (or asked), B by MPI and C by collective MPI-IO.
  const bool one_node = topo.nodes == 1 && !options.mpi_io;
  r.b_from = options.b_from != BFrom::automatic ? options.b_from
             : one_node                         ? BFrom::map
                                                : BFrom::broadcast;
  if (r.b_from == BFrom::map && topo.nodes > 1)
    throw Error::bad_option(
        "--b-from", "--b-from map: the ranks are on more than one node; B is mapped only on one");
  r.c_mapped = one_node;

  // Check the operands on every rank: every rank reads them, and a file that only some ranks
  // can see is an error too.
  Checked c;
  on_all_ranks(MPI_COMM_WORLD, [&] { c = check_operands(a_path, b_path, out_path); });
  // The same paths may name other files on other nodes (node-local folders, a stale NFS
  // cache): every rank must see what rank 0 sees, or none computes.
  on_all_ranks(MPI_COMM_WORLD, [&] {
    const std::string root = broadcast_string(MPI_COMM_WORLD, c.seen, 0);
    if (root != c.seen) {
      const auto readable = [](const std::string& x) { return x.substr(0, x.rfind('#')); };
      throw Error(ErrorCode::bad_file,
                  fmt::format("rank {} on {} sees other operand files than rank 0 at the same "
                              "paths: here {}; on rank 0 {}{}",
                              topo.rank, topo.hosts[std::size_t(topo.rank)], readable(c.seen),
                              readable(root),
                              readable(c.seen) == readable(root) ? " (the contents differ)" : ""));
    }
  });
  r.base.m = c.shape.m;
  r.base.k = c.shape.k;
  r.base.n = c.shape.n;
  r.base.dtype = std::string(dtype_name(c.dtype));
  r.base.batch = c.shape.batch;
  r.base.a_shape = c.a.header.shape;
  r.base.b_shape = c.b.header.shape;
  r.base.shape = c.shape.out_shape;
  // The rows of C as the ranks share them: every matrix's of a stack, one after another.
  const std::uint64_t total_rows = c.shape.batch * c.shape.m;
  const bool stacked = !c.shape.batch_shape.empty();
  r.base.workers = static_cast<unsigned>(topo.size);
  r.base.backing = Backing::file;
  // Each operand's item, and the result's: they may differ (np.matmul's promotion).
  const std::size_t a_item = item_size(c.a.header.dtype), c_item = item_size(c.dtype);
  r.b_bytes = c.b.header.data_bytes;
  // The grid: of those that fit the memory a rank may hold, the one that moves the fewest
  // bytes to the ranks (rows only, with B once per node, on a tie; 2-D operands only).
  const bool two_d = !stacked && c.a.header.shape.size() == 2 && c.b.header.shape.size() == 2;
  const GridInput grid_in{
      c.shape.m, c.shape.k,           c.shape.n,           a_item, item_size(c.b.header.dtype),
      c_item,    unsigned(topo.size), unsigned(topo.nodes)};
  on_all_ranks(MPI_COMM_WORLD, [&] {
    r.memory_per_rank = options.memory_per_rank;
    if (options.grid_rows > 0) {
      if (std::uint64_t(options.grid_rows) * options.grid_cols != std::uint64_t(topo.size))
        throw Error::bad_option("--grid",
                                fmt::format("--grid {}x{}: the job has {} ranks", options.grid_rows,
                                            options.grid_cols, topo.size));
      if (options.grid_cols > 1 && !two_d)
        throw Error::bad_option("--grid", fmt::format("--grid {}x{}: a grid of more than one "
                                                      "column takes two 2-D operands",
                                                      options.grid_rows, options.grid_cols));
      r.grid = grid_of(grid_in, options.grid_rows, options.grid_cols);
      return;
    }
    if (r.memory_per_rank == 0) {
      // What this node's memory (or its cgroup) allows, shared among its ranks; the least
      // of any node.
      const std::uint64_t here = memory_available() / std::uint64_t(topo.node_size);
      check(MPI_Allreduce(&here, &r.memory_per_rank, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD),
            "MPI_Allreduce");
    }
    r.grid =
        two_d ? choose_grid(grid_in, r.memory_per_rank) : grid_of(grid_in, unsigned(topo.size), 1);
  });
  const bool panels = r.grid.cols > 1;
  if (panels) {
    if (options.b_from != BFrom::automatic)
      throw Error::bad_option("--b-from",
                              "--b-from: with a grid of more than one column, every "
                              "rank reads its column panel of B");
    r.b_from = BFrom::panel;
    r.c_mapped = false;
  }
  r.phases.validate = slowest(seconds_since(start));

  // The plan: every rank computes with the cores it owns, and gets rows in proportion to them.
  r.base.automatic = options.threads == 0;
  std::vector<unsigned> weights(static_cast<std::size_t>(topo.size));
  for (int i = 0; i < topo.size; ++i)
    weights[std::size_t(i)] = options.threads > 0 ? options.threads : topo.cores[std::size_t(i)];
  const detail::WorkSplit split =
      detail::split_work({total_rows, r.base.k, r.base.n, c.dtype, c.shape.batch, c_item},
                         std::span<const unsigned>(weights), /*kernel_rows=*/96);
  const Calibration calibration =
      total_rows * r.base.n * r.base.k > 0 ? load_calibration() : Calibration{};
  r.base.calibration = calibration.source;
  for (int i = 0; i < topo.size; ++i) {
    RankPart p;
    p.node = topo.node_of_rank[std::size_t(i)];
    p.host = topo.hosts[std::size_t(i)];
    // Rows only: rows in proportion to the cores; a grid: rank i is row panel i / cols and
    // column panel i % cols.
    p.rows = panels ? partition_rows(c.shape.m, r.grid.rows, std::size_t(i) / r.grid.cols, 1)
                    : split.rows[std::size_t(i)];
    p.cols = panels ? partition_rows(c.shape.n, r.grid.cols, std::size_t(i) % r.grid.cols, 1)
                    : RowRange{0, c.shape.n};
    p.threads = weights[std::size_t(i)];
    p.predicted_seconds =
        p.rows.size() == 0 || p.cols.size() == 0
            ? 0
            : detail::predict_in_process({p.rows.size(), r.base.k, p.cols.size(), c.dtype},
                                         p.threads, calibration);
    r.parts.push_back(std::move(p));
  }
  r.base.threads_per_worker = r.parts.empty() ? 0 : r.parts[0].threads;
  const RankPart& mine = r.parts[std::size_t(topo.rank)];
  const std::string on_nodes =
      fmt::format("{} ranks on {} node{}", topo.size, topo.nodes, topo.nodes == 1 ? "" : "s");
  const Grid rows_only = grid_of(grid_in, unsigned(topo.size), 1);
  if (panels)
    r.base.plan_reason = fmt::format(
        "{} as a {} x {} grid: each computes a block of C from a row panel of A and a column "
        "panel of B ({} a rank, {} read in all; rows only: {} a rank{})",
        on_nodes, r.grid.rows, r.grid.cols, bytes_string(r.grid.memory_per_rank),
        bytes_string(r.grid.bytes_read), bytes_string(rows_only.memory_per_rank),
        options.grid_rows > 0
            ? std::string(", the grid asked for by --grid")
            : fmt::format(", {} read; a rank may hold {}", bytes_string(rows_only.bytes_read),
                          bytes_string(r.memory_per_rank)));
  else
    r.base.plan_reason = fmt::format(
        "{}; each computes a block of rows of C in proportion to its {} "
        "({} rows each at most){}",
        on_nodes, r.base.automatic ? "cores (OpenBLAS threads = the cores it owns)" : "--threads",
        std::max_element(
            r.parts.begin(), r.parts.end(),
            [](const RankPart& x, const RankPart& y) { return x.rows.size() < y.rows.size(); })
            ->rows.size(),
        topo.one_rank_per_node ? "; every rank is its own node (--one-rank-per-node)" : "");

  // The output: a temporary file beside the target, named by rank 0, sized and reserved.
  heartbeat.step("opening the output");
  auto t = Clock::now();
  TempOutput temp(MPI_COMM_WORLD, out_path);
  const std::uint64_t out_bytes = c.out.data_offset + c.out.data_bytes;
  std::optional<File> out;
  on_all_ranks(MPI_COMM_WORLD, [&] {
    out.emplace(MPI_COMM_WORLD, temp.path(), MPI_MODE_CREATE | MPI_MODE_EXCL | MPI_MODE_WRONLY,
                ErrorCode::resource);
  });
  on_all_ranks(MPI_COMM_WORLD, [&] {
    if (topo.rank == 0) {
      temp.note_lock_file();
      temp.keep_mode();
      reserve(temp.path(), out_bytes, out_path.string());
    }
  });
  r.phases.open_output = slowest(seconds_since(t));

  // B: once per node, mapped from the file, or in a window every rank of the node maps.
  heartbeat.step("reading B");
  t = Clock::now();
  const std::byte* b_data = nullptr;
  std::optional<SharedWindow> b_window;
  std::unique_ptr<std::byte[]> b_panel;
  const std::uint64_t width = mine.cols.size();
  if (r.b_from == BFrom::panel) {
    // This rank's columns of B, every row of them, read through an MPI-IO view: column-major
    // (ld = k) for a Fortran-order B, else row-major (ld = its width).
    const std::uint64_t bytes = r.base.k * width * item_size(c.b.header.dtype);
    on_all_ranks(MPI_COMM_WORLD, [&] {
      b_panel = buffer(bytes);
      File b_file(MPI_COMM_WORLD, c.b.path, MPI_MODE_RDONLY, ErrorCode::bad_file);
      std::optional<Datatype> view;
      if (bytes > 0)
        view.emplace(block_type(r.base.k, r.base.n, item_size(c.b.header.dtype), c.b.fortran, 0,
                                r.base.k, mine.cols.begin, mine.cols.end));
      b_file.set_view(c.b.header.data_offset, bytes > 0 ? view->get() : MPI_BYTE);
      b_file.read_all(MPI_COMM_WORLD, b_panel.get(), bytes);
      b_file.close();
    });
    r.b_bytes_read = bytes;
    b_data = b_panel.get();
    c.b_map.reset();
  } else if (r.b_from == BFrom::map) {
    b_data = c.b_map->data();
    r.b_bytes_read = topo.rank == 0 ? r.b_bytes : 0;  // one node's page cache reads it once
  } else {
    on_all_ranks(MPI_COMM_WORLD, [&] { b_window.emplace(topo.node.get(), r.b_bytes); });
    // The ranks of a node that reads B each read a part of it (at page boundaries), in parallel.
    const bool node_reads_b = r.b_from == BFrom::path || topo.node_index == 0;
    const std::uint64_t pages = (r.b_bytes + kPage - 1) / kPage;
    const RowRange my_pages =
        partition_rows(pages, std::size_t(topo.node_size), std::size_t(topo.node_rank), 1);
    const std::uint64_t part_begin = std::min(r.b_bytes, my_pages.begin * kPage);
    const std::uint64_t part_bytes = std::min(r.b_bytes, my_pages.end * kPage) - part_begin;
    on_all_ranks(MPI_COMM_WORLD, [&] {
      if (!node_reads_b || part_bytes == 0) return;
      File b_file(MPI_COMM_SELF, c.b.path, MPI_MODE_RDONLY, ErrorCode::bad_file);
      b_file.set_view(c.b.header.data_offset + part_begin);
      b_file.read_all(MPI_COMM_SELF, b_window->data() + part_begin, part_bytes);
      b_file.close();
    });
    // Then the first node's leader sends it to the other nodes' leaders.
    on_all_ranks(MPI_COMM_WORLD, [&] {
      b_window->fence();
      if (r.b_from == BFrom::broadcast && topo.node_rank == 0 && topo.nodes > 1)
        broadcast(topo.leaders.get(), 0, b_window->data(), r.b_bytes);
      b_window->fence();
    });
    r.b_bytes_read = node_reads_b && part_bytes > 0 ? part_bytes : 0;
    b_data = b_window->data();
    c.b_map.reset();
  }
  r.phases.read_b = slowest(seconds_since(t));

  // This rank's rows of A: a mapping of the file, of which only these rows are ever touched
  // (C order: the rows are one contiguous range), or read through an MPI-IO view of them
  // (Fortran order, whose rows are strided, or --a-from read). A stack is always mapped: a
  // rank's rows may span several of its matrices, at their strides.
  heartbeat.step("reading A");
  temp.note_lock_file();  // (Open MPI may create it after the open)
  t = Clock::now();
  const std::uint64_t rows = mine.rows.size();
  const std::uint64_t a_bytes = rows * r.base.k * a_item;
  r.a_mapped = (options.a_from == AFrom::map && !c.a.fortran) || stacked;
  std::unique_ptr<std::byte[]> a_block;
  // Where A's rows are: the mapped file (every matrix, at the file's strides), or this rank's
  // block (its rows from the first, in the file's order).
  StackOperand a_here = c.shape.a;
  const std::byte* a_rows = nullptr;
  std::uint64_t a_first_row = 0;
  on_all_ranks(MPI_COMM_WORLD, [&] {
    if (r.a_mapped) {
      a_rows = c.a_map->data();
      return;
    }
    a_first_row = mine.rows.begin;
    a_here.row_stride = c.a.fortran ? 1 : r.base.k;
    a_here.col_stride = c.a.fortran ? rows : 1;
    a_block = buffer(a_bytes);
    a_rows = a_block.get();
    File a_file(MPI_COMM_WORLD, c.a.path, MPI_MODE_RDONLY, ErrorCode::bad_file);
    // An empty block reads nothing; its view is the plain bytes.
    const bool empty = rows == 0 || r.base.k == 0;
    std::optional<Datatype> view;
    if (!empty)
      view.emplace(
          row_block_type(r.base.m, r.base.k, a_item, c.a.fortran, mine.rows.begin, mine.rows.end));
    a_file.set_view(c.a.header.data_offset, empty ? MPI_BYTE : view->get());
    a_file.read_all(MPI_COMM_WORLD, a_block.get(), empty ? 0 : a_bytes);
    a_file.close();
  });
  r.phases.read_a = slowest(seconds_since(t));

  // The product of this rank's rows: into the mapped output on one node, else into this rank's
  // memory, written below.
  heartbeat.step("computing");
  temp.note_lock_file();
  t = Clock::now();
  const std::uint64_t c_bytes = rows * width * c_item;
  std::unique_ptr<std::byte[]> c_block;
  std::optional<boost::interprocess::mapped_region> c_map;
  std::byte* c_rows = nullptr;
  on_all_ranks(MPI_COMM_WORLD, [&] {
    if (r.c_mapped && out_bytes > 0) {
      c_map.emplace(map_whole_file(temp.path(), true));
      c_rows = static_cast<std::byte*>(c_map->get_address()) + c.out.data_offset +
               mine.rows.begin * r.base.n * c_item;
    } else {
      c_block = buffer(c_bytes);
      c_rows = c_block.get();
    }
  });
  on_all_ranks(MPI_COMM_WORLD, [&] {
    inject_test_fault(static_cast<std::size_t>(topo.rank), 0, [](std::string_view) {});
    if (rows == 0 || width == 0) return;
    // The engine's product of these rows, in this rank, as `shmgemm multiply` computes it:
    // every dtype and mix of dtypes, exact integers, 1-D operands; one call for each matrix of
    // a stack that the rows span.
    MatmulOptions options_here;
    options_here.in_process = true;
    options_here.threads = mine.threads;
    const std::uint64_t m = c.shape.m, k = r.base.k, n = width;
    const auto ia = std::int64_t(a_item), ib = std::int64_t(item_size(c.b.header.dtype));
    // B where this rank has it: the file's (mapped, or in the node's window), or its panel.
    StackOperand sb = c.shape.b;
    if (panels) {
      sb.row_stride = c.b.fortran ? 1 : width;
      sb.col_stride = c.b.fortran ? k : 1;
    }
    for (std::uint64_t matrix = mine.rows.begin / m; matrix * m < mine.rows.end; ++matrix) {
      const std::uint64_t lo = std::max(mine.rows.begin, matrix * m);
      const std::uint64_t hi = std::min(mine.rows.end, (matrix + 1) * m);
      const std::uint64_t a_at =
          batch_offset(matrix, c.shape.batch_shape, a_here.broadcast_strides) +
          (lo - matrix * m - (r.a_mapped ? 0 : a_first_row)) * a_here.row_stride;
      const ArrayView a(
          a_rows + a_at * a_item, c.a.header.dtype, {std::int64_t(hi - lo), std::int64_t(k)},
          {std::int64_t(a_here.row_stride) * ia, std::int64_t(a_here.col_stride) * ia});
      const ArrayView b(b_data + batch_offset(matrix, c.shape.batch_shape, sb.broadcast_strides) *
                                     std::uint64_t(ib),
                        c.b.header.dtype, {std::int64_t(k), std::int64_t(n)},
                        {std::int64_t(sb.row_stride) * ib, std::int64_t(sb.col_stride) * ib});
      const MutableArrayView c_view(c_rows + (lo - mine.rows.begin) * n * c_item, c.dtype,
                                    {std::int64_t(hi - lo), std::int64_t(n)});
      static_cast<void>(matmul_into(a, b, c_view, options_here));
    }
  });
  a_block.reset();
  c.a_map.reset();
  c.b_map.reset();
  const double compute = seconds_since(t);
  r.base.compute_seconds = slowest(compute);
  r.phases.compute = r.base.compute_seconds;

  // C: the header by rank 0, and every rank's rows at their offset, collectively (unless they
  // are in place already).
  heartbeat.step("writing C");
  temp.note_lock_file();
  t = Clock::now();
  on_all_ranks(MPI_COMM_WORLD, [&] {
    if (topo.rank == 0) {
      MPI_Status status;
      check(MPI_File_write_at(out->get(), 0, c.out_header_bytes.data(),
                              static_cast<int>(c.out_header_bytes.size()), MPI_BYTE, &status),
            fmt::format("{}: write", temp.path()));
    }
  });
  on_all_ranks(MPI_COMM_WORLD, [&] {
    c_map.reset();
    if (panels) {
      // Its block of C through a view of it in the output.
      std::optional<Datatype> view;
      if (c_bytes > 0)
        view.emplace(block_type(r.base.m, r.base.n, c_item, false, mine.rows.begin, mine.rows.end,
                                mine.cols.begin, mine.cols.end));
      out->set_view(c.out.data_offset, c_bytes > 0 ? view->get() : MPI_BYTE);
      out->write_all(MPI_COMM_WORLD, c_block.get(), c_bytes);
    } else if (!r.c_mapped) {
      out->write_at_all(MPI_COMM_WORLD, c.out.data_offset + mine.rows.begin * r.base.n * c_item,
                        c_block.get(), c_bytes);
    }
    out->close();
  });
  c_block.reset();
  r.phases.write_c = slowest(seconds_since(t));

  // Every rank succeeded: rank 0 puts the file in place.
  on_all_ranks(MPI_COMM_WORLD, [&] { temp.commit(); });
  r.base.seconds = seconds_since(start);

  r.b_bytes_between_nodes =
      r.b_from == BFrom::broadcast ? r.b_bytes * std::uint64_t(topo.nodes - 1) : 0;
  std::uint64_t read_total = 0;
  check(MPI_Reduce(&r.b_bytes_read, &read_total, 1, MPI_UINT64_T, MPI_SUM, 0, MPI_COMM_WORLD),
        "MPI_Reduce");
  r.b_bytes_read = read_total;
  return r;
}

}  // namespace shmgemm::mpi
