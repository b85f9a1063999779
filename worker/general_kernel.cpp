#include "worker/general_kernel.hpp"

#include <sys/mman.h>

#include <cblas.h>
#include <algorithm>
#include <climits>

#include <complex>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "common/mapped_file.hpp"
#include "common/partition.hpp"
#include "worker/convert.hpp"
#include "worker/slice_kernel.hpp"

namespace shmgemm {
namespace {

// Element offset of product `p` (flat index over the job's batch axes) along `strides`.
std::uint64_t offset_of(std::uint64_t p, std::uint32_t ndim, const std::uint64_t* shape,
                        const std::uint64_t* strides) {
  std::uint64_t offset = 0;
  for (std::uint32_t i = ndim; i-- > 0;) {
    offset += (p % shape[i]) * strides[i];
    p /= shape[i];
  }
  return offset;
}

// Strides, in matrices, of the prepared B (B's own matrices, contiguous) along the job's batch
// axes: 0 where B is broadcast.
std::vector<std::uint64_t> prepared_strides(const GeneralJob& g) {
  std::vector<std::uint64_t> strides(g.batch_ndim, 0);
  std::uint64_t step = 1;
  for (std::uint32_t j = 0; j < g.b.batch_ndim; ++j) {
    const std::uint32_t own = g.b.batch_ndim - 1 - j, axis = g.batch_ndim - 1 - j;
    if (g.b.batch_shape[own] != 1) strides[axis] = step;
    step *= g.b.batch_shape[own];
  }
  return strides;
}

}  // namespace

std::optional<ConstMatrixRef> blas_view(const std::byte* base, std::uint64_t rows,
                                        std::uint64_t cols, std::uint64_t row_stride,
                                        std::uint64_t col_stride) {
  const std::uint64_t r = std::max<std::uint64_t>(rows, 1), c = std::max<std::uint64_t>(cols, 1);
  if ((cols <= 1 || col_stride == 1) && (rows <= 1 || row_stride >= c)) {
    const std::uint64_t ld = rows <= 1 ? c : row_stride;
    if (ld <= INT_MAX) return ConstMatrixRef{base, rows, cols, ld, Layout::row_major};
  }
  if ((rows <= 1 || row_stride == 1) && (cols <= 1 || col_stride >= r)) {
    const std::uint64_t ld = cols <= 1 ? r : col_stride;
    if (ld <= INT_MAX) return ConstMatrixRef{base, rows, cols, ld, Layout::col_major};
  }
  return std::nullopt;
}

namespace {

// Phase::scan for worker `id` of `workers`: the largest magnitudes in its share of A's and of
// B's elements (integer operands).
void scan_share(const GeneralJob& g, const GeneralOperands& ops, std::size_t id,
                std::size_t workers, std::uint64_t& max_a, std::uint64_t& max_b) {
  const RowRange ea = partition_rows(g.a.elements, workers, id, 1);
  const RowRange eb = partition_rows(g.b.elements, workers, id, 1);
  max_a = max_magnitude(g.a.dtype, ops.a + ea.begin * item_size(g.a.dtype), ea.size());
  max_b = max_magnitude(g.b.dtype, ops.b + eb.begin * item_size(g.b.dtype), eb.size());
}

// Phase::prepare's share of worker `id`: rows of B's stack (its matrices x k rows).
RowRange prepare_share(const GeneralJob& g, std::uint64_t k, std::size_t id, std::size_t workers) {
  return partition_rows(stack_matrices(g.b) * k, workers, id, 1);
}

// Phase::prepare: converts rows `rows` of B's stack into ops.prepared, in the compute type or,
// for integer products, as limbs_b limbs in doubles.
void prepare_rows(const GeneralJob& g, std::uint64_t k, std::uint64_t n, const GeneralOperands& ops,
                  RowRange rows) {
  const std::size_t ib = item_size(g.b.dtype);
  const std::uint64_t matrices = stack_matrices(g.b);
  std::vector<std::int64_t> values;
  for (std::uint64_t t = rows.begin; t < rows.end;) {
    // Rows r0..r1 of B's matrix q, at once.
    const std::uint64_t q = t / k, r0 = t % k, r1 = std::min<std::uint64_t>(k, r0 + rows.end - t);
    const std::uint64_t offset =
        offset_of(q, g.b.batch_ndim, g.b.batch_shape, g.b.batch_strides) + r0 * g.b.row_stride;
    const StridedBlock from{g.b.dtype, ops.b + offset * ib, r1 - r0,
                            n,         g.b.row_stride,      g.b.col_stride};
    const std::uint64_t first = (q * k + r0) * n, count = (r1 - r0) * n;
    if (!g.integer) {
      gather_convert(from, g.compute, ops.prepared + first * item_size(g.compute));
    } else {
      values.resize(count);
      gather_int64(from, values.data());
      auto* out = reinterpret_cast<double*>(ops.prepared);
      for (unsigned j = 0; j < g.limbs.limbs_b; ++j)
        split_limb(values.data(), count, j, g.limbs.bits_b, g.limbs.limbs_b,
                   out + j * matrices * k * n + first);
    }
    t += r1 - r0;
  }
}

// c = a·b for complex products with a dimension of 1 (a vector operand, k = 1), computed as
// numpy's matmul loop computes them, which never calls zgemm there: a row by a column with
// zdotu (k > 1), a vector and a matrix with zgemv (transposed as numpy passes them), and the rest
// term by term, (ar br - ai bi) + (ar bi + ai br) i from zero. Infinities then come out as numpy's
// (nan-infj where zgemm's kernels give nan+nanj). `m` is the product's rows (c may hold a chunk
// of them).
template <class T>
void complex_like_numpy_of(std::uint64_t m, const ConstMatrixRef& a, const ConstMatrixRef& b,
                           const MatrixRef& c) {
  using R = typename T::value_type;
  const std::uint64_t k = a.cols, n = c.cols;
  // Element strides along rows and columns of a matrix ref.
  auto rs = [](const auto& x) { return x.layout == Layout::row_major ? x.ld : 1; };
  auto cs = [](const auto& x) { return x.layout == Layout::row_major ? 1 : x.ld; };
  const auto* pa = reinterpret_cast<const T*>(a.data);
  const auto* pb = reinterpret_cast<const T*>(b.data);
  auto* pc = reinterpret_cast<T*>(c.data);
  const T one(1, 0), zero(0, 0);
  auto blas_int = [](std::uint64_t x) { return static_cast<blasint>(x); };
  auto gemv = [&](CBLAS_ORDER order, std::uint64_t rows, std::uint64_t cols, const T* mat,
                  std::uint64_t ld, const T* x, std::uint64_t incx, T* y, std::uint64_t incy) {
    if constexpr (std::is_same_v<R, double>)
      cblas_zgemv(order, CblasTrans, blas_int(rows), blas_int(cols), &one, mat, blas_int(ld), x,
                  blas_int(incx), &zero, y, blas_int(incy));
    else
      cblas_cgemv(order, CblasTrans, blas_int(rows), blas_int(cols), &one, mat, blas_int(ld), x,
                  blas_int(incx), &zero, y, blas_int(incy));
  };
  // A row by a column: zdotu, except for k = 1, where numpy's iterator gives the axis of size 1
  // a stride of 0, which BLAS cannot take, and numpy's dot loops term by term.
  if (m == 1 && n == 1 && k > 1) {
    T r;
    if constexpr (std::is_same_v<R, double>)
      cblas_zdotu_sub(blas_int(k), pa, blas_int(std::max<std::uint64_t>(cs(a), 1)), pb,
                      blas_int(std::max<std::uint64_t>(rs(b), 1)), &r);
    else
      cblas_cdotu_sub(blas_int(k), pa, blas_int(std::max<std::uint64_t>(cs(a), 1)), pb,
                      blas_int(std::max<std::uint64_t>(rs(b), 1)), &r);
    pc[0] = r;
    return;
  }
  if (k > 1 && m == 1) {  // vector @ matrix: numpy's gemv of B (k x n) transposed
    if (b.layout == Layout::col_major)
      gemv(CblasColMajor, k, n, pb, b.ld, pa, std::max<std::uint64_t>(cs(a), 1), pc, 1);
    else
      gemv(CblasRowMajor, k, n, pb, b.ld, pa, std::max<std::uint64_t>(cs(a), 1), pc, 1);
    return;
  }
  if (k > 1 && n == 1) {  // matrix @ vector: numpy's gemv of A (rows x k)
    if (a.layout == Layout::row_major)
      gemv(CblasColMajor, k, c.rows, pa, a.ld, pb, std::max<std::uint64_t>(rs(b), 1), pc, c.ld);
    else
      gemv(CblasRowMajor, k, c.rows, pa, a.ld, pb, std::max<std::uint64_t>(rs(b), 1), pc, c.ld);
    return;
  }
  for (std::uint64_t i = 0; i < c.rows; ++i)
    for (std::uint64_t j = 0; j < n; ++j) {
      R re = 0, im = 0;
      for (std::uint64_t l = 0; l < k; ++l) {
        const T x = pa[i * rs(a) + l * cs(a)], y = pb[l * rs(b) + j * cs(b)];
        re += x.real() * y.real() - x.imag() * y.imag();
        im += x.real() * y.imag() + x.imag() * y.real();
      }
      pc[i * c.ld + j] = T(re, im);
    }
}

void complex_like_numpy(DType dtype, std::uint64_t m, const ConstMatrixRef& a,
                        const ConstMatrixRef& b, const MatrixRef& c) {
  if (dtype == DType::complex64)
    complex_like_numpy_of<std::complex<float>>(m, a, b, c);
  else
    complex_like_numpy_of<std::complex<double>>(m, a, b, c);
}

// Phase::multiply: rows `rows` of the flattened C (batch x m rows of n), at most `chunk_rows`
// per BLAS call, calling done(rows finished) after each. Integer products run limb pair by limb
// pair in doubles and wrap into the result modulo 2^bits.
void multiply_rows(const GeneralJob& g, std::uint64_t k, std::uint64_t n,
                   const GeneralOperands& ops, RowRange rows, std::uint64_t chunk_rows,
                   bool release, const std::function<void(std::uint64_t)>& done) {
  const std::uint64_t m = g.a.rows;
  const std::size_t ia = item_size(g.a.dtype), ib = item_size(g.b.dtype);
  const std::size_t ic = item_size(g.result), icompute = item_size(g.compute);
  const std::vector<std::uint64_t> prep_strides = prepared_strides(g);
  const std::uint64_t matrices = stack_matrices(g.b);
  const LimbPlan& limbs = g.limbs;
  const unsigned result_bits = dtype_bits(g.result);
  std::vector<std::byte> a_dense;
  std::vector<std::int64_t> a_values;
  std::vector<double> a_limbs, t;
  std::vector<std::uint64_t> acc;
  for (std::uint64_t f = rows.begin; f < rows.end;) {
    // Rows r0..r1 of product p.
    const std::uint64_t p = f / m, r0 = f % m;
    const std::uint64_t r1 = std::min({m, r0 + chunk_rows, r0 + (rows.end - f)});
    const std::uint64_t nr = r1 - r0;
    const std::uint64_t a_at =
        offset_of(p, g.batch_ndim, g.batch_shape, g.a.broadcast_strides) + r0 * g.a.row_stride;
    const StridedBlock a_block{g.a.dtype, ops.a + a_at * ia, nr, k, g.a.row_stride, g.a.col_stride};
    const std::uint64_t q = offset_of(p, g.batch_ndim, g.batch_shape, prep_strides.data());
    std::byte* c_rows = ops.c + (p * m + r0) * n * ic;
    const ConstMatrixRef dense_a{nullptr, nr, k, std::max<std::uint64_t>(k, 1), Layout::row_major};
    const ConstMatrixRef dense_b{nullptr, k, n, std::max<std::uint64_t>(n, 1), Layout::row_major};
    if (!g.integer) {
      std::optional<ConstMatrixRef> a;
      if (g.a.dtype == g.compute)
        a = blas_view(a_block.base, nr, k, g.a.row_stride, g.a.col_stride);
      if (!a) {
        a_dense.resize(nr * k * icompute);
        gather_convert(a_block, g.compute, a_dense.data());
        a = dense_a;
        a->data = a_dense.data();
      }
      std::optional<ConstMatrixRef> b;
      if (g.b_prepared) {
        b = dense_b;
        b->data = ops.prepared + q * k * n * icompute;
      } else {
        const std::uint64_t b_at = offset_of(p, g.batch_ndim, g.batch_shape, g.b.broadcast_strides);
        b = blas_view(ops.b + b_at * ib, k, n, g.b.row_stride, g.b.col_stride);
      }
      const MatrixRef c{c_rows, nr, n, std::max<std::uint64_t>(n, 1), Layout::row_major};
      if (is_complex(g.compute) && (m == 1 || k == 1 || n == 1))
        complex_like_numpy(g.compute, m, *a, *b, c);
      else
        compute_rows(g.compute, *a, *b, c, {0, nr});
    } else {
      // A's rows as int64 (uint64 taken modulo 2^64, as the scan took them), split into limbs.
      const std::uint64_t a_count = nr * k, c_count = nr * n;
      a_values.resize(a_count);
      gather_int64(a_block, a_values.data());
      a_limbs.resize(limbs.limbs_a * a_count);
      for (unsigned i = 0; i < limbs.limbs_a; ++i)
        split_limb(a_values.data(), a_count, i, limbs.bits_a, limbs.limbs_a,
                   a_limbs.data() + i * a_count);
      const auto* prepared = reinterpret_cast<const double*>(ops.prepared);
      // One exact dgemm of limb i of A by limb j of B into `out` (nr x n doubles).
      auto limb_product = [&](unsigned i, unsigned j, double* out) {
        ConstMatrixRef a = dense_a, b = dense_b;
        a.data = reinterpret_cast<const std::byte*>(a_limbs.data() + i * a_count);
        b.data = reinterpret_cast<const std::byte*>(prepared + (j * matrices + q) * k * n);
        compute_rows(DType::float64, a, b,
                     {reinterpret_cast<std::byte*>(out), nr, n, std::max<std::uint64_t>(n, 1),
                      Layout::row_major},
                     {0, nr});
      };
      if (limbs.products == 1) {
        // Only pair (0, 0), shift 0: for 8-byte results straight into C, converted in place.
        const bool in_place = ic == sizeof(double);
        if (!in_place) t.resize(c_count);
        double* out = in_place ? reinterpret_cast<double*>(c_rows) : t.data();
        limb_product(0, 0, out);
        store_exact(out, c_count, g.result, c_rows);
      } else {
        t.resize(c_count);
        acc.assign(c_count, 0);
        for (unsigned i = 0; i < limbs.limbs_a; ++i)
          for (unsigned j = 0; j < limbs.limbs_b; ++j)
            if (limb_pair_needed(limbs, i, j, result_bits)) {
              limb_product(i, j, t.data());
              accumulate_shifted(t.data(), c_count, i * limbs.bits_a + j * limbs.bits_b,
                                 acc.data());
            }
        store_wrapped(acc.data(), c_count, g.result, c_rows);
      }
    }
    // Streaming (larger than memory): the rows of A and C this chunk is done with need not stay
    // resident (file mappings: clean pages dropped, dirty ones written back).
    if (release) {
      if ((k <= 1 || g.a.col_stride == 1) && (nr <= 1 || g.a.row_stride == k))
        advise_pages(a_block.base, nr * k * ia, MADV_DONTNEED);
      advise_pages(c_rows, nr * n * ic, MADV_DONTNEED);
    }
    f += nr;
    done(f - rows.begin);
  }
}

// For footprint experiments (Options::copy_inputs, as joblib without memmapping): a private copy
// of B (as the multiply reads it: prepared, or as it is) and of the span of A that rows `rows`
// read (all of A for a stack), and the operands that read them.
GeneralOperands private_inputs(const JobDescriptor& job, const GeneralOperands& ops, RowRange rows,
                               std::vector<std::byte>& own_a, std::vector<std::byte>& own_b) {
  const GeneralJob& g = job.general;
  GeneralOperands use = ops;
  if (g.b_prepared) {
    own_b.assign(ops.prepared,
                 ops.prepared + prepared_elements(g, job.k, job.n) * item_size(g.compute));
    use.prepared = own_b.data();
  } else {
    own_b.assign(ops.b, ops.b + g.b.elements * item_size(g.b.dtype));
    use.b = own_b.data();
  }
  const std::size_t ia = item_size(g.a.dtype);
  std::uint64_t lo = 0, hi = g.a.elements;
  if (g.batch == 1 && rows.size() > 0 && job.k > 0) {
    lo = rows.begin * g.a.row_stride;
    hi = (rows.end - 1) * g.a.row_stride + (job.k - 1) * g.a.col_stride + 1;
  }
  own_a.assign(ops.a + lo * ia, ops.a + hi * ia);
  // Element e of A is at own_a[(e - lo) * ia]: the base lies lo elements before the copy.
  use.a =
      reinterpret_cast<const std::byte*>(reinterpret_cast<std::uintptr_t>(own_a.data()) - lo * ia);
  return use;
}

}  // namespace

void run_phase(JobDescriptor& job, std::size_t id, const GeneralOperands& ops,
               const std::function<void(std::uint64_t)>& done) {
  const GeneralJob& g = job.general;
  WorkerSlot& slot = job.slots[id];
  switch (g.phase) {
    case Phase::scan:
      scan_share(g, ops, id, job.workers, slot.max_a, slot.max_b);
      return;
    case Phase::prepare:
      prepare_rows(g, job.k, job.n, ops, prepare_share(g, job.k, id, job.workers));
      return;
    case Phase::multiply: {
      const RowRange rows{slot.row_begin, slot.row_end};
      std::vector<std::byte> own_a, own_b;
      const GeneralOperands use =
          job.copy_inputs ? private_inputs(job, ops, rows, own_a, own_b) : ops;
      multiply_rows(g, job.k, job.n, use, rows, job.chunk_rows, job.stream != 0, done);
      return;
    }
  }
}

}  // namespace shmgemm
