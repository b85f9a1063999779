// shmgemm::Pool, the facade: allocation from the arena, and the calls in their public forms.
#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "engine/pool_state.hpp"
#include "engine/product.hpp"
#include "engine/views.hpp"

namespace shmgemm {

Pool::Pool() : Pool(PoolOptions{}) {}

Pool::Pool(const PoolOptions& options)
    : state_(std::make_shared<detail::PoolState>(detail::all_options(options))) {}

Pool::Pool(FromAll, const Options& options)
    : state_(std::make_shared<detail::PoolState>(options)) {}

Pool::~Pool() {
  if (!state_) return;
  if (!state_->owned_here()) {
    // A forked child's copy: its monitor thread, workers, queue and arena are the parent's.
    // Nothing of it may be stopped, joined, freed or unmapped here, so it is left as it is.
    static_cast<void>(new std::shared_ptr<detail::PoolState>(std::move(state_)));
    return;
  }
  state_->shutdown();
}

void Pool::close() {
  if (state_->owned_here()) state_->shutdown();
}

bool Pool::closed() const {
  return state_->closed();
}

PoolBlock Pool::allocate(std::size_t bytes) {
  state_->check_usable();
  void* p = state_->arena().allocate(bytes);
  // The block keeps the pool's state (and so its arena's mapping) alive.
  return PoolBlock(p, [state = state_](void* q) { state->arena().free(q); });
}

SharedArray Pool::alloc(DType dtype, std::vector<std::int64_t> shape) {
  state_->check_usable();
  std::size_t bytes = item_size(dtype);
  for (std::int64_t d : shape)
    if (d < 0 || __builtin_mul_overflow(bytes, static_cast<std::size_t>(d), &bytes))
      throw Error(
          ErrorCode::invalid_argument,
          fmt::format("Pool::alloc: shape ({}) of {} {}", fmt::join(shape, ","), dtype_name(dtype),
                      d < 0 ? "has a negative dimension" : "overflows the size of memory"));
  return SharedArray(allocate(bytes), dtype, std::move(shape));
}

std::future<Report> Pool::submit(const ArrayView& a, const ArrayView& b,
                                 const MutableArrayView& out, std::function<void()> on_done,
                                 JobControl control) {
  return state_->submit(a, b, out, std::move(on_done), std::move(control));
}

std::vector<std::future<Report>> Pool::submit_many(std::span<const Product> products) {
  state_->check_usable();
  std::vector<double> flops(products.size());
  for (std::size_t i = 0; i < products.size(); ++i) {
    try {
      static_cast<void>(detail::check_arrays(products[i].a, products[i].b, &products[i].out));
    } catch (const Error& e) {
      throw Error(e.code(), fmt::format("product {}: {}", i, e.what()));
    }
    flops[i] = matmul_flops(products[i].a, products[i].b);
  }
  std::vector<std::size_t> order(products.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t x, std::size_t y) { return flops[x] > flops[y]; });
  std::vector<std::future<Report>> futures(products.size());
  for (std::size_t i : order)
    futures[i] = submit(products[i].a, products[i].b, products[i].out);
  return futures;
}

Report Pool::matmul(const ArrayView& a, const ArrayView& b, const MutableArrayView& out) {
  std::future<Report> f = submit(a, b, out);
  return state_->wait(f);
}

template <class T>
std::future<Report> submit_matrices(detail::PoolState& pool, MatrixView<const T> a,
                                    MatrixView<const T> b, MatrixView<T> c) {
  pool.check_usable();
  detail::check_product_shapes(detail::ref_of(a), detail::ref_of(b), detail::ref_of(c));
  return pool.submit(detail::array_view(a), detail::array_view(b), detail::array_view(c));
}

std::future<Report> Pool::submit(MatrixView<const double> a, MatrixView<const double> b,
                                 MatrixView<double> c) {
  return submit_matrices<double>(*state_, a, b, c);
}

std::future<Report> Pool::submit(MatrixView<const float> a, MatrixView<const float> b,
                                 MatrixView<float> c) {
  return submit_matrices<float>(*state_, a, b, c);
}

Report Pool::matmul(MatrixView<const double> a, MatrixView<const double> b, MatrixView<double> c) {
  std::future<Report> f = submit(a, b, c);
  return state_->wait(f);
}

Report Pool::matmul(MatrixView<const float> a, MatrixView<const float> b, MatrixView<float> c) {
  std::future<Report> f = submit(a, b, c);
  return state_->wait(f);
}

unsigned Pool::workers() const {
  state_->check_usable();
  return state_->workers();
}
PoolStats Pool::stats() const {
  state_->check_usable();
  return state_->stats();
}

}  // namespace shmgemm
