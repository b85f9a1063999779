// Work that the products of a set share (engine/shared_work.hpp): windows of one array times one
// operand, found and computed once. The grouping against the bytes themselves, on random sets
// of windows of one buffer; matmul_many's results against each product computed alone.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <optional>
#include <random>
#include <set>
#include <vector>

#include "engine/product.hpp"
#include "engine/shared_work.hpp"
#include "shmgemm/shmgemm.hpp"
#include "test_support.hpp"

using namespace shmgemm;
using detail::find_shared_work;
using detail::SharedWork;

namespace {

using Pairs = std::vector<std::pair<ArrayView, ArrayView>>;

// The address of element (r, c) of a 2-D view.
std::uintptr_t element(const ArrayView& v, std::int64_t r, std::int64_t c) {
  return reinterpret_cast<std::uintptr_t>(v.data()) +
         static_cast<std::uintptr_t>(r * v.strides()[0] + c * v.strides()[1]);
}

// Every byte a 2-D view's elements cover.
std::set<std::uintptr_t> bytes_of(const ArrayView& v) {
  std::set<std::uintptr_t> bytes;
  for (std::int64_t r = 0; r < v.shape()[0]; ++r)
    for (std::int64_t c = 0; c < v.shape()[1]; ++c)
      for (std::size_t b = 0; b < item_size(v.dtype()); ++b)
        bytes.insert(element(v, r, c) + b);
  return bytes;
}

// find_shared_work on `pairs`, with their flops.
SharedWork grouped(const Pairs& pairs) {
  std::vector<double> flops;
  for (const auto& [a, b] : pairs)
    flops.push_back(matmul_flops(a, b));
  return find_shared_work(pairs, flops);
}

// What find_shared_work promises, checked on `pairs`.
void check_grouping(const Pairs& pairs, const SharedWork& w) {
  std::vector<int> seen(pairs.size(), 0);
  for (std::size_t i : w.alone)
    ++seen[i];
  for (const detail::SharedProduct& g : w.groups) {
    REQUIRE(g.members.size() >= 2);
    REQUIRE(g.offsets.size() == g.members.size());
    const ArrayView& joined = g.by_columns ? g.b : g.a;
    std::set<std::uintptr_t> covered;
    double flops = 0;
    for (std::size_t j = 0; j < g.members.size(); ++j) {
      const std::size_t i = g.members[j];
      ++seen[i];
      const auto& [a, b] = pairs[i];
      const ArrayView& fixed = g.by_columns ? a : b;
      const ArrayView& window = g.by_columns ? b : a;
      const ArrayView& union_fixed = g.by_columns ? g.a : g.b;
      // The other operand is the very same view.
      CHECK(fixed.data() == union_fixed.data());
      CHECK(fixed.shape() == union_fixed.shape());
      CHECK(fixed.strides() == union_fixed.strides());
      CHECK(window.dtype() == joined.dtype());
      // Each element of the window is the union's at the member's offset.
      const auto o = static_cast<std::int64_t>(g.offsets[j]);
      for (std::int64_t r = 0; r < window.shape()[0]; ++r)
        for (std::int64_t c = 0; c < window.shape()[1]; ++c) {
          const std::uintptr_t there =
              g.by_columns ? element(joined, r, c + o) : element(joined, r + o, c);
          if (element(window, r, c) != there) {
            CHECK(element(window, r, c) == there);
            r = window.shape()[0];
            break;
          }
        }
      const std::set<std::uintptr_t> mine = bytes_of(window);
      covered.insert(mine.begin(), mine.end());
      flops += matmul_flops(a, b);
    }
    // The union reads nothing that no member reads, and computes no more than they would.
    const std::set<std::uintptr_t> read = bytes_of(joined);
    CHECK(std::includes(covered.begin(), covered.end(), read.begin(), read.end()));
    CHECK(g.flops <= flops * (1 + 1e-12));
    CHECK(g.member_flops == doctest::Approx(flops));
  }
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    CAPTURE(i);
    CHECK(seen[i] == 1);
  }
  CHECK(std::is_sorted(w.alone.begin(), w.alone.end()));
}

}  // namespace

TEST_CASE("windows of one array times one operand: grouped by runs without a gap") {
  std::vector<double> base(4 * 12), left(3 * 4), other(3 * 4);
  const ArrayView a(left.data(), DType::float64, {3, 4});
  const ArrayView a_twin(other.data(), DType::float64, {3, 4});  // equal values, other memory
  auto cols = [&](std::int64_t from, std::int64_t width) {
    return ArrayView(base.data() + from, DType::float64, {4, width}, {12 * 8, 8});
  };
  // Columns 0-4 (three windows), then a gap at column 5, then 6-11 (three windows, the last
  // adjacent to the others); one window times another left operand; one twice.
  const Pairs pairs{{a, cols(0, 3)}, {a, cols(6, 3)},  {a, cols(1, 3)},     {a, cols(2, 3)},
                    {a, cols(7, 3)}, {a, cols(10, 2)}, {a_twin, cols(0, 3)}};
  const SharedWork w = grouped(pairs);
  check_grouping(pairs, w);
  REQUIRE(w.groups.size() == 2);
  CHECK(w.alone == std::vector<std::size_t>{6});
  for (const detail::SharedProduct& g : w.groups) {
    CHECK(g.by_columns);
    if (g.members.front() == 0) {
      CHECK(g.members == std::vector<std::size_t>{0, 2, 3});
      CHECK(g.offsets == std::vector<std::uint64_t>{0, 1, 2});
      CHECK(g.b.shape() == std::vector<std::int64_t>{4, 5});
    } else {
      CHECK(g.members == std::vector<std::size_t>{1, 4, 5});
      CHECK(g.offsets == std::vector<std::uint64_t>{0, 1, 4});
      CHECK(g.b.shape() == std::vector<std::int64_t>{4, 6});
      CHECK(g.b.data() == base.data() + 6);
    }
  }
  // Mirrored: row windows of one left array times one right operand (Fortran order here).
  std::vector<double> tall(10 * 4), right(4 * 2);
  const ArrayView b(right.data(), DType::float64, {4, 2});
  auto rows = [&](std::int64_t from, std::int64_t height) {
    return ArrayView(tall.data() + from, DType::float64, {height, 4}, {8, 10 * 8});
  };
  const Pairs mirrored{{rows(0, 5), b}, {rows(5, 5), b}, {rows(3, 4), b}};
  const SharedWork m = grouped(mirrored);
  check_grouping(mirrored, m);
  REQUIRE(m.groups.size() == 1);
  CHECK_FALSE(m.groups[0].by_columns);
  CHECK(m.groups[0].a.shape() == std::vector<std::int64_t>{10, 4});
  CHECK(m.groups[0].offsets == std::vector<std::uint64_t>{0, 3, 5});
  // Nothing to share: different dtypes, strides, depths, or operands that are not 2-D.
  std::vector<float> floats(4 * 12);
  const Pairs apart{
      {a, cols(0, 3)},
      {ArrayView(left.data(), DType::float32, {3, 4}),
       ArrayView(floats.data(), DType::float32, {4, 3}, {12 * 4, 4})},
      {a, ArrayView(base.data() + 1, DType::float64, {4, 3}, {12 * 8, 16})},
      {ArrayView(left.data(), DType::float64, {4}), cols(1, 3)},
  };
  const SharedWork none = grouped(apart);
  check_grouping(apart, none);
  CHECK(none.groups.empty());
}

TEST_CASE("random sets of windows: every group reads only its members' bytes, each once") {
  std::mt19937_64 rng(41);
  std::vector<double> buffer(4096);
  for (int round = 0; round < 300; ++round) {
    CAPTURE(round);
    // A base of k x width columns at some strides, a few left operands, and windows of both.
    const std::int64_t k = 1 + static_cast<std::int64_t>(rng() % 4);
    const std::int64_t width = 1 + static_cast<std::int64_t>(rng() % 12);
    const bool fortran = rng() % 2;
    const std::int64_t step = 1 + static_cast<std::int64_t>(rng() % 2);  // every column or 2nd
    const std::vector<std::int64_t> strides =
        fortran ? std::vector<std::int64_t>{8, k * step * 8}
                : std::vector<std::int64_t>{width * step * 8, step * 8};
    double* base = buffer.data() + rng() % 64;
    std::vector<ArrayView> lefts;
    for (int i = 0; i < 3; ++i)
      lefts.emplace_back(buffer.data() + 2048 + 64 * i, DType::float64,
                         std::vector<std::int64_t>{1 + static_cast<std::int64_t>(rng() % 3), k});
    Pairs pairs;
    const std::size_t count = 1 + rng() % 10;
    for (std::size_t i = 0; i < count; ++i) {
      const std::int64_t from = static_cast<std::int64_t>(rng() % std::uint64_t(width));
      const std::int64_t n = 1 + static_cast<std::int64_t>(rng() % std::uint64_t(width - from));
      const std::int64_t at = from * (fortran ? k * step : step);
      pairs.emplace_back(lefts[rng() % lefts.size()],
                         ArrayView(base + at, DType::float64, {k, n}, strides));
    }
    check_grouping(pairs, grouped(pairs));
  }
}

TEST_CASE("matmul_many on windows: each result as if computed alone, in arrays of their own") {
  std::mt19937_64 rng(43);
  // Seed 004's sliding windows: a 10 x 20 matrix times every 20 x 20 window of a 20 x 1000 one,
  // in float64 and in int64 (exact); and row windows of a 300 x 40 matrix times a 40 x 30 one.
  std::vector<double> a(10 * 20), b(20 * 1000), tall(300 * 40), right(40 * 30);
  std::vector<std::int64_t> ai(10 * 20), bi(20 * 1000);
  for (std::vector<double>* x : {&a, &b, &tall, &right})
    for (double& v : *x)
      v = std::uniform_real_distribution<double>(-1, 1)(rng);
  for (auto* x : {&ai, &bi})
    for (std::int64_t& v : *x)
      v = static_cast<std::int64_t>(rng());  // wrapping, as numpy's
  Pairs pairs;
  for (std::int64_t i = 0; i + 20 <= 1000; ++i)
    pairs.emplace_back(ArrayView(a.data(), DType::float64, {10, 20}),
                       ArrayView(b.data() + i, DType::float64, {20, 20}, {1000 * 8, 8}));
  for (std::int64_t i = 0; i + 20 <= 1000; i += 7)
    pairs.emplace_back(ArrayView(ai.data(), DType::int64, {10, 20}),
                       ArrayView(bi.data() + i, DType::int64, {20, 20}, {1000 * 8, 8}));
  for (std::int64_t i = 0; i + 50 <= 300; i += 10)
    pairs.emplace_back(ArrayView(tall.data() + i * 40, DType::float64, {50, 40}),
                       ArrayView(right.data(), DType::float64, {40, 30}));
  pairs.emplace_back(ArrayView(right.data(), DType::float64, {40, 30}),
                     ArrayView(a.data(), DType::float64, {30, 2}));  // alone
  // A 2-D result's elements in C order, wherever its strides put them.
  auto elements = [](const OwnedArray& x) {
    const std::size_t item = item_size(x.view.dtype());
    std::vector<std::byte> out;
    for (std::int64_t r = 0; r < x.view.shape()[0]; ++r)
      for (std::int64_t c = 0; c < x.view.shape()[1]; ++c) {
        const auto* e = static_cast<const std::byte*>(x.view.data()) + r * x.view.strides()[0] +
                        c * x.view.strides()[1];
        out.insert(out.end(), e, e + item);
      }
    return out;
  };
  for (bool copy : {true, false})
    for (unsigned workers : {0u, 2u}) {
      CAPTURE(copy);
      CAPTURE(workers);
      ManyOptions o;
      o.workers = workers;
      o.in_process = workers == 0;
      o.copy = copy;
      Report r;
      const std::vector<OwnedArray> got = matmul_many(pairs, o, &r);
      REQUIRE(got.size() == pairs.size());
      CHECK(r.plan_reason.find("windows of 3 larger ones") != std::string::npos);
      std::vector<std::pair<std::uintptr_t, std::uintptr_t>> spans;
      for (std::size_t i = 0; i < pairs.size(); ++i) {
        CAPTURE(i);
        const auto& [x, y] = pairs[i];
        MatmulOptions alone;
        alone.in_process = true;
        const OwnedArray want = shmgemm::matmul(x, y, alone);
        REQUIRE(got[i].view.shape() == want.view.shape());
        REQUIRE(got[i].view.dtype() == want.view.dtype());
        // Without copies, every window is a read-only view of its union's product.
        CHECK(got[i].read_only == (!copy && i + 1 < pairs.size()));
        const std::vector<std::byte> g = elements(got[i]);
        const auto bytes = g.size();
        if (want.view.dtype() == DType::int64) {
          CHECK(std::memcmp(g.data(), want.view.data(), bytes) == 0);
        } else {
          const auto* w = want.data<double>();
          double worst = 0;
          for (std::int64_t e = 0; e < want.view.size(); ++e) {
            double v = 0;
            std::memcpy(&v, g.data() + e * 8, 8);
            worst = std::max(worst, std::abs(v - w[e]));
          }
          CHECK(worst < 1e-12);
        }
        const auto at = reinterpret_cast<std::uintptr_t>(got[i].view.data());
        if (copy) spans.emplace_back(at, at + bytes);
      }
      // No copy shares a byte with another.
      std::sort(spans.begin(), spans.end());
      for (std::size_t i = 1; i < spans.size(); ++i)
        CHECK(spans[i - 1].second <= spans[i].first);
      if (!copy) {
        CHECK(got[0].owner == got[1].owner);  // windows of one product
        CHECK(r.copied_bytes == 0);
      }
    }
  CHECK(test::segments_of(::getpid()).empty());
}

TEST_CASE("a stack of overlapping windows: found, with the one product they are windows of") {
  std::vector<double> base(20 * 100), left(10 * 20), tall(300 * 40), right(40 * 30);
  const ArrayView a(left.data(), DType::float64, {10, 20});
  // sliding_window_view(base, 20, axis=1).transpose(1, 0, 2), every 3rd window: (27, 20, 20).
  const ArrayView windows(base.data(), DType::float64, {27, 20, 20}, {3 * 8, 100 * 8, 8});
  const std::optional<detail::StackWindows> w = detail::stack_windows(a, windows);
  REQUIRE(w);
  CHECK(w->by_columns);
  CHECK(w->count == 27);
  CHECK(w->step == 3);
  CHECK(w->b.data() == base.data());
  CHECK(w->b.shape() == std::vector<std::int64_t>{20, 26 * 3 + 20});
  CHECK(w->b.strides() == std::vector<std::int64_t>{100 * 8, 8});
  CHECK(w->a.shape() == a.shape());
  // The same with `a` broadcast to every window (np.broadcast_to), or a stack of one.
  CHECK(detail::stack_windows(ArrayView(left.data(), DType::float64, {27, 10, 20}, {0, 160, 8}),
                              windows));
  CHECK(detail::stack_windows(ArrayView(left.data(), DType::float64, {1, 10, 20}), windows));
  // Mirrored: row windows of a 300 x 40 matrix, every 10th, times one right operand.
  const ArrayView rows(tall.data(), DType::float64, {26, 50, 40}, {10 * 40 * 8, 40 * 8, 8});
  const std::optional<detail::StackWindows> m =
      detail::stack_windows(rows, ArrayView(right.data(), DType::float64, {40, 30}));
  REQUIRE(m);
  CHECK_FALSE(m->by_columns);
  CHECK(m->a.shape() == std::vector<std::int64_t>{25 * 10 + 50, 40});
  CHECK(m->step == 10);
  // Not windows of one product: apart (step = width: nothing shared), a step of part of a
  // column, a left operand that differs per window, a stack of one.
  CHECK_FALSE(detail::stack_windows(
      a, ArrayView(base.data(), DType::float64, {5, 20, 20}, {20 * 8, 100 * 8, 8})));
  CHECK_FALSE(detail::stack_windows(
      a, ArrayView(base.data(), DType::float64, {5, 20, 20}, {12, 100 * 8, 8})));
  std::vector<double> lefts(27 * 10 * 20);
  CHECK_FALSE(
      detail::stack_windows(ArrayView(lefts.data(), DType::float64, {27, 10, 20}), windows));
  CHECK_FALSE(detail::stack_windows(
      a, ArrayView(base.data(), DType::float64, {1, 20, 20}, {8, 100 * 8, 8})));
}

TEST_CASE("matmul on a stack of windows: the stack's product, into a new array or any out") {
  std::mt19937_64 rng(47);
  std::vector<double> base(20 * 1000), left(10 * 20);
  std::vector<std::int64_t> ibase(20 * 1000), ileft(10 * 20);
  for (std::vector<double>* x : {&base, &left})
    for (double& v : *x)
      v = std::uniform_real_distribution<double>(-1, 1)(rng);
  for (std::vector<std::int64_t>* x : {&ibase, &ileft})
    for (std::int64_t& v : *x)
      v = static_cast<std::int64_t>(rng());
  for (const DType dtype : {DType::float64, DType::int64}) {
    CAPTURE(dtype_name(dtype));
    const void* a_data = dtype == DType::float64 ? static_cast<const void*>(left.data())
                                                 : static_cast<const void*>(ileft.data());
    const void* b_data = dtype == DType::float64 ? static_cast<const void*>(base.data())
                                                 : static_cast<const void*>(ibase.data());
    const ArrayView a(a_data, dtype, {10, 20});
    const ArrayView stack(b_data, dtype, {981, 20, 20}, {8, 1000 * 8, 8});
    // The reference: the stack's products one by one, in process.
    std::vector<std::byte> want(981 * 10 * 20 * 8);
    for (std::int64_t i = 0; i < 981; ++i) {
      const ArrayView window(static_cast<const std::byte*>(b_data) + i * 8, dtype, {20, 20},
                             {1000 * 8, 8});
      MatmulOptions here;
      here.in_process = true;
      matmul_into(a, window, MutableArrayView(want.data() + i * 10 * 20 * 8, dtype, {10, 20}),
                  here);
    }
    auto same = [&](const std::byte* got) {
      if (dtype == DType::int64) return std::memcmp(got, want.data(), want.size()) == 0;
      for (std::size_t e = 0; e < 981 * 10 * 20; ++e)
        if (std::abs(reinterpret_cast<const double*>(got)[e] -
                     reinterpret_cast<const double*>(want.data())[e]) > 1e-12)
          return false;
      return true;
    };
    for (unsigned workers : {0u, 2u}) {
      CAPTURE(workers);
      MatmulOptions o;
      o.workers = workers;
      o.in_process = workers == 0;
      Report r;
      const OwnedArray made = shmgemm::matmul(a, stack, o, &r);
      CHECK(made.view.shape() == std::vector<std::int64_t>{981, 10, 20});
      CHECK(same(static_cast<const std::byte*>(made.view.data())));
      CHECK(r.batch == 981);
      CHECK(r.plan_reason.find("981 overlapping windows") != std::string::npos);
      // Into an out of other strides: each product transposed in place (Fortran order).
      std::vector<std::byte> store(want.size());
      const MutableArrayView out(store.data(), dtype, {981, 10, 20}, {10 * 20 * 8, 8, 10 * 8});
      matmul_into(a, stack, out, o);
      std::vector<std::byte> c_order(want.size());
      for (std::int64_t i = 0; i < 981; ++i)
        for (std::int64_t x = 0; x < 10; ++x)
          for (std::int64_t y = 0; y < 20; ++y)
            std::memcpy(c_order.data() + ((i * 10 + x) * 20 + y) * 8,
                        store.data() + (i * 200 + y * 10 + x) * 8, 8);
      CHECK(same(c_order.data()));
    }
  }
  CHECK(test::segments_of(::getpid()).empty());
}

TEST_CASE("accepted_matrices agrees with check_arrays on every pair it answers for") {
  std::mt19937_64 rng(53);
  std::vector<double> buffer(64);
  constexpr DType kTypes[] = {DType::int8,    DType::uint32,  DType::int64,
                              DType::float32, DType::float64, DType::complex64};
  auto view = [&](std::size_t ndim) {
    std::vector<std::int64_t> shape;
    for (std::size_t i = 0; i < ndim; ++i)
      shape.push_back(static_cast<std::int64_t>(rng() % 4));
    const void* data = rng() % 8 == 0 ? nullptr : static_cast<const void*>(buffer.data());
    return ArrayView(data, kTypes[rng() % std::size(kTypes)], shape,
                     std::vector<std::int64_t>(ndim, 0));
  };
  int answered = 0;
  for (int round = 0; round < 5000; ++round) {
    const ArrayView a = view(rng() % 2 ? 2 : 1 + rng() % 3),
                    b = view(rng() % 2 ? 2 : 1 + rng() % 3);
    const std::optional<detail::MatrixProduct> quick = detail::accepted_matrices(a, b);
    std::optional<detail::Checked> full;
    try {
      full = detail::check_arrays(a, b, nullptr);
    } catch (const Error&) {
    }
    if (!quick) continue;
    ++answered;
    REQUIRE(full);
    CHECK(full->shape.out_shape ==
          std::vector<std::uint64_t>{std::uint64_t(quick->rows), std::uint64_t(quick->cols)});
    CHECK(full->result == quick->result);
  }
  CHECK(answered > 100);
}
