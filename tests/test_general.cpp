// np.matmul's rules in pure C++: promotion against numpy's safe-cast lattice, shapes and values
// against a naive reference over numpy's index rules, and exact integer limbs. Runs where
// numpy is missing; numpy_matmul_diff.py checks the same against numpy itself.
#include <doctest/doctest.h>

#include <complex>
#include <cstring>
#include <random>

#include "common/limbs.hpp"
#include "common/matmul_shape.hpp"
#include "common/npy.hpp"
#include "common/promote.hpp"
#include "shmgemm/shmgemm.hpp"
#include "test_support.hpp"

using namespace shmgemm;
using test::TempDir;
namespace fs = std::filesystem;

namespace {

// numpy's "safe" casts: every value of `from` is a value of `to`.
bool can_cast_safely(DType from, DType to) {
  if (from == to) return true;
  if (is_integer(from) && is_integer(to)) {
    if (is_signed_integer(from) && !is_signed_integer(to)) return false;
    if (is_signed_integer(from) == is_signed_integer(to)) return dtype_bits(to) > dtype_bits(from);
    return dtype_bits(to) > dtype_bits(from);  // unsigned into a wider signed type
  }
  // Significand bits: float32 24, float64 53; numpy counts int64 -> float64 as safe.
  const auto precision = [](DType d) {
    return d == DType::float32 || d == DType::complex64 ? 24 : 53;
  };
  if (is_integer(from)) {
    const unsigned bits = dtype_bits(from) - (is_signed_integer(from) ? 1 : 0);
    return precision(to) == 53 || bits <= 16;
  }
  if (is_integer(to) || (is_complex(from) && !is_complex(to))) return false;
  return item_size(to) / (is_complex(to) ? 2 : 1) >= item_size(from) / (is_complex(from) ? 2 : 1);
}

// numpy's promotion as the first type, in its order, both cast to safely.
DType reference_result_type(DType a, DType b) {
  const DType order[] = {DType::int8,    DType::uint8,   DType::int16,     DType::uint16,
                         DType::int32,   DType::uint32,  DType::int64,     DType::uint64,
                         DType::float32, DType::float64, DType::complex64, DType::complex128};
  for (DType d : order)
    if (can_cast_safely(a, d) && can_cast_safely(b, d)) return d;
  return DType::complex128;
}

// An element as every kind of number: wrapped to 64 bits for integer products, as a long double
// (real and imaginary parts) for the others.
struct Value {
  std::uint64_t wrapped = 0;
  std::complex<long double> z;
};

Value load(DType d, const std::byte* p) {
  Value v;
  auto from = [&](auto t) {
    std::memcpy(&t, p, sizeof t);
    using T = decltype(t);
    if constexpr (std::is_integral_v<T>) {
      v.wrapped = static_cast<std::uint64_t>(t);
      v.z = static_cast<long double>(t);
    } else if constexpr (std::is_floating_point_v<T>) {
      v.z = t;
    } else {
      v.z = {t.real(), t.imag()};
    }
  };
  visit_dtype(d, from);
  return v;
}

struct Array {
  DType dtype = DType::float64;
  std::vector<std::uint64_t> shape;
  std::string bytes;          // C order
  std::vector<double> scale;  // reference products: sum |x||y| of each element
  std::uint64_t count() const {
    std::uint64_t c = 1;
    for (auto d : shape)
      c *= d;
    return c;
  }
  Value at(std::uint64_t i) const {
    return load(dtype, reinterpret_cast<const std::byte*>(bytes.data()) + i * item_size(dtype));
  }
};

Array random_array(DType d, std::vector<std::uint64_t> shape, std::mt19937_64& rng) {
  Array a{d, std::move(shape), {}, {}};
  a.bytes.resize(a.count() * item_size(d));
  const bool edges = rng() % 2 == 0;
  for (std::uint64_t i = 0; i < a.count(); ++i) {
    // Integers: the whole range or small values; floats: small integers and halves (exact).
    std::uint64_t bits = edges ? rng() : rng() % 10;
    if (!is_integer(d)) {
      const double x = static_cast<double>(static_cast<std::int64_t>(rng() % 17) - 8) / 2;
      const float xf = static_cast<float>(x);
      switch (d) {
        case DType::float32:
          std::memcpy(&a.bytes[i * 4], &xf, 4);
          break;
        case DType::float64:
          std::memcpy(&a.bytes[i * 8], &x, 8);
          break;
        case DType::complex64: {
          const std::complex<float> z(xf, -xf / 2);
          std::memcpy(&a.bytes[i * 8], &z, 8);
          break;
        }
        default: {
          const std::complex<double> z(x, x / 4);
          std::memcpy(&a.bytes[i * 16], &z, 16);
        }
      }
      continue;
    }
    std::memcpy(&a.bytes[i * item_size(d)], &bits, item_size(d));  // little-endian low bytes
  }
  return a;
}

void save(const fs::path& path, const Array& a) {
  test::write_file(path, format_npy_header(a.dtype, a.shape, false) + a.bytes);
}

// np.matmul by its definition: pad, broadcast by index, sum; integers modulo 2^64.
Array reference_matmul(const Array& a, const Array& b) {
  std::vector<std::uint64_t> sa = a.shape, sb = b.shape;
  const bool a1 = sa.size() == 1, b1 = sb.size() == 1;
  if (a1) sa.insert(sa.begin(), 1);
  if (b1) sb.push_back(1);
  const std::size_t nd = std::max(sa.size(), sb.size());
  sa.insert(sa.begin(), nd - sa.size(), 1);
  sb.insert(sb.begin(), nd - sb.size(), 1);
  std::vector<std::uint64_t> batch(nd - 2);
  for (std::size_t i = 0; i + 2 < nd; ++i)
    batch[i] = std::max(sa[i], sb[i]);
  const std::uint64_t m = sa[nd - 2], k = sa[nd - 1], n = sb[nd - 1];
  Array c;
  c.dtype = reference_result_type(a.dtype, b.dtype);
  c.shape = batch;
  if (!a1) c.shape.push_back(m);
  if (!b1) c.shape.push_back(n);
  c.bytes.resize(c.count() * item_size(c.dtype));
  std::uint64_t products = 1;
  for (auto d : batch)
    products *= d;
  // Flat index of an operand's element from the product's batch index (broadcast: index 0).
  auto flat = [&](const std::vector<std::uint64_t>& s, std::uint64_t p, std::uint64_t r,
                  std::uint64_t col) {
    std::vector<std::uint64_t> idx(nd);
    for (std::size_t i = nd - 2; i-- > 0;) {
      idx[i] = s[i] == 1 ? 0 : p % batch[i];
      p /= batch[i];
    }
    idx[nd - 2] = r;
    idx[nd - 1] = col;
    std::uint64_t f = 0;
    for (std::size_t i = 0; i < nd; ++i)
      f = f * s[i] + idx[i];
    return f;
  };
  for (std::uint64_t p = 0; p < products; ++p)
    for (std::uint64_t i = 0; i < m; ++i)
      for (std::uint64_t j = 0; j < n; ++j) {
        std::uint64_t wrapped = 0;
        std::complex<long double> z = 0;
        long double scale = 0;
        for (std::uint64_t t = 0; t < k; ++t) {
          const Value x = a.at(flat(sa, p, i, t)), y = b.at(flat(sb, p, t, j));
          wrapped += x.wrapped * y.wrapped;
          z += x.z * y.z;
          scale += std::abs(x.z) * std::abs(y.z);
        }
        c.scale.push_back(static_cast<double>(scale));
        std::byte* out = reinterpret_cast<std::byte*>(c.bytes.data()) +
                         ((p * m + i) * n + j) * item_size(c.dtype);
        if (is_integer(c.dtype)) {
          std::memcpy(out, &wrapped, item_size(c.dtype));
        } else if (c.dtype == DType::float32 || c.dtype == DType::float64) {
          const double d = static_cast<double>(z.real());
          const float f = static_cast<float>(d);
          if (c.dtype == DType::float32)
            std::memcpy(out, &f, 4);
          else
            std::memcpy(out, &d, 8);
        } else if (c.dtype == DType::complex64) {
          const std::complex<float> w(static_cast<float>(z.real()), static_cast<float>(z.imag()));
          std::memcpy(out, &w, 8);
        } else {
          const std::complex<double> w(static_cast<double>(z.real()),
                                       static_cast<double>(z.imag()));
          std::memcpy(out, &w, 16);
        }
      }
  return c;
}

Array read_array(const fs::path& path) {
  const std::string bytes = test::read_file(path);
  const NpyHeader h = parse_npy_header(bytes, path.string());
  return {h.dtype, h.shape, bytes.substr(h.data_offset), {}};
}

}  // namespace

TEST_CASE("result_type is numpy's promotion: the first type both cast to safely") {
  for (DType a : all_dtypes())
    for (DType b : all_dtypes()) {
      CAPTURE(dtype_name(a));
      CAPTURE(dtype_name(b));
      CHECK(result_type(a, b) == reference_result_type(a, b));
      CHECK(result_type(a, b) == result_type(b, a));
    }
}

TEST_CASE("limbs reconstruct every value and keep every sum of k products exact") {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 2000; ++trial) {
    const std::uint64_t max_a = rng() >> (rng() % 64), max_b = rng() >> (rng() % 64);
    const std::uint64_t k = 1 + rng() % (1u << (rng() % 31));
    const unsigned bits = 8u << (rng() % 4);
    const LimbPlan p = plan_limbs(max_a, max_b, k, bits);
    CAPTURE(max_a);
    CAPTURE(max_b);
    CAPTURE(k);
    __extension__ using u128 = unsigned __int128;
    const auto bound = [](unsigned limbs, unsigned b, std::uint64_t max) {
      return limbs == 1 ? u128{max} : u128{1} << b;
    };
    CHECK(bound(p.limbs_a, p.bits_a, max_a) * bound(p.limbs_b, p.bits_b, max_b) * k <= u128{1}
                                                                                           << 53);
    CHECK(p.products >= 1);
    const std::int64_t x = static_cast<std::int64_t>(rng()) >> (rng() % 64);
    if (magnitude(x) <= max_a) {
      std::uint64_t sum = 0;
      for (unsigned i = 0; i < p.limbs_a; ++i) {
        const std::int64_t l = limb_of(x, i, p.bits_a, p.limbs_a);
        CHECK((p.limbs_a == 1 || magnitude(l) <= (std::uint64_t{1} << p.bits_a)));
        sum += static_cast<std::uint64_t>(l) << (p.bits_a * i);
      }
      CHECK(sum == static_cast<std::uint64_t>(x));
    }
  }
}

TEST_CASE("matmul_shape: 1-D operands, broadcast stacks and numpy's refusals") {
  auto shape_of = [](std::vector<std::uint64_t> s) {
    return ArrayShape{s, contiguous_strides(s, false)};
  };
  const MatmulShape r = matmul_shape(shape_of({3, 1, 4, 5}), shape_of({2, 5, 6}), "a", "b");
  CHECK(r.out_shape == std::vector<std::uint64_t>{3, 2, 4, 6});
  CHECK(r.batch == 6);
  CHECK(r.a.broadcast_strides == std::vector<std::uint64_t>{20, 0});
  CHECK(r.b.broadcast_strides == std::vector<std::uint64_t>{0, 30});
  CHECK(matmul_shape(shape_of({5}), shape_of({5}), "a", "b").out_shape.empty());
  CHECK_THROWS_WITH(matmul_shape(shape_of({2, 3, 4}), shape_of({5, 4, 3}), "a.npy", "b.npy"),
                    doctest::Contains("operands could not be broadcast together"));
  CHECK_THROWS_WITH(matmul_shape(shape_of({}), shape_of({3}), "a.npy", "b.npy"),
                    doctest::Contains("Input operand 0 does not have enough dimensions"));
}

TEST_CASE(
    "multiply_npy follows np.matmul: every dtype pair, 1-D and stacked shapes, exact integers") {
  TempDir tmp;
  std::mt19937_64 rng(2024);
  const auto dtypes = all_dtypes();
  int checked = 0;
  for (std::size_t pair = 0; pair < dtypes.size() * dtypes.size(); ++pair) {
    const DType da = dtypes[pair % dtypes.size()], db = dtypes[pair / dtypes.size()];
    const std::uint64_t m = 1 + rng() % 5, k = rng() % 6, n = 1 + rng() % 4, batch = 1 + rng() % 3;
    std::vector<std::uint64_t> sa{m, k}, sb{k, n};
    switch (pair % 5) {
      case 1:
        sa = {k};
        break;
      case 2:
        sb = {k};
        break;
      case 3:
        sa = {batch, m, k};
        break;  // B broadcast
      case 4:
        sa = {batch, 1, m, k};
        sb = {2, k, n};
        break;  // both
    }
    const Array a = random_array(da, sa, rng), b = random_array(db, sb, rng);
    save(tmp / "a.npy", a);
    save(tmp / "b.npy", b);
    Options o;
    if (pair % 3 == 1) o.workers = 2;
    if (pair % 3 == 2) o.in_process = true;
    if (pair % 7 == 3) o.launch = Launch::spawn, o.workers = 2;
    CAPTURE(dtype_name(da));
    CAPTURE(dtype_name(db));
    CAPTURE(shape_string(sa));
    CAPTURE(shape_string(sb));
    multiply_npy(tmp / "a.npy", tmp / "b.npy", tmp / "c.npy", o);
    const Array got = read_array(tmp / "c.npy"), want = reference_matmul(a, b);
    CHECK(dtype_name(got.dtype) == dtype_name(want.dtype));
    CHECK(shape_string(got.shape) == shape_string(want.shape));
    // Integers bit for bit; floats within k roundings of sum |x||y| (large integers promoted
    // to floats round).
    if (is_integer(want.dtype) || got.dtype != want.dtype ||
        got.bytes.size() != want.bytes.size()) {
      CHECK(got.bytes == want.bytes);
    } else {
      const double eps =
          want.dtype == DType::float32 || want.dtype == DType::complex64 ? 0x1p-24 : 0x1p-53;
      for (std::uint64_t i = 0; i < want.count(); ++i)
        CHECK(std::abs(got.at(i).z - want.at(i).z) <= 4.0L * (k + 1) * eps * want.scale[i]);
    }
    ++checked;
  }
  CHECK(checked == 144);
  CHECK(test::segments_of(::getpid()).empty());
}
