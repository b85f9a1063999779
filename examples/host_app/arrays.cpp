// np.matmul from a host program's own memory through the public ArrayView API, against a naive
// loop: int64 @ int64 (exact, full range, wrapping), int32 @ float32 (float64, numpy's
// promotion), complex128, a (3,1,5,6) @ (4,6,2) broadcast stack, a 1-D operand and a view
// with negative and non-unit strides; each in process, with fork workers, with spawn workers
// and through a Pool. Exits non-zero if any result is wrong.
#include <shmgemm/shmgemm.hpp>

#include <complex>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "strided_array.hpp"

namespace {

using shmgemm::ArrayView;
using shmgemm::DType;
using shmgemm::MutableArrayView;

using Array = StridedArray;

// Every index of `shape`, in C order.
void for_each_index(const std::vector<std::int64_t>& shape,
                    const std::function<void(const std::vector<std::int64_t>&)>& f) {
  std::int64_t count = 1;
  for (std::int64_t d : shape)
    count *= d;
  std::vector<std::int64_t> index(shape.size(), 0);
  for (std::int64_t e = 0; e < count; ++e) {
    f(index);
    for (std::size_t i = shape.size(); i-- > 0;) {
      if (++index[i] < shape[i]) break;
      index[i] = 0;
    }
  }
}

std::complex<double> value(const std::byte* p, DType d) {
  switch (d) {
    case DType::int32:
      return *reinterpret_cast<const std::int32_t*>(p);
    case DType::int64:
      return double(*reinterpret_cast<const std::int64_t*>(p));
    case DType::float32:
      return *reinterpret_cast<const float*>(p);
    case DType::float64:
      return *reinterpret_cast<const double*>(p);
    case DType::complex128:
      return *reinterpret_cast<const std::complex<double>*>(p);
    default:
      return 0;
  }
}

void fill(const Array& x, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(-1, 1);
  for_each_index(x.view.shape(), [&](const std::vector<std::int64_t>& i) {
    std::byte* p = x.at(i);
    switch (x.view.dtype()) {
      case DType::int32:
        *reinterpret_cast<std::int32_t*>(p) = std::int32_t(rng() % 2001) - 1000;
        break;
      case DType::int64:
        *reinterpret_cast<std::uint64_t*>(p) = rng();
        break;  // every bit
      case DType::float32:
        *reinterpret_cast<float*>(p) = float(u(rng));
        break;
      case DType::float64:
        *reinterpret_cast<double*>(p) = u(rng);
        break;
      case DType::complex128:
        *reinterpret_cast<std::complex<double>*>(p) = {u(rng), u(rng)};
        break;
      default:
        break;
    }
  });
}

// np.matmul(a, b) by a naive loop, checked against `out`: int64 exactly (modulo 2^64), others
// to a relative 1e-9 (float32 operands: 1e-6). Handles 1-D operands and broadcast batch axes.
bool matches(const Array& a, const Array& b, const Array& out) {
  std::vector<std::int64_t> sa = a.view.shape(), sb = b.view.shape();
  const bool av = sa.size() == 1, bv = sb.size() == 1;
  const std::int64_t m = av ? 1 : sa[sa.size() - 2], k = sa.back(), n = bv ? 1 : sb.back();
  const std::size_t ba = sa.size() - (av ? 1 : 2), bb = sb.size() - (bv ? 1 : 2);
  const std::size_t nd = std::max(ba, bb);
  std::vector<std::int64_t> batch(nd, 1);
  for (std::size_t j = 0; j < nd; ++j)
    batch[nd - 1 - j] = std::max(j < ba ? sa[ba - 1 - j] : 1, j < bb ? sb[bb - 1 - j] : 1);
  const bool exact = out.view.dtype() == DType::int64;
  const bool single = a.view.dtype() == DType::float32 || b.view.dtype() == DType::float32;
  bool ok = true;
  for_each_index(batch, [&](const std::vector<std::int64_t>& q) {
    auto own = [&](std::size_t count, const std::vector<std::int64_t>& shape) {
      std::vector<std::int64_t> i;
      for (std::size_t t = 0; t < count; ++t)
        i.push_back(shape[t] == 1 ? 0 : q[nd - count + t]);
      return i;
    };
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        std::uint64_t wrapped = 0;
        std::complex<double> sum = 0;
        double scale = 0;
        for (std::int64_t l = 0; l < k; ++l) {
          std::vector<std::int64_t> ia = own(ba, sa), ib = own(bb, sb);
          if (!av) ia.push_back(i);
          ia.push_back(l);
          ib.push_back(l);
          if (!bv) ib.push_back(j);
          if (exact) {
            wrapped += *reinterpret_cast<const std::uint64_t*>(a.at(ia)) *
                       *reinterpret_cast<const std::uint64_t*>(b.at(ib));
          } else {
            const std::complex<double> x =
                value(a.at(ia), a.view.dtype()) * value(b.at(ib), b.view.dtype());
            sum += x;
            scale += std::abs(x);
          }
        }
        std::vector<std::int64_t> io = q;
        if (!av) io.push_back(i);
        if (!bv) io.push_back(j);
        if (exact)
          ok = ok && *reinterpret_cast<const std::uint64_t*>(out.at(io)) == wrapped;
        else
          ok = ok && std::abs(value(out.at(io), out.view.dtype()) - sum) <=
                         (single ? 1e-6 : 1e-9) * (scale + 1);
      }
  });
  return ok;
}

struct Case {
  const char* name;
  Array a, b;
};

}  // namespace

int main() {
  std::mt19937_64 rng(5);
  std::vector<Case> cases;
  cases.push_back({"int64 @ int64", Array(DType::int64, {40, 30}), Array(DType::int64, {30, 20})});
  cases.push_back(
      {"int32 @ float32", Array(DType::int32, {40, 30}), Array(DType::float32, {30, 20})});
  cases.push_back(
      {"complex128", Array(DType::complex128, {20, 15}), Array(DType::complex128, {15, 10})});
  cases.push_back({"(3,1,5,6) @ (4,6,2)", Array(DType::float64, {3, 1, 5, 6}),
                   Array(DType::float64, {4, 6, 2})});
  cases.push_back({"1-D @ 2-D", Array(DType::int64, {30}), Array(DType::int64, {30, 7})});
  // A's rows reversed and every other column taken; B with a column step of 3.
  cases.push_back({"negative and non-unit strides", Array(DType::float64, {9, 6}, {-96, 16}),
                   Array(DType::float64, {6, 5}, {8, 144})});
  for (Case& c : cases) {
    fill(c.a, rng);
    fill(c.b, rng);
  }

  shmgemm::MatmulOptions in_process, fork, spawn;
  in_process.in_process = true;
  fork.workers = 2;
  spawn.workers = 2;
  spawn.launch = shmgemm::Launch::spawn;
  shmgemm::PoolOptions pooled;
  pooled.workers = 2;
  pooled.arena_bytes = 64 << 20;
  int failures = 0;
  try {
    shmgemm::Pool pool(pooled);
    const std::pair<const char*, std::function<shmgemm::Report(const ArrayView&, const ArrayView&,
                                                               const MutableArrayView&)>>
        ways[] = {
            {"in process",
             [&](auto& a, auto& b, auto& c) { return matmul_into(a, b, c, in_process); }},
            {"fork", [&](auto& a, auto& b, auto& c) { return matmul_into(a, b, c, fork); }},
            {"spawn", [&](auto& a, auto& b, auto& c) { return matmul_into(a, b, c, spawn); }},
            {"pool", [&](auto& a, auto& b, auto& c) { return pool.matmul(a, b, c); }},
        };
    for (const auto& [how, call] : ways)
      for (const Case& c : cases) {
        const DType result = shmgemm::result_dtype(c.a.view, c.b.view);
        const Array out(result, shmgemm::matmul_shape(c.a.view, c.b.view));
        const shmgemm::Report r = call(c.a.view, c.b.view, out.view);
        const bool ok = matches(c.a, c.b, out);
        failures += ok ? 0 : 1;
        std::printf("%-10s %-30s -> %-10s %u workers, %llu bytes copied: %s\n", how, c.name,
                    std::string(shmgemm::dtype_name(result)).c_str(), r.workers,
                    static_cast<unsigned long long>(r.copied_bytes), ok ? "ok" : "WRONG");
      }
  } catch (const shmgemm::Error& e) {
    std::fprintf(stderr, "host_arrays: %s\n", e.what());
    return 1;
  }
  return failures == 0 ? 0 : 1;
}
