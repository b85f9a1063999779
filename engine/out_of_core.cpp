#include "engine/out_of_core.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <type_traits>

#include "common/clock.hpp"
#include "common/fd.hpp"
#include "common/segment.hpp"
#include "engine/interrupt.hpp"
#include "shmgemm/error.hpp"

namespace shmgemm::detail {
namespace {

constexpr std::uint64_t kPanelMiB = std::uint64_t{1} << 20;
// What the process itself and OpenBLAS's buffers take besides the operands' panels and steps.
constexpr std::uint64_t kProcessBytes = 64 * kPanelMiB, kThreadBytes = 16 * kPanelMiB;
// The disk is read a chunk of this many bytes at a time, the next one prefetched.
constexpr std::uint64_t kReadChunkBytes = 32 * kPanelMiB;
// A step of A's rows aims at this many bytes (fewer rows when the budget is small).
constexpr std::uint64_t kStepBytes = 64 * kPanelMiB;
// A panel's piece of each row of B narrower than this is read through a packed scratch file.
constexpr std::uint64_t kWidePiece = 64 * 1024;

std::string mib_string(std::uint64_t bytes) {
  return fmt::format("{:.0f} MiB", double(bytes) / double(kPanelMiB));
}

// Bytes a product converts per element of A and of B besides the operands themselves: nothing
// for one BLAS dtype throughout, else room for conversions and integer limbs.
std::uint64_t conversion_bytes(const Product& p) {
  const bool direct = p.a.dtype == p.b.dtype && p.b.dtype == p.result && is_blas_type(p.result);
  return direct ? 0 : 40;
}

bool c_order(const StackOperand& s) {
  return s.cols <= 1 || s.col_stride == 1;
}

// The scratch file's reads and writes: `err` as pread_all / pwrite_all return it.
void check_scratch(int err, const std::string& what, std::string_view action) {
  if (err != 0)
    throw Error(ErrorCode::resource, fmt::format("{}: cannot {}: {}", what, action,
                                                 err > 0 ? std::strerror(err) : "end of file"));
}

// An unnamed file in `dir` (on the output's disk, not in memory): nothing to remove if the
// process dies.
Fd scratch_file(const std::filesystem::path& dir) {
  Fd fd(::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (!fd && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
    std::string name = (dir / ".shmgemm-panels-XXXXXX").string();
    fd.reset(::mkostemp(name.data(), O_CLOEXEC));
    if (fd) ::unlink(name.c_str());
  }
  if (!fd)
    throw Error(ErrorCode::resource, fmt::format("{}: cannot create a scratch file for B's panels: "
                                                 "{}",
                                                 dir.string(), std::strerror(errno)));
  return fd;
}

// What multiply_panels does, within the budget.
struct PanelPlan {
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

// The panels' columns: [begin, end) of panel `i`.
struct Columns {
  std::uint64_t begin = 0, end = 0;
  std::uint64_t width() const { return end - begin; }
};
Columns panel_columns(const PanelPlan& plan, std::uint64_t n, std::uint64_t i) {
  return {i * plan.panel_columns, std::min(n, (i + 1) * plan.panel_columns)};
}

// Whether `p` can be taken in panels: two matrices (or a vector and a matrix) from files.
bool panels_apply(const Product& p) {
  return p.shape.batch == 1 && p.shape.batch_shape.empty() && p.a.label.size() > 0 &&
         p.b.label.size() > 0;
}

// The plan of `p` within `budget` bytes, for at most `threads` OpenBLAS threads; `rows` the rows
// per step when the caller chose them (0: from the budget). panels 1 without slabs: B fits whole
// beside a step of rows. Throws Error(resource) naming `what` (the option, or "the memory
// available") when nothing fits, with the least that would do.
PanelPlan plan_panels(const Product& p, std::uint64_t budget, unsigned threads, std::uint64_t rows,
                      std::string_view what) {
  const std::uint64_t m = p.shape.m, k = p.shape.k, n = p.shape.n;
  const std::uint64_t convert = conversion_bytes(p);
  const std::uint64_t a_row = k * (item_size(p.a.dtype) + convert);
  const std::uint64_t b_column = k * (item_size(p.b.dtype) + convert);
  const std::uint64_t c_row = n * (item_size(p.result) + convert);
  const std::uint64_t c_bytes = m * n * item_size(p.result);
  PanelPlan plan;
  // OpenBLAS's buffers grow with its threads: no more than an eighth of the budget for them.
  plan.threads = unsigned(std::clamp<std::uint64_t>(budget / 8 / kThreadBytes, 1, threads));
  const std::uint64_t fixed = kProcessBytes + kThreadBytes * plan.threads;
  // A's steps: two in memory at once (the one computed, the next one read ahead).
  plan.rows_per_step =
      rows != 0 ? rows : std::clamp<std::uint64_t>(std::min(kStepBytes, budget / 16) / a_row, 1, m);
  plan.rows_per_step = std::min(plan.rows_per_step, std::max<std::uint64_t>(m, 1));
  plan.c_resident = c_bytes <= budget / 8;
  // Besides B's panel: the steps of `r` rows, C when it stays, the chunks read from the disk.
  const std::uint64_t held_besides = fixed + (plan.c_resident ? c_bytes : 0) + 2 * kReadChunkBytes;
  auto columns_for = [&](std::uint64_t r) {
    const std::uint64_t taken = held_besides + r * (2 * a_row + c_row);
    return budget > taken ? (budget - taken) / b_column : 0;
  };
  // Steps of A take at most a quarter of what is left for B's panel and A's steps: the panel's
  // width decides how often A is read, the steps only how long each OpenBLAS call is.
  if (rows == 0 && budget > held_besides)
    plan.rows_per_step = std::clamp<std::uint64_t>(
        (budget - held_besides) / 4 / (2 * a_row + c_row), 1, plan.rows_per_step);
  std::uint64_t columns = columns_for(plan.rows_per_step);
  if (columns >= n) return plan;  // B fits whole: rows streamed past it
  // C and a sum of slabs in memory, a slab of A and of B read and the next read ahead: when
  // slabs deep enough for OpenBLAS fit, A and B are read once instead of A once per panel.
  const std::uint64_t per_k =
      2 * (m * (item_size(p.a.dtype) + convert) + n * (item_size(p.b.dtype) + convert));
  const std::uint64_t held = fixed + 2 * c_bytes, least_depth = std::min<std::uint64_t>(k, 256);
  const std::uint64_t depth = budget > held ? std::min(k, (budget - held) / per_k) : 0;
  if (depth >= least_depth) {
    plan.panels_instead = columns > 0 ? (n + columns - 1) / columns : 0;
    const std::uint64_t slabs = (k + depth - 1) / depth;
    plan.slab_depth = (k + slabs - 1) / slabs;
    plan.panel_columns = n;
    plan.rows_per_step = m;
    plan.c_resident = true;
    return plan;
  }
  if (columns == 0 && rows == 0 && budget > held_besides + b_column) {
    // Fewer rows a step, as many as leave room for one column of B.
    plan.rows_per_step =
        std::min(plan.rows_per_step, (budget - held_besides - b_column) / (2 * a_row + c_row));
    if (plan.rows_per_step > 0) columns = columns_for(plan.rows_per_step);
  }
  if (columns == 0) {
    const std::uint64_t step_rows = rows != 0 ? rows : 1;
    const std::uint64_t least = std::min(held_besides + step_rows * (2 * a_row + c_row) + b_column,
                                         held + per_k * least_depth);
    throw Error(ErrorCode::resource,
                fmt::format("{}: {} is too little for this product out of core: it needs at "
                            "least {} ({} of A and of C and one column of B, or C twice and "
                            "slabs {} deep of A and B, besides the process's own buffers)",
                            what, mib_string(budget), mib_string(least),
                            rows != 0 ? fmt::format("--rows-per-step {} rows", rows)
                                      : std::string("one row"),
                            least_depth));
  }
  plan.panels = (n + columns - 1) / columns;
  plan.panel_columns = (n + plan.panels - 1) / plan.panels;
  plan.packed = plan.panels > 1 && c_order(p.shape.b) &&
                plan.panel_columns * item_size(p.b.dtype) < kWidePiece;
  return plan;
}

// A slab [k0, k0 + depth) of an operand along k, as pieces of its file: one piece for each of
// A's rows (B's columns) when k runs along them, else one piece. `k_is_cols`: the operand is A.
struct Slab {
  std::uint64_t along = 0, across = 0, count = 0;  // strides along and across k; extent across
  bool piecewise = false;
  Slab(const StackOperand& s, bool k_is_cols)
      : along(k_is_cols ? s.col_stride : s.row_stride),
        across(k_is_cols ? s.row_stride : s.col_stride),
        count(k_is_cols ? s.rows : s.cols),
        piecewise(along == 1 && count > 1) {}
  template <class F>
  void pieces(std::uint64_t k0, std::uint64_t depth, std::uint64_t item, F&& f) const {
    if (piecewise)
      for (std::uint64_t x = 0; x < count; ++x)
        f((x * across + k0) * item, depth * item);
    else
      f(k0 * along * item, ((depth - 1) * along + (count - 1) * across + 1) * item);
  }
  // Its strides (elements) along and across k once its pieces are read one after the other.
  std::pair<std::int64_t, std::int64_t> read_strides(std::uint64_t depth) const {
    return piecewise ? std::pair{std::int64_t(1), std::int64_t(depth)}
                     : std::pair{std::int64_t(along), std::int64_t(across)};
  }
};

// c += t, elementwise, `elements` of `dtype` (integers wrap around, as numpy's do).
void accumulate(std::byte* c, const std::byte* t, std::uint64_t elements, DType dtype) {
  visit_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    auto* x = reinterpret_cast<T*>(c);
    const auto* y = reinterpret_cast<const T*>(t);
    if constexpr (std::is_integral_v<T>) {
      using U = std::make_unsigned_t<T>;
      for (std::uint64_t i = 0; i < elements; ++i)
        x[i] = T(U(U(x[i]) + U(y[i])));
    } else {
      for (std::uint64_t i = 0; i < elements; ++i)
        x[i] += y[i];
    }
  });
}

// C = the sum over slabs of A[:, slab] B[slab, :]: each slab read into memory and dropped from
// the page cache, the next one read ahead by the kernel while this one is computed.
void multiply_slabs(const Product& p, const NpyMapping& a, const NpyMapping& b,
                    const NpyOutput& out, const PanelPlan& plan, const MatmulOptions& here) {
  const std::uint64_t m = p.shape.m, k = p.shape.k, n = p.shape.n;
  const std::uint64_t ia = item_size(p.a.dtype), ib = item_size(p.b.dtype),
                      ic = item_size(p.result);
  const Slab sa(p.shape.a, true), sb(p.shape.b, false);
  const std::uint64_t depth = plan.slab_depth;
  const std::unique_ptr<std::byte[]> a_slab(new std::byte[m * depth * ia]),
      b_slab(new std::byte[depth * n * ib]), sum(k > depth ? new std::byte[m * n * ic] : nullptr);
  auto prefetch = [&](std::uint64_t k0) {
    if (k0 >= k) return;
    const std::uint64_t d = std::min(depth, k - k0);
    sa.pieces(k0, d, ia, [&](std::uint64_t at, std::uint64_t bytes) { a.prefetch(at, bytes); });
    sb.pieces(k0, d, ib, [&](std::uint64_t at, std::uint64_t bytes) { b.prefetch(at, bytes); });
  };
  auto load = [](const Slab& s, const NpyMapping& f, std::byte* to, std::uint64_t k0,
                 std::uint64_t d, std::uint64_t item) {
    s.pieces(k0, d, item, [&](std::uint64_t at, std::uint64_t bytes) {
      f.read(at, bytes, to);
      f.evict(at, bytes);
      to += bytes;
    });
  };
  const MutableArrayView c_view(out.data(), p.result, {std::int64_t(m), std::int64_t(n)});
  prefetch(0);
  for (std::uint64_t k0 = 0; k0 < k; k0 += depth) {
    throw_if_interrupted();
    const std::uint64_t d = std::min(depth, k - k0);
    load(sa, a, a_slab.get(), k0, d, ia);
    load(sb, b, b_slab.get(), k0, d, ib);
    prefetch(k0 + depth);
    const auto [a_along, a_across] = sa.read_strides(d);
    const auto [b_along, b_across] = sb.read_strides(d);
    const auto sia = std::int64_t(ia), sib = std::int64_t(ib);
    const ArrayView a_view(a_slab.get(), p.a.dtype, {std::int64_t(m), std::int64_t(d)},
                           {a_across * sia, a_along * sia});
    const ArrayView b_view(b_slab.get(), p.b.dtype, {std::int64_t(d), std::int64_t(n)},
                           {b_along * sib, b_across * sib});
    if (k0 == 0) {
      static_cast<void>(matmul_into(a_view, b_view, c_view, here));
    } else {
      const MutableArrayView t_view(sum.get(), p.result, {std::int64_t(m), std::int64_t(n)});
      static_cast<void>(matmul_into(a_view, b_view, t_view, here));
      accumulate(out.data(), sum.get(), m * n, p.result);
    }
  }
}

// C = A B into `out`, slab by slab or panel by panel, in this process with the plan's OpenBLAS
// threads; interrupts, the deadline and `stop` are checked between steps.
void multiply_panels(const Product& p, const NpyMapping& a, const NpyMapping& b,
                     const NpyOutput& out, const PanelPlan& plan, std::stop_token stop) {
  MatmulOptions here;
  here.in_process = true;
  here.threads = plan.threads;
  here.stop = stop;
  if (plan.slab_depth != 0) return multiply_slabs(p, a, b, out, plan, here);
  const std::uint64_t m = p.shape.m, k = p.shape.k, n = p.shape.n;
  const std::uint64_t ia = item_size(p.a.dtype), ib = item_size(p.b.dtype),
                      ic = item_size(p.result);
  const StackOperand &sa = p.shape.a, &sb = p.shape.b;
  const bool b_rows = c_order(sb), a_rows = c_order(sa);

  // One panel of B, in B's own order: C order k x width (row stride width), or Fortran order
  // (column stride k). Held whole while A streams past it.
  const std::unique_ptr<std::byte[]> panel(new std::byte[k * plan.panel_columns * ib]);
  auto panel_view = [&](Columns cols) {
    const auto w = std::int64_t(cols.width()), kk = std::int64_t(k), item = std::int64_t(ib);
    return ArrayView(panel.get(), p.b.dtype, {kk, w},
                     b_rows ? std::vector<std::int64_t>{w * item, item}
                            : std::vector<std::int64_t>{item, kk * item});
  };

  // The panel's piece of `count` whole rows of B found at `at`, one after the other at `to`.
  auto gather = [&](Columns cols, std::uint64_t count, const std::byte* at, std::byte* to) {
    for (std::uint64_t r = 0; r < count; ++r)
      std::memcpy(to + r * cols.width() * ib, at + (r * n + cols.begin) * ib, cols.width() * ib);
  };
  auto load_direct = [&](Columns cols) {
    if (b_rows) {  // the panel's piece of each row (wide: packing would not read less)
      const std::uint64_t piece = cols.width() * ib;
      const std::uint64_t per_chunk = std::max<std::uint64_t>(1, kReadChunkBytes / piece);
      auto prefetch = [&](std::uint64_t first) {
        for (std::uint64_t r = first; r < std::min(k, first + per_chunk); ++r)
          b.prefetch((r * n + cols.begin) * ib, piece);
      };
      prefetch(0);
      for (std::uint64_t r0 = 0; r0 < k; r0 += per_chunk) {
        throw_if_interrupted();
        prefetch(r0 + per_chunk);
        for (std::uint64_t r = r0; r < std::min(k, r0 + per_chunk); ++r) {
          b.read((r * n + cols.begin) * ib, piece, panel.get() + r * piece);
          b.evict((r * n + cols.begin) * ib, piece);
        }
      }
    } else {  // Fortran order: the panel's columns are one piece of the file
      b.read(cols.begin * k * ib, cols.width() * k * ib, panel.get());
      b.evict(cols.begin * k * ib, cols.width() * k * ib);
    }
  };

  // Packed: one pass over B writes every panel but the first, whole, into the scratch file,
  // each chunk written to the disk and dropped from the page cache as it goes.
  Fd scratch;
  const std::string scratch_name = fmt::format("{} (B's panels, beside the output)", out.target());
  auto scratch_offset = [&](std::uint64_t i) {
    return (panel_columns(plan, n, i).begin - panel_columns(plan, n, 1).begin) * k * ib;
  };
  if (plan.packed) {
    const std::filesystem::path target(out.target());
    scratch = scratch_file(target.parent_path().empty() ? "." : target.parent_path());
    // B a chunk of whole rows at a time, the next one read ahead, each dropped once read.
    const std::uint64_t row = n * ib, per_chunk = std::max<std::uint64_t>(1, kReadChunkBytes / row);
    std::vector<std::byte> chunk(std::min(per_chunk, k) * row), staging;
    b.prefetch(0, chunk.size());
    for (std::uint64_t first = 0; first < k; first += per_chunk) {
      throw_if_interrupted();
      const std::uint64_t count = std::min(per_chunk, k - first);
      b.read(first * row, count * row, chunk.data());
      b.evict(first * row, count * row);
      b.prefetch((first + count) * row, std::min(per_chunk, k - first - count) * row);
      gather(panel_columns(plan, n, 0), count, chunk.data(),
             panel.get() + first * plan.panel_columns * ib);
      for (std::uint64_t i = 1; i < plan.panels; ++i) {
        const Columns cols = panel_columns(plan, n, i);
        staging.resize(count * cols.width() * ib);
        gather(cols, count, chunk.data(), staging.data());
        check_scratch(pwrite_all(scratch.get(), staging.data(),
                                 scratch_offset(i) + first * cols.width() * ib, staging.size()),
                      scratch_name, "write");
      }
      check_scratch(::fdatasync(scratch.get()) == 0 ? 0 : errno, scratch_name, "write");
      ::posix_fadvise(scratch.get(), 0, 0, POSIX_FADV_DONTNEED);
    }
  }

  // A's steps: read into memory and dropped from the page cache (C order; a Fortran-order A is
  // read where it is mapped), the next one read ahead.
  const std::uint64_t r = plan.rows_per_step;
  const std::unique_ptr<std::byte[]> step(a_rows ? new std::byte[r * k * ia] : nullptr);
  for (std::uint64_t i = 0; i < plan.panels; ++i) {
    const Columns cols = panel_columns(plan, n, i);
    if (!plan.packed) {
      load_direct(cols);
    } else if (i > 0) {
      const std::uint64_t at = scratch_offset(i), bytes = k * cols.width() * ib;
      check_scratch(pread_all(scratch.get(), panel.get(), at, bytes), scratch_name, "read");
      ::posix_fadvise(scratch.get(), off_t(at), off_t(bytes), POSIX_FADV_DONTNEED);
    }
    const ArrayView b_view = panel_view(cols);
    if (a_rows) a.prefetch(0, std::min(r, m) * k * ia);
    for (std::uint64_t i0 = 0; i0 < m; i0 += r) {
      throw_if_interrupted();
      const std::uint64_t rows = std::min(r, m - i0);
      const std::byte* a_at = a.data() + i0 * sa.row_stride * ia;
      if (a_rows) {
        a.read(i0 * k * ia, rows * k * ia, step.get());
        a.evict(i0 * k * ia, rows * k * ia);
        a.prefetch((i0 + rows) * k * ia, std::min(r, m - i0 - rows) * k * ia);
        a_at = step.get();
      }
      const ArrayView a_view(a_at, p.a.dtype, {std::int64_t(rows), std::int64_t(k)},
                             {std::int64_t(sa.row_stride * ia), std::int64_t(sa.col_stride * ia)});
      const MutableArrayView c_view(out.data() + (i0 * n + cols.begin) * ic, p.result,
                                    {std::int64_t(rows), std::int64_t(cols.width())},
                                    {std::int64_t(n * ic), std::int64_t(ic)});
      static_cast<void>(matmul_into(a_view, b_view, c_view, here));
      if (!plan.c_resident) out.write_back(i0 * n * ic, rows * n * ic);
    }
  }
}

}  // namespace

std::uint64_t memory_budget(const Options& options) {
  if (options.memory != 0) return options.memory;
  const std::uint64_t available = memory_available();
  return available - available / 8;
}

bool multiply_out_of_core(const Product& p, const NpyMapping& a, const NpyMapping& b,
                          const NpyOutput& out, const Options& options, std::uint64_t budget,
                          Report& report) {
  if (!panels_apply(p)) return false;
  const unsigned threads =
      options.threads_per_worker != 0
          ? std::min(options.threads_per_worker * std::max(1u, options.workers),
                     max_threads_per_worker())
          : std::min(available_cores(), max_threads_per_worker());
  const PanelPlan plan =
      plan_panels(p, budget, threads, options.rows_per_step,
                  options.memory != 0 ? "Options::memory" : "the memory available");
  if (plan.panels == 1 && plan.slab_depth == 0) return false;
  report.in_process = true;
  report.threads_per_worker = plan.threads;
  report.rows_per_step = plan.rows_per_step;
  report.memory_budget = budget;
  report.panel_columns = plan.panel_columns;
  report.panels = plan.panels;
  report.slab_depth = plan.slab_depth;
  report.plan_reason =
      plan.slab_depth != 0
          ? fmt::format(
                "out of core: A and B read once, in slabs of {} along k, C summed in "
                "memory, within {} bytes{}",
                plan.slab_depth, budget,
                plan.panels_instead > 1
                    ? fmt::format(" (B in column panels: A read {} times)", plan.panels_instead)
                    : std::string())
          : fmt::format(
                "out of core: B in {} panels of {} columns, A streamed {} rows at a "
                "time, within {} bytes",
                plan.panels, plan.panel_columns, plan.rows_per_step, budget);
  const auto start = std::chrono::steady_clock::now();
  multiply_panels(p, a, b, out, plan, options.stop);
  report.compute_seconds = seconds_since(start);
  return true;
}

}  // namespace shmgemm::detail
