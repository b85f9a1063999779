// matmul_many: any set of products at once. The work products share is found first
// (find_shared_work); the set's plan (plan_set) then runs it in this process, its products side
// by side on one-thread OpenBLAS or one after another, or on forked workers, each started once
// for the whole set, computing its share (split_products) with one OpenBLAS thread under the
// workers' slot protocol (run_slot), reading the operands where they are (inherited) and writing
// the results into one memory file, seen here as private arrays.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <tuple>
#include <vector>

#include "common/clock.hpp"
#include "engine/host_blas.hpp"
#include "engine/interrupt.hpp"
#include "engine/job_runner.hpp"
#include "engine/placement.hpp"
#include "engine/plan.hpp"
#include "engine/product.hpp"
#include "engine/shared_work.hpp"
#include "engine/tooling.hpp"
#include "shmgemm/shmgemm.hpp"
#include "worker/general_kernel.hpp"
#include "worker/slice_kernel.hpp"
#include "worker/worker_run.hpp"

namespace shmgemm {
namespace {

struct Item {
  const ArrayView *a = nullptr, *b = nullptr;  // the caller's pair
  DType result = DType::float64;
  std::vector<std::int64_t> shape;
  std::uint64_t offset = 0, bytes = 0;  // in the results' memory
  double flops = 0;
};

constexpr std::uint64_t kAlign = 64;

// The set with its shared work found: each group's union computed once (with the products of
// no group, as one set), each member's result copied out of its union's, into one block.
std::vector<OwnedArray> with_shared_work(const std::vector<Item>& items,
                                         const detail::SharedWork& shared, const Options& options,
                                         bool copy, Report& report) {
  std::vector<std::pair<ArrayView, ArrayView>> work;
  for (const detail::SharedProduct& g : shared.groups)
    work.emplace_back(g.a, g.b);
  for (std::size_t i : shared.alone)
    work.emplace_back(*items[i].a, *items[i].b);
  std::vector<OwnedArray> computed = legacy::matmul_many_all(work, options, &report);
  std::vector<OwnedArray> out(items.size());
  for (std::size_t j = 0; j < shared.alone.size(); ++j)
    out[shared.alone[j]] = std::move(computed[shared.groups.size() + j]);
  // The members' copies, in one block (none without copies).
  std::shared_ptr<void> owner;
  if (copy) owner = detail::NewResult(items.back().offset + items.back().bytes, false).release();
  auto* block = static_cast<std::byte*>(owner.get());
  double member_flops = 0, union_flops = 0;
  std::size_t members = 0;
  for (std::size_t g = 0; g < shared.groups.size(); ++g) {
    const detail::SharedProduct& group = shared.groups[g];
    const auto* from = static_cast<const std::byte*>(computed[g].view.data());
    const std::size_t item = item_size(computed[g].view.dtype());
    const auto width = static_cast<std::size_t>(computed[g].view.shape()[1]);
    for (std::size_t j = 0; j < group.members.size(); ++j) {
      const Item& it = items[group.members[j]];
      const auto rows = static_cast<std::size_t>(it.shape[0]);
      const auto cols = static_cast<std::size_t>(it.shape[1]);
      if (!copy) {
        // A view of the union's result, as sliding_window_view gives a window.
        out[group.members[j]] = {
            MutableArrayView(
                static_cast<std::byte*>(computed[g].view.mutable_data()) +
                    detail::window_start(width, item, group.by_columns, group.offsets[j]),
                it.result, it.shape,
                {static_cast<std::int64_t>(width * item), static_cast<std::int64_t>(item)}),
            computed[g].owner, true};
        continue;
      }
      std::byte* to = block + it.offset;
      detail::copy_window(from, width, item, group.by_columns, group.offsets[j], rows, cols, to,
                          static_cast<std::int64_t>(cols * item), static_cast<std::int64_t>(item));
      report.copied_bytes += it.bytes;
      out[group.members[j]] = {MutableArrayView(to, it.result, it.shape), owner};
    }
    member_flops += group.member_flops;
    union_flops += group.flops;
    members += group.members.size();
  }
  report.batch = items.size();
  report.plan_reason = fmt::format(
      "{} of the {} products are windows of {} larger ones, computed once ({:.3g} GFLOP instead "
      "of {:.3g}), {}; {}",
      members, items.size(), shared.groups.size(), union_flops / 1e9, member_flops / 1e9,
      copy ? "each window copied out" : "each window a read-only view", report.plan_reason);
  return out;
}

// A pair OpenBLAS multiplies as it is: two non-empty float matrices of the result's dtype, each
// with unit stride along one axis.
std::optional<std::pair<ConstMatrixRef, ConstMatrixRef>> blas_pair(const Item& it) {
  const ArrayView &a = *it.a, &b = *it.b;
  if (a.ndim() != 2 || b.ndim() != 2 || a.dtype() != it.result || b.dtype() != it.result ||
      (it.result != DType::float64 && it.result != DType::float32) || a.size() == 0 ||
      b.size() == 0)
    return std::nullopt;
  const auto item = static_cast<std::int64_t>(item_size(it.result));
  auto view = [item](const ArrayView& v) -> std::optional<ConstMatrixRef> {
    for (std::int64_t s : v.strides())
      if (s < 0 || s % item != 0) return std::nullopt;
    return blas_view(
        static_cast<const std::byte*>(v.data()), static_cast<std::uint64_t>(v.shape()[0]),
        static_cast<std::uint64_t>(v.shape()[1]), static_cast<std::uint64_t>(v.strides()[0] / item),
        static_cast<std::uint64_t>(v.strides()[1] / item));
  };
  std::optional<ConstMatrixRef> ra = view(a), rb = view(b);
  if (!ra || !rb) return std::nullopt;
  return std::pair(*ra, *rb);
}

// The results of a set computed in this process: an array each, as numpy's loop makes them
// (from the heap, whose pages are warm from earlier calls; one block of fresh pages costs more
// to fault in than it saves), but for a set whose results take at most kOneBlockBytes in all:
// views of one block then, one allocation for the set.
constexpr std::uint64_t kOneBlockBytes = std::uint64_t{1} << 20;

std::vector<OwnedArray> new_results(const std::vector<Item>& items, std::uint64_t total) {
  std::vector<OwnedArray> out;
  out.reserve(items.size());
  if (total <= kOneBlockBytes) {
    detail::NewResult memory(total, false);
    const std::shared_ptr<void> owner = memory.release();
    for (const Item& it : items)
      out.push_back(
          {MutableArrayView(static_cast<std::byte*>(owner.get()) + it.offset, it.result, it.shape),
           owner});
    return out;
  }
  for (const Item& it : items) {
    detail::NewResult memory(it.bytes, false);
    std::shared_ptr<void> owner = memory.release();
    out.push_back({MutableArrayView(owner.get(), it.result, it.shape), std::move(owner)});
  }
  return out;
}

// The set into `out` in this process, its products side by side on `threads` threads (this
// one among them), each product on one OpenBLAS thread: for products this small, OpenBLAS's
// threads on one product gain less than products side by side (as numpy users do with
// threadpoolctl and a thread pool). OpenBLAS's count is 1 for the call only, and only where no
// thread of the host's may be inside OpenBLAS meanwhile; products OpenBLAS cannot take as they
// are (other dtypes, stacks, strides) run after, one by one.
void side_by_side(const std::vector<Item>& items, const std::vector<OwnedArray>& out,
                  unsigned threads, const Options& in) {
  std::vector<std::size_t> rest, order;
  std::vector<std::pair<ConstMatrixRef, ConstMatrixRef>> refs(items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (const std::optional<std::pair<ConstMatrixRef, ConstMatrixRef>> pair = blas_pair(items[i])) {
      refs[i] = *pair;
      order.push_back(i);
    } else {
      rest.push_back(i);
    }
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t x, std::size_t y) { return items[x].flops > items[y].flops; });
  {
    const detail::InProcessBlas one(1, false);
    std::atomic<std::size_t> next{0};
    std::atomic<bool> stop{false};
    std::exception_ptr failure;
    std::mutex failure_lock;
    auto work = [&](bool caller) {
      try {
        for (std::size_t j; !stop.load() && (j = next.fetch_add(1)) < order.size();) {
          const std::size_t i = order[j];
          const auto rows = static_cast<std::uint64_t>(items[i].shape[0]);
          const auto cols = static_cast<std::uint64_t>(items[i].shape[1]);
          const MatrixRef c{static_cast<std::byte*>(out[i].view.mutable_data()), rows, cols, cols,
                            Layout::row_major};
          compute_rows(items[i].result, refs[i].first, refs[i].second, c,
                       RowRange{0, static_cast<std::size_t>(rows)});
          if (caller) detail::throw_if_interrupted();
        }
      } catch (...) {
        stop.store(true);
        const std::lock_guard lock(failure_lock);
        if (!failure) failure = std::current_exception();
      }
    };
    {
      std::vector<std::jthread> helpers;
      for (unsigned t = 1; t < threads && t < order.size(); ++t)
        helpers.emplace_back(work, false);
      work(true);
    }
    if (failure) std::rethrow_exception(failure);
  }
  for (std::size_t i : rest)
    legacy::matmul_all(*items[i].a, *items[i].b, out[i].view, in);
}

Options one_thread_in_process(const Options& o) {
  Options in;
  in.in_process = true;
  in.threads_per_worker = 1;
  in.timeout = o.timeout;
  return in;
}

std::vector<OwnedArray> many(std::span<const std::pair<ArrayView, ArrayView>> pairs,
                             const Options& options, bool copy, Report* report_out) {
  const auto start = std::chrono::steady_clock::now();
  const detail::StopScope interrupts(options.timeout, options.stop);
  detail::check_options(options, detail::Entry::matmul);
  if (options.launch == Launch::spawn && !options.in_process)
    throw Error(ErrorCode::unsupported,
                "matmul_many: only fork workers can read the operands where they are (use a "
                "Pool for spawn)");
  // Every pair checked before any work: numpy's messages, naming the pair.
  std::vector<Item> items(pairs.size());
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    Item& it = items[i];
    it.a = &pairs[i].first;
    it.b = &pairs[i].second;
    if (const std::optional<detail::MatrixProduct> quick =
            detail::accepted_matrices(*it.a, *it.b)) {
      it.shape = {quick->rows, quick->cols};
      it.result = quick->result;
    } else {
      try {
        const detail::Checked checked = detail::check_arrays(*it.a, *it.b, nullptr);
        it.shape.assign(checked.shape.out_shape.begin(), checked.shape.out_shape.end());
        it.result = checked.result;
      } catch (const Error& e) {
        throw Error(e.code(), fmt::format("pair {}: {}", i, e.what()));
      }
    }
    std::uint64_t elements = 1;
    for (std::int64_t d : it.shape)
      elements *= static_cast<std::uint64_t>(d);
    it.bytes = elements * item_size(it.result);
    it.offset = total;
    total += (it.bytes + kAlign - 1) / kAlign * kAlign;
    it.flops = matmul_flops(*it.a, *it.b);
  }
  std::vector<double> flops(items.size());
  for (std::size_t i = 0; i < items.size(); ++i)
    flops[i] = items[i].flops;
  if (const detail::SharedWork shared = detail::find_shared_work(pairs, flops);
      !shared.groups.empty()) {
    Report report;
    std::vector<OwnedArray> out = with_shared_work(items, shared, options, copy, report);
    report.seconds = seconds_since(start);
    if (report_out) *report_out = report;
    return out;
  }
  // Launch::automatic: no fork while another thread may be in OpenBLAS; the set runs here then.
  // (A caller that waits for this call, as Python's does, decides Launch::automatic itself.)
  const bool fork_safe = detail::resolve_launch(options.launch) == Launch::fork;
  const unsigned cores = available_cores();
  detail::SetShape set{items.size(), 0, 0};
  for (const Item& it : items) {
    set.flops += it.flops;
    set.largest = std::max(set.largest, it.flops);
  }
  // The calibration and the page tables are read only when the plan weighs workers.
  const detail::Plan plan = detail::plan_set(
      set, options, cores, static_cast<std::size_t>(std::max(blas_threads(), 1)), fork_safe,
      [](std::size_t workers) {
        const Calibration c = load_calibration();
        return detail::SetCosts{c.gflops_f64, detail::launch_seconds(Launch::fork, workers, c,
                                                                     detail::page_tables_kib())};
      });
  const bool in_process = plan.in_process;
  const auto workers = static_cast<unsigned>(plan.workers);
  Report report;
  report.launch = Launch::fork;
  report.batch = items.size();
  report.in_process = in_process;
  report.workers = workers;
  report.threads_per_worker = static_cast<unsigned>(plan.threads_per_worker);
  report.plan_reason = plan.reason;
  std::vector<OwnedArray> out;
  out.reserve(items.size());
  auto done = [&] {
    report.seconds = seconds_since(start);
    if (report_out) *report_out = report;
    return std::move(out);
  };
  if (in_process) {
    Options in = one_thread_in_process(options);
    in.threads_per_worker = plan.threads_per_worker;
    out = new_results(items, total);
    if (plan.side_by_side > 1) {
      side_by_side(items, out, static_cast<unsigned>(plan.side_by_side), in);
    } else {
      for (std::size_t i = 0; i < items.size(); ++i)
        legacy::matmul_all(*items[i].a, *items[i].b, out[i].view, in);
    }
    return done();
  }
  detail::NewResult memory(total, true);
  std::byte* area = memory.area(Launch::fork).local;
  auto out_of = [&](const Item& it) {
    return MutableArrayView(area + it.offset, it.result, it.shape);
  };
  {
    // split_products: largest first, each to the worker with the least work so far, a product
    // of more than a fair share cut into pieces of its rows; each worker's pieces then lie in
    // one range of `order`, which its slot's rows name.
    std::vector<double> work(items.size());
    std::vector<std::uint64_t> rows(items.size());
    for (std::size_t i = 0; i < items.size(); ++i) {
      work[i] = items[i].flops + 2e5;  // a call's own cost, in flops
      const bool matrices = items[i].a->ndim() == 2 && items[i].b->ndim() == 2;
      rows[i] = matrices ? static_cast<std::uint64_t>(items[i].shape[0]) : 0;
    }
    const std::vector<std::vector<detail::ProductPiece>> share =
        detail::split_products(work, rows, workers);
    std::vector<detail::ProductPiece> order;
    detail::JobSegment described;
    JobDescriptor& job = *described.job;
    job.m = items.size();
    for (std::size_t w = 0; w < workers; ++w) {
      job.slots[w].row_begin = order.size();
      order.insert(order.end(), share[w].begin(), share[w].end());
      job.slots[w].row_end = order.size();
    }
    if (order.size() > items.size())
      report.plan_reason += fmt::format(
          " ({} pieces: products of more than a worker's share split by rows)", order.size());
    // A piece's operand rows and result rows (all of them for a whole product).
    auto piece_of = [&](const detail::ProductPiece& piece) {
      const Item& it = items[piece.product];
      if (rows[piece.product] == 0) return std::tuple(*it.a, *it.b, out_of(it));
      const auto first = static_cast<std::int64_t>(piece.rows.begin);
      const auto count = static_cast<std::int64_t>(piece.rows.size());
      const std::int64_t row_bytes = it.shape[1] * static_cast<std::int64_t>(item_size(it.result));
      const ArrayView a(static_cast<const std::byte*>(it.a->data()) + first * it.a->strides()[0],
                        it.a->dtype(), {count, it.a->shape()[1]}, it.a->strides());
      return std::tuple(
          a, *it.b,
          MutableArrayView(area + it.offset + first * row_bytes, it.result, {count, it.shape[1]}));
    };
    const Options in = one_thread_in_process(options);
    auto body = [&](std::size_t w) {
      const WorkerSlot& slot = job.slots[w];
      return run_slot(job, w, [&](const std::function<void(std::uint64_t)>& progress) {
        // This worker's results, faulted in at once (a page fault each costs more).
        for (std::uint64_t r = slot.row_begin; r < slot.row_end; ++r) {
          const MutableArrayView to = std::get<2>(piece_of(order[r]));
          detail::populate_for_writing(
              static_cast<std::byte*>(to.mutable_data()),
              static_cast<std::uint64_t>(to.size()) * item_size(to.dtype()));
        }
        for (std::uint64_t r = slot.row_begin; r < slot.row_end; ++r) {
          const auto [a, b, to] = piece_of(order[r]);
          legacy::matmul_all(a, b, to, in);
          progress(r + 1 - slot.row_begin);
        }
      });
    };
    Options launch_options = options;
    launch_options.progress = false;
    launch_options.launch = Launch::fork;
    const detail::RunStats stats =
        detail::launch_and_join(job, described.segment.name(), plan, body, launch_options, 0);
    report.compute_seconds = stats.compute_seconds;
    report.launches = stats.launches;
  }
  detail::throw_if_interrupted(/*deadline=*/false);
  const std::shared_ptr<void> owner = memory.release();
  for (const Item& it : items)
    out.push_back(
        {MutableArrayView(static_cast<std::byte*>(owner.get()) + it.offset, it.result, it.shape),
         owner});
  return done();
}

}  // namespace

std::vector<OwnedArray> matmul_many(std::span<const std::pair<ArrayView, ArrayView>> pairs,
                                    const ManyOptions& options, Report* report) {
  return many(pairs, detail::all_options(options), options.copy, report);
}

std::vector<OwnedArray> legacy::matmul_many_all(
    std::span<const std::pair<ArrayView, ArrayView>> pairs, const Options& options,
    Report* report) {
  return many(pairs, options, true, report);
}

}  // namespace shmgemm
