// The host-program API: shmgemm::matmul on matrices in this process's memory.
#include <doctest/doctest.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "shmgemm/shmgemm.hpp"
#include "tests/test_support.hpp"

using namespace shmgemm;
using test::dense;

namespace {

// A matrix in host memory in either order, with a leading dimension `pad` larger than needed.
template <class T>
struct HostMatrix {
  std::vector<T> store;
  MatrixView<T> view;
  HostMatrix(std::size_t rows, std::size_t cols, Order order, std::size_t pad, std::mt19937_64& rng)
      : store((order == Order::row_major ? rows * (cols + pad) : cols * (rows + pad)) + 1) {
    std::uniform_real_distribution<double> dist(-1, 1);
    for (T& x : store)
      x = static_cast<T>(dist(rng));
    view = MatrixView<T>(store.data(), rows, cols,
                         order == Order::row_major ? cols + pad : rows + pad, order);
  }
};

template <class T>
void check_products(std::mt19937_64& rng) {
  const DType dtype = sizeof(T) == 8 ? DType::float64 : DType::float32;
  const std::size_t shapes[][3] = {{1, 1, 1}, {7, 5, 1}, {2, 3, 4}, {33, 17, 65}, {97, 89, 101}};
  int variant = 0;
  for (const auto& s : shapes) {
    for (Launch launch : {Launch::fork, Launch::spawn}) {
      for (unsigned workers : {0u, 1u, 3u}) {
        ++variant;
        const Order ao = variant % 2 ? Order::row_major : Order::col_major;
        const Order bo = variant % 3 ? Order::row_major : Order::col_major;
        const Order co = variant % 5 ? Order::row_major : Order::col_major;
        HostMatrix<T> a(s[0], s[1], ao, variant % 2, rng), b(s[1], s[2], bo, variant % 3, rng),
            c(s[0], s[2], co, variant % 4, rng);
        Options o;
        o.launch = launch;
        o.workers = workers;
        CAPTURE(fmt::format("{}x{}x{} launch={} workers={} orders {}{}{}", s[0], s[1], s[2],
                            to_string(launch), workers, int(ao), int(bo), int(co)));
        const Report r =
            matmul(MatrixView<const T>(a.view), MatrixView<const T>(b.view), c.view, o);
        CHECK(test::max_rel_diff(dense(c.view),
                                 test::reference_product(dense(a.view), dense(b.view))) <=
              test::tolerance(dtype, s[1]));
        CHECK(r.m == s[0]);
        if (workers > 0) CHECK(r.workers == std::min<std::size_t>(workers, s[0]));
        CHECK(test::segments_of(::getpid()).empty());
      }
    }
  }
}

}  // namespace

TEST_CASE("matmul matches a naive product: both dtypes, launches, orders, leading dimensions") {
  std::mt19937_64 rng(77);
  check_products<double>(rng);
  check_products<float>(rng);
}

TEST_CASE("matmul with workers copies C back once, and with spawn stages A and B") {
  std::mt19937_64 rng(5);
  HostMatrix<double> a(40, 30, Order::row_major, 0, rng), b(30, 20, Order::row_major, 0, rng),
      c(40, 20, Order::row_major, 0, rng);
  Options o;
  o.workers = 2;
  const Report forked =
      matmul(MatrixView<const double>(a.view), MatrixView<const double>(b.view), c.view, o);
  CHECK(forked.copied_bytes == 40 * 20 * 8);  // C only: the workers inherit A and B
  o.launch = Launch::spawn;
  const Report spawned =
      matmul(MatrixView<const double>(a.view), MatrixView<const double>(b.view), c.view, o);
  CHECK(spawned.copied_bytes == (40 * 30 + 30 * 20 + 40 * 20) * 8);
  Options in;
  in.in_process = true;
  CHECK(matmul(MatrixView<const double>(a.view), MatrixView<const double>(b.view), c.view, in)
            .copied_bytes == 0);
}

namespace {
// Each thread of this process and its Cpus_allowed_list, from /proc.
std::map<std::string, std::string> thread_affinities() {
  std::map<std::string, std::string> out;
  for (const std::filesystem::path& task : test::threads_of(::getpid())) {
    std::ifstream f(task / "status");
    for (std::string line; std::getline(f, line);)
      if (line.starts_with("Cpus_allowed_list:"))
        out[task.filename().string()] = line.substr(line.find_first_not_of(" \t", 18));
  }
  return out;
}
}  // namespace

TEST_CASE(
    "in process with two threads, the caller and OpenBLAS's thread compute on two CPUs, "
    "and get their affinity back after") {
  const std::map<std::string, std::string> before = thread_affinities();
  const std::string all = before.begin()->second;
  if (std::thread::hardware_concurrency() < 2 || all.find_first_of(",-") == std::string::npos) {
    SKIP_CASE("needs two CPUs");
  }
  std::mt19937_64 rng(3);
  HostMatrix<double> a(800, 800, Order::row_major, 0, rng), b(800, 800, Order::row_major, 0, rng),
      c(800, 800, Order::row_major, 0, rng);
  Options in;
  in.in_process = true;
  in.threads_per_worker = 2;
  // Watch the threads' affinities while products run; a one-CPU list on two threads at once,
  // two different CPUs, is the placement.
  std::atomic<bool> done{false};
  std::set<std::string> single_cpus_at_once;
  std::thread watcher([&] {
    while (!done.load()) {
      std::set<std::string> singles;
      for (const auto& [tid, cpus] : thread_affinities())
        if (cpus.find_first_of(",-") == std::string::npos) singles.insert(cpus);
      if (singles.size() >= 2) single_cpus_at_once = singles;
      ::usleep(500);
    }
  });
  for (int i = 0; i < 10; ++i)
    matmul(MatrixView<const double>(a.view), MatrixView<const double>(b.view), c.view, in);
  done = true;
  watcher.join();
  CHECK(single_cpus_at_once.size() == 2);
  // Afterwards every thread (OpenBLAS's included) may run anywhere it could before.
  for (const auto& [tid, cpus] : thread_affinities()) {
    CAPTURE(tid);
    CHECK(cpus == all);
  }
  CHECK(test::max_rel_diff(dense(c.view), test::reference_product(dense(a.view), dense(b.view))) <=
        test::tolerance(DType::float64, 800));
}

TEST_CASE("matmul refuses shapes that do not multiply, the way numpy words it") {
  std::vector<double> x(100), y(100), z(100);
  auto error_of = [](auto&& call) -> std::string {
    try {
      call();
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::shape_mismatch);
      return e.what();
    }
    return "";
  };
  CHECK(error_of([&] {
          matmul(MatrixView<const double>(x.data(), 3, 4), MatrixView<const double>(y.data(), 5, 6),
                 MatrixView<double>(z.data(), 3, 6));
        }) == "shapes (3,4) and (5,6) not aligned: 4 (dim 1) != 5 (dim 0)");
  CHECK(error_of([&] {
          matmul(MatrixView<const double>(x.data(), 3, 4), MatrixView<const double>(y.data(), 4, 6),
                 MatrixView<double>(z.data(), 3, 5));
        }) == "output shape (3,5) does not match the product's (3,6)");
  CHECK_THROWS_AS(MatrixView<double>(x.data(), 3, 4, 2), Error);
  CHECK_THROWS_AS(MatrixView<double>(x.data(), 3, 4, 2, Order::col_major), Error);
}

TEST_CASE("matmul on degenerate shapes: nothing to do, or zeros when k = 0") {
  std::vector<double> a(1), b(1), c(12, 7.0);
  matmul(MatrixView<const double>(a.data(), 3, 0), MatrixView<const double>(b.data(), 0, 4),
         MatrixView<double>(c.data(), 3, 4));
  for (double x : c)
    CHECK(x == 0.0);
}

TEST_CASE(
    "matmul refuses options it cannot honour, naming the field, and never touches the host's "
    "memory") {
  std::mt19937_64 rng(12);
  const std::size_t n = 256;
  HostMatrix<double> a(n, n, Order::row_major, 0, rng), b(n, n, Order::row_major, 0, rng),
      c(n, n, Order::row_major, 0, rng);
  const std::vector<double> a_before = a.store, b_before = b.store, c_before = c.store;
  auto refused = [&](const Options& o, const std::string& expect) {
    CAPTURE(expect);
    try {
      matmul(MatrixView<const double>(a.view), MatrixView<const double>(b.view), c.view, o);
      FAIL("accepted");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::invalid_argument);
      CHECK(std::string(e.what()).find(expect) != std::string::npos);
    }
    CHECK(a.store == a_before);
    CHECK(b.store == b_before);
    CHECK(c.store == c_before);
  };
  // Streaming releases pages (MADV_DONTNEED): on the host's own A and C that destroyed them.
  Options stream;
  stream.rows_per_step = 64;
  for (bool in_process : {true, false}) {
    stream.in_process = in_process;
    stream.workers = in_process ? 0 : 2;
    refused(stream, "Options::rows_per_step");
  }
  // The job descriptor has 256 worker slots: more wrote past it.
  for (Launch launch : {Launch::fork, Launch::spawn}) {
    Options many;
    many.workers = 300;
    many.launch = launch;
    refused(many, "Options::workers: 300: at most 256");
  }
  Options arena;
  arena.pool_bytes = 1 << 20;
  refused(arena, "Options::pool_bytes: applies to a Pool only");
  CHECK(test::segments_of(::getpid()).empty());
}
