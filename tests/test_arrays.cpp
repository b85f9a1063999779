// np.matmul from the host's memory through the ArrayView API: every dtype pair, exact
// integers, broadcast stacks, 1-D operands and any strides, in process, with fork and spawn
// workers and through a Pool, each against a naive reference written here.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <complex>
#include <cstring>
#include <functional>
#include <future>
#include <random>
#include <thread>
#include <tuple>
#include <vector>

#include "examples/host_app/strided_array.hpp"
#include "shmgemm/shmgemm.hpp"
#include "tests/test_support.hpp"
#include "worker/slice_kernel.hpp"

using namespace shmgemm;

namespace {

using Complex = std::complex<long double>;

using Array = StridedArray;

// Element as its exact bits (integers, wrapping as numpy converts them to the result) or as a
// complex value (floats).
std::uint64_t bits_of(const std::byte* p, DType d) {
  std::uint64_t v = 0;
  switch (d) {
    case DType::int8:
      return std::uint64_t(std::int64_t(*reinterpret_cast<const std::int8_t*>(p)));
    case DType::int16:
      return std::uint64_t(std::int64_t(*reinterpret_cast<const std::int16_t*>(p)));
    case DType::int32:
      return std::uint64_t(std::int64_t(*reinterpret_cast<const std::int32_t*>(p)));
    case DType::int64:
      std::memcpy(&v, p, 8);
      return v;
    case DType::uint8:
      return *reinterpret_cast<const std::uint8_t*>(p);
    case DType::uint16:
      return *reinterpret_cast<const std::uint16_t*>(p);
    case DType::uint32:
      return *reinterpret_cast<const std::uint32_t*>(p);
    case DType::uint64:
      std::memcpy(&v, p, 8);
      return v;
    default:
      return 0;
  }
}

Complex value_of(const std::byte* p, DType d) {
  switch (d) {
    case DType::float32:
      return *reinterpret_cast<const float*>(p);
    case DType::float64:
      return *reinterpret_cast<const double*>(p);
    case DType::complex64: {
      const auto z = *reinterpret_cast<const std::complex<float>*>(p);
      return {z.real(), z.imag()};
    }
    case DType::complex128: {
      const auto z = *reinterpret_cast<const std::complex<double>*>(p);
      return {z.real(), z.imag()};
    }
    case DType::int8:
    case DType::int16:
    case DType::int32:
    case DType::int64:
      return static_cast<long double>(static_cast<std::int64_t>(bits_of(p, d)));
    default:
      return static_cast<long double>(bits_of(p, d));
  }
}

bool is_int(DType d) {
  return d != DType::float32 && d != DType::float64 && d != DType::complex64 &&
         d != DType::complex128;
}

void fill(const Array& x, std::mt19937_64& rng) {
  const DType d = x.view.dtype();
  const std::size_t item = item_size(d);
  std::vector<std::int64_t> index(x.view.ndim(), 0);
  std::uniform_real_distribution<double> real(-1, 1);
  for (std::int64_t e = 0; e < x.view.size(); ++e) {
    std::byte* p = x.at(index);
    if (is_int(d)) {
      const std::uint64_t r = rng();  // the full range, every bit
      std::memcpy(p, &r, item);
    } else if (d == DType::float32 || d == DType::complex64) {
      const float f[2] = {float(real(rng)), float(real(rng))};
      std::memcpy(p, f, item);
    } else {
      const double f[2] = {real(rng), real(rng)};
      std::memcpy(p, f, item);
    }
    for (std::size_t i = index.size(); i-- > 0;)
      if (++index[i] < x.view.shape()[i])
        break;
      else
        index[i] = 0;
  }
}

// np.matmul(a, b) computed naively, compared element by element with `out`: integers exactly
// (products summed modulo 2^64, then cut to the result's width), floats within a tolerance.
std::size_t mismatches_with_reference(const Array& a, const Array& b, const Array& out,
                                      DType result) {
  std::vector<std::int64_t> sa = a.view.shape(), sb = b.view.shape();
  const bool a_vec = sa.size() == 1, b_vec = sb.size() == 1;
  if (a_vec) sa.insert(sa.begin(), 1);
  if (b_vec) sb.push_back(1);
  const std::int64_t m = sa[sa.size() - 2], k = sa.back(), n = sb.back();
  const std::size_t nd = std::max(sa.size(), sb.size()) - 2;
  std::vector<std::int64_t> batch(nd, 1);
  for (std::size_t j = 0; j < nd; ++j) {
    const std::int64_t da = j + 2 < sa.size() ? sa[sa.size() - 3 - j] : 1;
    const std::int64_t db = j + 2 < sb.size() ? sb[sb.size() - 3 - j] : 1;
    batch[nd - 1 - j] = std::max(da, db);
  }
  const std::size_t out_item = item_size(result);
  const unsigned bits = unsigned(out_item * 8);
  std::vector<std::int64_t> bi(nd, 0);
  std::int64_t batches = 1;
  for (std::int64_t d : batch)
    batches *= d;
  std::size_t mismatches = 0;
  for (std::int64_t q = 0; q < batches; ++q) {
    auto index_of = [&](const Array& x, bool vec_left, bool vec_right, std::int64_t i,
                        std::int64_t j, std::int64_t l, bool left) {
      std::vector<std::int64_t> idx;
      const std::size_t own = x.view.ndim() - (vec_left || vec_right ? 1 : 2);
      for (std::size_t t = 0; t < own; ++t) {
        const std::int64_t dim = x.view.shape()[t];
        idx.push_back(dim == 1 ? 0 : bi[nd - own + t]);
      }
      if (left) {
        if (!vec_left) idx.push_back(i);
        idx.push_back(l);
      } else {
        idx.push_back(l);
        if (!vec_right) idx.push_back(j);
      }
      return idx;
    };
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        std::uint64_t exact = 0;
        Complex sum = 0;
        long double scale = 0;
        for (std::int64_t l = 0; l < k; ++l) {
          const std::byte* pa = a.at(index_of(a, a_vec, false, i, j, l, true));
          const std::byte* pb = b.at(index_of(b, false, b_vec, i, j, l, false));
          if (is_int(result)) {
            exact += bits_of(pa, a.view.dtype()) * bits_of(pb, b.view.dtype());
          } else {
            const Complex x = value_of(pa, a.view.dtype()) * value_of(pb, b.view.dtype());
            sum += x;
            scale += std::abs(x);
          }
        }
        std::vector<std::int64_t> oi(bi);
        if (!a_vec) oi.push_back(i);
        if (!b_vec) oi.push_back(j);
        const std::byte* po = out.at(oi);
        bool ok;
        if (is_int(result)) {
          std::uint64_t got = 0;
          std::memcpy(&got, po, out_item);
          const std::uint64_t mask = bits == 64 ? ~0ULL : (1ULL << bits) - 1;
          ok = (got & mask) == (exact & mask);
        } else {
          const Complex got = value_of(po, result);
          const bool single = result == DType::float32 || result == DType::complex64;
          ok = std::abs(got - sum) <= (single ? 1e-5L : 1e-12L) * (scale + 1);
        }
        if (!ok) ++mismatches;
      }
    for (std::size_t t = nd; t-- > 0;)
      if (++bi[t] < batch[t])
        break;
      else
        bi[t] = 0;
  }
  return mismatches;
}

std::vector<std::int64_t> result_shape(const Array& a, const Array& b) {
  return matmul_shape(a.view, b.view);
}

// A result the engine made (C order) against the naive loop's a @ b.
void check_against_reference(const Array& a, const Array& b, const OwnedArray& got) {
  const DType result = result_dtype(a.view, b.view);
  REQUIRE(got.view.shape() == result_shape(a, b));
  Array out(result, got.view.shape());
  std::memcpy(out.view.mutable_data(), got.view.data(), got.view.size() * item_size(result));
  CHECK(mismatches_with_reference(a, b, out, result) == 0);
}

struct Case {
  std::string name;
  std::function<Array()> a, b;
  bool fortran_out = false;
};

std::vector<Case> cases() {
  const auto i64 = DType::int64;
  return {
      {"int64 @ int64, full range",
       [=] {
         return Array(i64, {23, 17});
       },
       [=] {
         return Array(i64, {17, 11});
       }},
      {"int32 @ float32 -> float64",
       [] {
         return Array(DType::int32, {9, 13});
       },
       [] {
         return Array(DType::float32, {13, 7});
       }},
      {"complex128",
       [] {
         return Array(DType::complex128, {12, 10});
       },
       [] {
         return Array(DType::complex128, {10, 6});
       }},
      {"(3,1,5,6) @ (4,6,2), uint16 @ int8",
       [] {
         return Array(DType::uint16, {3, 1, 5, 6});
       },
       [] {
         return Array(DType::int8, {4, 6, 2});
       }},
      {"(3,1,5,6) @ (4,6,2), float64",
       [] {
         return Array(DType::float64, {3, 1, 5, 6});
       },
       [] {
         return Array(DType::float64, {4, 6, 2});
       }},
      {"1-D @ 2-D", [] { return Array(DType::float64, {8}); },
       [] {
         return Array(DType::float64, {8, 5});
       }},
      {"2-D @ 1-D, int64",
       [=] {
         return Array(i64, {6, 8});
       },
       [=] { return Array(i64, {8}); }},
      // A with its rows reversed and every other column; B transposed with a step of 3.
      {"negative and non-unit strides",
       [] {
         return Array(DType::float64, {7, 5}, {-80, 16});
       },
       [] {
         return Array(DType::float64, {5, 4}, {8, 120});
       },
       true},
      {"negative strides, int64",
       [=] {
         return Array(i64, {7, 5}, {-80, 16});
       },
       [=] {
         return Array(i64, {5, 4}, {-8, -120});
       },
       true},
  };
}

void run_cases(const std::string& how,
               const std::function<Report(const ArrayView&, const ArrayView&,
                                          const MutableArrayView&)>& call) {
  std::mt19937_64 rng(7);
  for (const Case& c : cases()) {
    CAPTURE(how);
    CAPTURE(c.name);
    const Array a = c.a(), b = c.b();
    fill(a, rng);
    fill(b, rng);
    const DType result = result_dtype(a.view, b.view);
    std::vector<std::int64_t> shape = result_shape(a, b);
    std::vector<std::int64_t> strides;
    if (c.fortran_out && shape.size() == 2)
      strides = {std::int64_t(item_size(result)), std::int64_t(item_size(result)) * shape[0]};
    const Array out(result, shape, strides);
    const ArrayView ca(static_cast<const void*>(a.view.data()), a.view.dtype(), a.view.shape(),
                       a.view.strides());
    const ArrayView cb(static_cast<const void*>(b.view.data()), b.view.dtype(), b.view.shape(),
                       b.view.strides());
    const std::vector<std::byte> a_before = a.store, b_before = b.store;
    const Report r = call(ca, cb, out.view);
    CHECK(r.dtype == std::string(dtype_name(result)));
    CHECK(mismatches_with_reference(a, b, out, result) == 0);
    CHECK(a.store == a_before);  // the operands are never written
    CHECK(b.store == b_before);
  }
  CHECK(test::segments_of(::getpid()).empty());
}

}  // namespace

TEST_CASE("matmul(ArrayView): numpy's result dtype and shape, and the product of a naive loop") {
  CHECK(result_dtype(DType::int32, DType::float32) == DType::float64);
  CHECK(result_dtype(DType::uint8, DType::int8) == DType::int16);
  CHECK(result_dtype(DType::uint64, DType::int64) == DType::float64);
  const Array s(DType::float64, {3, 1, 5, 6}), t(DType::float64, {4, 6, 2});
  CHECK(matmul_shape(s.view, t.view) == std::vector<std::int64_t>{3, 4, 5, 2});
  const Array v(DType::float64, {6});
  CHECK(matmul_shape(v.view, v.view).empty());
  CHECK_THROWS_WITH_AS(matmul_shape(s.view, s.view),
                       "matmul: Input operand 1 has a mismatch in its core dimension 0, with "
                       "gufunc signature (n?,k),(k,m?)->(n?,m?) (size 5 is different from 6)",
                       Error);
  // The reference finds a wrong product: a zero C, and C off by one in its last element.
  {
    std::mt19937_64 rng(1);
    const Array x(DType::int64, {5, 4}), y(DType::int64, {4, 3});
    fill(x, rng);
    fill(y, rng);
    const Array z(DType::int64, {5, 3});
    CHECK(mismatches_with_reference(x, y, z, DType::int64) == 15);
    matmul(x.view, y.view, z.view);
    CHECK(mismatches_with_reference(x, y, z, DType::int64) == 0);
    ++*reinterpret_cast<std::int64_t*>(z.at({4, 2}));
    CHECK(mismatches_with_reference(x, y, z, DType::int64) == 1);
  }
  for (unsigned workers : {0u, 1u, 3u}) {
    Options in;
    in.in_process = workers == 0;
    in.workers = workers;
    run_cases(fmt::format("fork, {} workers", workers),
              [&](const ArrayView& a, const ArrayView& b, const MutableArrayView& c) {
                return matmul(a, b, c, in);
              });
  }
  Options spawn;
  spawn.launch = Launch::spawn;
  spawn.workers = 2;
  run_cases("spawn, 2 workers", [&](const ArrayView& a, const ArrayView& b,
                                    const MutableArrayView& c) { return matmul(a, b, c, spawn); });
}

TEST_CASE("matmul(a, b) into a new array: written where it is returned, private afterwards") {
  std::mt19937_64 rng(11);
  for (const auto& [how, workers, launch] :
       {std::tuple{"in process", 0u, Launch::fork}, std::tuple{"fork", 2u, Launch::fork},
        std::tuple{"spawn", 2u, Launch::spawn}}) {
    Options o;
    o.in_process = workers == 0;
    o.workers = workers;
    o.launch = launch;
    for (const Case& c : cases()) {
      CAPTURE(how);
      CAPTURE(c.name);
      const Array a = c.a(), b = c.b();
      fill(a, rng);
      fill(b, rng);
      Report r;
      const OwnedArray made = matmul(a.view, b.view, o, &r);
      const DType result = result_dtype(a.view, b.view);
      CHECK(made.view.dtype() == result);
      CHECK(made.view.shape() == result_shape(a, b));
      CHECK(made.view.is_c_contiguous());
      Array out(result, made.view.shape());
      std::memcpy(out.view.mutable_data(), made.view.data(), made.view.size() * item_size(result));
      CHECK(mismatches_with_reference(a, b, out, result) == 0);
      // Nothing copied back from the workers: only operands the kernels cannot read in place
      // (negative strides), and with spawn, A and B, which a new process cannot see.
      const bool in_place = std::ranges::none_of(a.view.strides(), [](auto s) { return s < 0; }) &&
                            std::ranges::none_of(b.view.strides(), [](auto s) { return s < 0; });
      if (in_place && launch == Launch::fork) CHECK(r.copied_bytes == 0);
    }
  }
  // Computed by workers, yet private memory: a forked child's writes stay in the child.
  Options o;
  o.workers = 2;
  const Array a(DType::float64, {200, 100}), b(DType::float64, {100, 300});
  fill(a, rng);
  fill(b, rng);
  const OwnedArray c = matmul(a.view, b.view, o);
  auto* first = c.data<double>();
  const double before = *first;
  const pid_t child = ::fork();
  if (child == 0) {
    *first = before + 1;
    ::_exit(*first == before + 1 ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(*first == before);
  CHECK(test::segments_of(::getpid()).empty());
}

TEST_CASE("matmul_many: every pair's product in order, on forked workers or in process") {
  std::mt19937_64 rng(5);
  std::vector<Array> operands;
  std::vector<std::pair<ArrayView, ArrayView>> pairs;
  for (const Case& c : cases()) {
    operands.push_back(c.a());
    operands.push_back(c.b());
  }
  for (Array& x : operands)
    fill(x, rng);
  for (std::size_t i = 0; i < operands.size(); i += 2)
    pairs.emplace_back(operands[i].view, operands[i + 1].view);
  for (unsigned workers : {0u, 2u, 3u}) {
    CAPTURE(workers);
    Options o;
    o.workers = workers;
    o.in_process = workers == 0;
    Report r;
    const std::vector<OwnedArray> got = matmul_many(pairs, o, &r);
    REQUIRE(got.size() == pairs.size());
    CHECK(r.workers == (workers == 0 ? 0u : std::min<unsigned>(workers, pairs.size())));
    for (std::size_t i = 0; i < pairs.size(); ++i) {
      CAPTURE(i);
      check_against_reference(operands[2 * i], operands[2 * i + 1], got[i]);
    }
  }
  // Every pair checked before any work, the one at fault named; spawn is refused.
  std::vector<std::pair<ArrayView, ArrayView>> bad = pairs;
  bad.emplace_back(operands[0].view, operands[0].view);
  const std::string named = fmt::format("pair {}: ", pairs.size());
  CHECK_THROWS_WITH_AS(matmul_many(bad), doctest::Contains(named.c_str()), Error);
  Options spawn;
  spawn.launch = Launch::spawn;
  CHECK_THROWS_AS(matmul_many(pairs, spawn), Error);
  CHECK(test::segments_of(::getpid()).empty());
}

TEST_CASE("matmul_many on workers: a product larger than a worker's share is split by rows") {
  std::mt19937_64 rng(67);
  // One large product (a with negative strides, read in place by pieces) and small ones.
  std::vector<Array> operands;
  operands.emplace_back(DType::float64, std::vector<std::int64_t>{160, 60},
                        std::vector<std::int64_t>{-60 * 8, 8});
  operands.emplace_back(DType::float64, std::vector<std::int64_t>{60, 80});
  for (int i = 0; i < 6; ++i) {
    operands.emplace_back(DType::int64, std::vector<std::int64_t>{30, 20});
    operands.emplace_back(DType::int64, std::vector<std::int64_t>{20, 10});
  }
  for (Array& x : operands)
    fill(x, rng);
  std::vector<std::pair<ArrayView, ArrayView>> pairs;
  for (std::size_t i = 0; i < operands.size(); i += 2)
    pairs.emplace_back(operands[i].view, operands[i + 1].view);
  Options o;
  o.workers = 2;
  o.launch = Launch::fork;
  Report r;
  const std::vector<OwnedArray> got = matmul_many(pairs, o, &r);
  CHECK(r.workers == 2);
  CHECK(r.plan_reason.find("pieces") != std::string::npos);
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    CAPTURE(i);
    check_against_reference(operands[2 * i], operands[2 * i + 1], got[i]);
  }
  CHECK(test::segments_of(::getpid()).empty());
}

TEST_CASE(
    "matmul_many in process: products side by side on one-thread OpenBLAS, the host's count "
    "given back, and never while another thread runs") {
  if (blas_threads() < 2 || available_cores() < 2)
    SKIP_CASE("OpenBLAS has one thread here: there is nothing to run side by side");
  std::mt19937_64 rng(404);
  // Small: the naive reference runs in long double, under the sanitizers too.
  std::uniform_int_distribution<std::int64_t> side(1, 30);
  std::vector<Array> operands;
  for (int i = 0; i < 60; ++i) {
    const std::int64_t m = side(rng), k = side(rng), n = side(rng);
    const DType dt = i % 3 == 0 ? DType::float32 : DType::float64;
    operands.emplace_back(dt, std::vector<std::int64_t>{m, k});
    operands.emplace_back(dt, std::vector<std::int64_t>{k, n});
  }
  // Pairs OpenBLAS cannot take as they are: integers, mixed dtypes, a stack, a stride that is
  // no multiple of the item (none), a transposed view (taken as it is).
  operands.emplace_back(DType::int64, std::vector<std::int64_t>{7, 5});
  operands.emplace_back(DType::int64, std::vector<std::int64_t>{5, 3});
  operands.emplace_back(DType::float32, std::vector<std::int64_t>{9, 4});
  operands.emplace_back(DType::float64, std::vector<std::int64_t>{4, 6});
  operands.emplace_back(DType::float64, std::vector<std::int64_t>{3, 8, 5});
  operands.emplace_back(DType::float64, std::vector<std::int64_t>{5, 2});
  operands.emplace_back(DType::float64, std::vector<std::int64_t>{12, 10},
                        std::vector<std::int64_t>{8, 12 * 8});
  operands.emplace_back(DType::float64, std::vector<std::int64_t>{10, 11},
                        std::vector<std::int64_t>{-11 * 8, 8});
  for (Array& x : operands)
    fill(x, rng);
  std::vector<std::pair<ArrayView, ArrayView>> pairs;
  for (std::size_t i = 0; i < operands.size(); i += 2)
    pairs.emplace_back(operands[i].view, operands[i + 1].view);
  // Whether the results lie in one block: they do when they take at most 1 MiB in all.
  auto check_results = [&](const std::vector<OwnedArray>& got) {
    REQUIRE(got.size() == pairs.size());
    std::uint64_t all_bytes = 0;
    for (const OwnedArray& x : got)
      all_bytes +=
          (static_cast<std::uint64_t>(x.view.size()) * item_size(x.view.dtype()) + 63) / 64 * 64;
    const bool one_block = all_bytes <= (std::uint64_t{1} << 20);
    for (const OwnedArray& x : got)
      CHECK((x.owner == got[0].owner) == (one_block || &x == &got[0]));
    for (std::size_t i = 0; i < pairs.size(); ++i) {
      CAPTURE(i);
      check_against_reference(operands[2 * i], operands[2 * i + 1], got[i]);
      // Each result memory of its own.
      const auto* lo = static_cast<const std::byte*>(got[i].view.data());
      for (std::size_t j = 0; j < i; ++j) {
        const auto* other = static_cast<const std::byte*>(got[j].view.data());
        const auto bytes = [&](std::size_t x) {
          return static_cast<std::size_t>(got[x].view.size()) * item_size(got[x].view.dtype());
        };
        CHECK((lo + bytes(i) <= other || other + bytes(j) <= lo));
      }
    }
  };
  const int host_threads = blas_threads();
  Options o;
  o.in_process = true;
  Report r;
  const std::vector<OwnedArray> first = matmul_many(pairs, o, &r);
  check_results(first);
  CHECK(first[0].owner == first.back().owner);  // one block
  CHECK(r.plan_reason.find("side by side on 2 threads") != std::string::npos);
  CHECK(r.threads_per_worker == 1);
  CHECK(blas_threads() == host_threads);

  // Another thread of the host's may be inside OpenBLAS: the count stays as it is, and the
  // products run one after another on the host's threads.
  {
    std::promise<void> go;
    std::jthread other([f = go.get_future()]() mutable { f.wait(); });
    check_results(matmul_many(pairs, o, &r));
    go.set_value();
  }
  CHECK(r.plan_reason.find("side by side") == std::string::npos);
  CHECK(r.threads_per_worker == static_cast<unsigned>(std::min(host_threads, 2)));

  // One product larger than a thread's share: OpenBLAS's threads serve it better. (Its result,
  // 2 MB, takes the set past one block.)
  operands.emplace_back(DType::float64, std::vector<std::int64_t>{500, 2});
  operands.emplace_back(DType::float64, std::vector<std::int64_t>{2, 500});
  fill(operands[operands.size() - 2], rng);
  fill(operands.back(), rng);
  pairs.emplace_back(operands[operands.size() - 2].view, operands.back().view);
  const std::vector<OwnedArray> last = matmul_many(pairs, o, &r);
  check_results(last);
  CHECK(last[0].owner != last.back().owner);  // an array each
  CHECK(r.plan_reason.find("side by side") == std::string::npos);
  CHECK(blas_threads() == host_threads);
}

TEST_CASE("Pool::matmul(ArrayView): the same rules, operands staged or in the arena") {
  for (Launch launch : {Launch::fork, Launch::spawn}) {
    Options o;
    o.launch = launch;
    o.workers = 2;
    o.pool_bytes = 64 << 20;
    {
      Pool pool(o);
      run_cases(fmt::format("pool, {}", to_string(launch)),
                [&](const ArrayView& a, const ArrayView& b, const MutableArrayView& c) {
                  return pool.matmul(a, b, c);
                });
      // Operands and result in the arena: nothing staged; integers exact on a stack.
      std::mt19937_64 rng(3);
      SharedArray a = pool.alloc(DType::int64, {4, 30, 20}), b = pool.alloc(DType::int64, {20, 9});
      SharedArray c = pool.alloc(DType::int64, {4, 30, 9});
      for (SharedArray* x : {&a, &b})
        for (std::int64_t e = 0; e < x->view().size(); ++e)
          static_cast<std::uint64_t*>(x->data())[e] = rng();
      const std::uint64_t staged = pool.stats().staged_bytes;
      std::future<Report> f = pool.submit(a.view(), b.view(), c.view());
      const Report r = f.get();
      CHECK(r.batch == 4);
      CHECK(r.limb_products > 1);
      CHECK(pool.stats().staged_bytes == staged);
      for (std::int64_t q = 0; q < 4; ++q)
        for (std::int64_t i = 0; i < 30; ++i)
          for (std::int64_t j = 0; j < 9; ++j) {
            std::uint64_t sum = 0;
            for (std::int64_t l = 0; l < 20; ++l)
              sum += static_cast<std::uint64_t*>(a.data())[(q * 30 + i) * 20 + l] *
                     static_cast<std::uint64_t*>(b.data())[l * 9 + j];
            if (static_cast<std::uint64_t*>(c.data())[(q * 30 + i) * 9 + j] != sum) {
              CHECK(false);
              q = 4, i = 30, j = 9;
            }
          }
      // An out of the wrong dtype or shape: numpy's kind of refusal, before any work.
      SharedArray wrong = pool.alloc(DType::float64, {4, 30, 9});
      CHECK_THROWS_AS(pool.matmul(a.view(), b.view(), wrong.view()), Error);
      SharedArray small = pool.alloc(DType::int64, {4, 30, 8});
      CHECK_THROWS_WITH(pool.matmul(a.view(), b.view(), small.view()),
                        doctest::Contains("out: shape (4,30,8)"));
    }
    CHECK(test::segments_of(::getpid()).empty());
  }
}

TEST_CASE("matmul(ArrayView) refuses a bad out, naming it, and writes nothing") {
  const Array a(DType::int32, {4, 5}), b(DType::float32, {5, 3});
  Array wrong_dtype(DType::float32, {4, 3}), wrong_shape(DType::float64, {4, 4});
  const std::vector<std::byte> before = wrong_shape.store;
  try {
    matmul(a.view, b.view, wrong_dtype.view);
    CHECK(false);
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_argument);
    CHECK(std::string(e.what()) ==
          "out: dtype float32, where np.matmul(int32, float32) gives float64");
  }
  try {
    matmul(a.view, b.view, wrong_shape.view);
    CHECK(false);
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::shape_mismatch);
    CHECK(std::string(e.what()) ==
          "out: shape (4,4), where the product of (4,5) and (5,3) has shape (4,3)");
  }
  CHECK(wrong_shape.store == before);
  CHECK_THROWS_WITH(ArrayView(static_cast<void*>(nullptr), DType::float64, {2, -1}),
                    doctest::Contains("negative dimension"));
  CHECK_THROWS_WITH(ArrayView(static_cast<void*>(nullptr), DType::float64, {2, 2}, {8}),
                    doctest::Contains("1 strides for the 2 dimensions"));
}

TEST_CASE("matmul(ArrayView) with an out that is, or overlaps, an operand: numpy's answer") {
  // The product goes to a temporary first, as numpy computes an overlapping out; written in
  // place, row i of C overwrites row i of A before later rows of C are computed from it.
  std::mt19937_64 rng(25);
  Options in_process, fork, spawn, automatic;
  in_process.in_process = true;
  fork.workers = 2;
  spawn.workers = 2;
  spawn.launch = Launch::spawn;
  Options pool_options;
  pool_options.workers = 2;
  pool_options.pool_bytes = 64 << 20;
  Pool pool(pool_options);
  const std::pair<const char*, std::function<Report(ArrayView, ArrayView, MutableArrayView)>>
      calls[] = {
          {"in process", [&](auto a, auto b, auto c) { return matmul(a, b, c, in_process); }},
          {"fork", [&](auto a, auto b, auto c) { return matmul(a, b, c, fork); }},
          {"spawn", [&](auto a, auto b, auto c) { return matmul(a, b, c, spawn); }},
          {"automatic", [&](auto a, auto b, auto c) { return matmul(a, b, c, automatic); }},
          {"pool", [&](auto a, auto b, auto c) { return pool.matmul(a, b, c); }},
      };
  for (const auto& [how, call] : calls) {
    CAPTURE(how);
    for (const char* which : {"out = a", "out = b", "out shifted 100 rows into a"}) {
      CAPTURE(which);
      // One base of 400 x 300 in the pool's arena, so that a pool's workers could write in place.
      SharedArray base = pool.alloc(DType::float64, {400, 300});
      auto* p = static_cast<double*>(base.data());
      for (std::int64_t e = 0; e < 400 * 300; ++e)
        p[e] = std::uniform_real_distribution<double>(-1, 1)(rng);
      std::vector<double> other(300 * 300);
      for (double& x : other)
        x = std::uniform_real_distribution<double>(-1, 1)(rng);
      const MutableArrayView rows0(p, DType::float64, {300, 300});
      const MutableArrayView rows100(p + 100 * 300, DType::float64, {300, 300});
      const MutableArrayView second(other.data(), DType::float64, {300, 300});
      const std::string w = which;
      const ArrayView a = w == "out = b" ? second : rows0;
      const ArrayView b = w == "out = b" ? rows0 : second;
      const MutableArrayView out = w == "out shifted 100 rows into a" ? rows100 : rows0;
      // The reference, from copies.
      const Array ac(DType::float64, {300, 300}), bc(DType::float64, {300, 300});
      std::memcpy(ac.view.mutable_data(), a.data(), 300 * 300 * 8);
      std::memcpy(bc.view.mutable_data(), b.data(), 300 * 300 * 8);
      const Array expected(DType::float64, {300, 300});
      matmul(ac.view, bc.view, expected.view, in_process);
      call(a, b, out);
      double worst = 0;
      for (std::int64_t e = 0; e < 300 * 300; ++e)
        worst = std::max(worst, std::abs(static_cast<const double*>(out.data())[e] -
                                         static_cast<const double*>(expected.view.data())[e]));
      CHECK(worst < 1e-10);
    }
  }
  CHECK(test::segments_of(::getpid()).empty());
}

TEST_CASE(
    "a null data pointer with elements is refused, naming the operand; with none, it is empty") {
  const Array a(DType::float64, {3, 4}), b(DType::float64, {4, 3});
  const ArrayView null_a(static_cast<void*>(nullptr), DType::float64, {3, 4});
  const ArrayView null_b(static_cast<void*>(nullptr), DType::float64, {4, 3});
  const MutableArrayView null_out(nullptr, DType::float64, {3, 3});
  Array out(DType::float64, {3, 3});
  Options workers;
  workers.workers = 2;
  for (const Options& o : {Options{}, workers}) {
    CHECK_THROWS_WITH_AS(matmul(null_a, b.view, out.view, o),
                         "a: a null data pointer for shape (3,4)", Error);
    CHECK_THROWS_WITH_AS(matmul(a.view, null_b, out.view, o),
                         "b: a null data pointer for shape (4,3)", Error);
    CHECK_THROWS_WITH_AS(matmul(a.view, b.view, null_out, o),
                         "out: a null data pointer for shape (3,3)", Error);
    CHECK_THROWS_WITH_AS(matmul(null_a, b.view, o), "a: a null data pointer for shape (3,4)",
                         Error);
  }
  Options pool_options;
  pool_options.workers = 1;
  pool_options.pool_bytes = 16 << 20;
  Pool pool(pool_options);
  CHECK_THROWS_WITH_AS(pool.matmul(null_a, b.view, out.view),
                       "a: a null data pointer for shape (3,4)", Error);
  // An empty array may have no memory at all.
  const ArrayView empty(static_cast<void*>(nullptr), DType::float64, {0, 4});
  const OwnedArray c = matmul(empty, b.view);
  CHECK(c.view.shape() == std::vector<std::int64_t>{0, 3});
}

// --- The per-call option types -----------------------------------------------------------------

namespace {

template <class T>
concept HasRowsPerStep = requires(T o) {
  o.rows_per_step;
};
template <class T>
concept HasArenaBytes = requires(T o) {
  o.arena_bytes;
};
template <class T>
concept HasRetries = requires(T o) {
  o.retries;
};
template <class T>
concept TakesBraces = requires(ArrayView a) {
  shmgemm::matmul(a, a, {});
};
// An output must be a view that may be written: one made from a non-const pointer.
template <class Out>
concept OutputFor = requires(ArrayView a, Out out, Pool& pool) {
  shmgemm::matmul_into(a, a, out);
  pool.matmul(a, a, out);
  pool.submit(a, a, out);
};
template <class Out>
concept LegacyOutputFor = requires(ArrayView a, Out out) {
  shmgemm::matmul(a, a, out, Options{});
};

}  // namespace

// Each call takes the settings it honours, and no other: one that does not apply does not
// compile (these would have been refused only at run time, or ignored).
static_assert(!HasRowsPerStep<MatmulOptions> && HasRowsPerStep<FileOptions>);
static_assert(!HasArenaBytes<MatmulOptions> && !HasArenaBytes<FileOptions> &&
              HasArenaBytes<PoolOptions>);
static_assert(!HasRetries<ManyOptions> && !HasRetries<PoolOptions> && HasRetries<MatmulOptions>);
// A read-only view as an output does not compile, in the old spelling either.
static_assert(OutputFor<MutableArrayView> && !OutputFor<ArrayView>);
static_assert(LegacyOutputFor<MutableArrayView> && !LegacyOutputFor<ArrayView>);
static_assert(
    !std::is_constructible_v<MutableArrayView, const void*, DType, std::vector<std::int64_t>>);
// matmul(a, b, {}) is one call: the product into a new array.
static_assert(TakesBraces<int>);
static_assert(std::is_same_v<decltype(shmgemm::matmul(std::declval<ArrayView>(),
                                                      std::declval<ArrayView>(), {})),
                             OwnedArray>);
// Every Pool::matmul returns its report.
static_assert(
    std::is_same_v<decltype(std::declval<Pool&>().matmul(std::declval<MatrixView<const double>>(),
                                                         std::declval<MatrixView<const double>>(),
                                                         std::declval<MatrixView<double>>())),
                   Report>);

TEST_CASE(
    "the per-call options: matmul_into, matmul, matmul_many, multiply_files and Pool() give "
    "the naive loop's product, with the settings they were given") {
  std::mt19937_64 rng(31);
  const test::Dense a = test::random_dense(5, 7, rng), b = test::random_dense(7, 3, rng);
  const test::Dense want = test::reference_product(a, b);
  const double tol = test::tolerance(DType::float64, 7);
  const ArrayView av(a.v.data(), DType::float64, {5, 7}), bv(b.v.data(), DType::float64, {7, 3});
  auto as_dense = [](const double* c) { return test::Dense{5, 3, std::vector<double>(c, c + 15)}; };

  MatmulOptions one;
  one.workers = 2;
  one.threads = 1;
  one.launch = Launch::fork;
  std::vector<double> got(15, -1.0);
  const Report into =
      matmul_into(av, bv, MutableArrayView(got.data(), DType::float64, {5, 3}), one);
  CHECK(test::max_rel_diff(as_dense(got.data()), want) <= tol);
  CHECK(into.workers == 2);
  CHECK(into.threads_per_worker == 1);

  const OwnedArray made = shmgemm::matmul(av, bv, {});
  CHECK(test::max_rel_diff(as_dense(made.data<double>()), want) <= tol);
  CHECK_THROWS_WITH_AS(static_cast<void>(made.data<float>()),
                       "OwnedArray::data: the array holds float64, not float32", Error);

  ManyOptions in_process;
  in_process.in_process = true;
  const std::pair<ArrayView, ArrayView> pair{av, bv};
  Report many_report;
  const std::vector<OwnedArray> many = matmul_many(std::span(&pair, 1), in_process, &many_report);
  REQUIRE(many.size() == 1);
  CHECK(many_report.in_process);
  CHECK(test::max_rel_diff(as_dense(many[0].data<double>()), want) <= tol);

  test::TempDir tmp;
  test::write_file(tmp / "A.npy", test::npy_bytes(a, DType::float64));
  test::write_file(tmp / "B.npy", test::npy_bytes(b, DType::float64));
  FileOptions files;
  files.backing = Backing::shm;
  files.workers = 1;
  const Report r = multiply_files(tmp / "A.npy", tmp / "B.npy", tmp / "C.npy", files);
  CHECK(r.backing == Backing::shm);
  CHECK(r.workers == 1);
  CHECK(test::max_rel_diff(test::read_npy(tmp / "C.npy"), want) <= tol);

  Pool pool;
  CHECK(pool.workers() == available_cores());
  std::vector<double> pooled(15, -1.0);
  const Report p = pool.matmul(MatrixView<const double>(a.v.data(), 5, 7),
                               MatrixView<const double>(b.v.data(), 7, 3),
                               MatrixView<double>(pooled.data(), 5, 3));
  CHECK(test::max_rel_diff(as_dense(pooled.data()), want) <= tol);
  CHECK(p.workers >= 1);
  PoolOptions small;
  small.workers = 1;
  small.arena_bytes = 16 << 20;
  Pool one_worker(small);
  CHECK(one_worker.workers() == 1);
}
