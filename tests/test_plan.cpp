#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "engine/plan.hpp"

using namespace shmgemm;
using namespace shmgemm::detail;

namespace {

Calibration machine(double thread_scaling) {
  Calibration c;
  c.cores = 4;
  c.thread_scaling = thread_scaling;
  return c;
}

}  // namespace

TEST_CASE("the cost model: more work takes longer, launching costs") {
  const Calibration c = machine(0.9);
  double last = 0;
  for (std::uint64_t s : {16, 64, 256, 1024, 4096}) {
    const ProductShape p{s, s, s, DType::float64};
    const double in = predict_in_process(p, 4, c);
    CHECK(in > last);
    last = in;
    // One worker with every thread does the same work plus a launch.
    CHECK(predict_workers(p, 1, 4, Launch::fork, Backing::file, c) > in);
    CHECK(predict_workers(p, 2, 2, Launch::spawn, Backing::file, c) >
          predict_workers(p, 2, 2, Launch::fork, Backing::file, c));
    CHECK(predict_workers(p, 2, 2, Launch::fork, Backing::shm, c) >
          predict_workers(p, 2, 2, Launch::fork, Backing::file, c));
  }
  // float32 runs at its own (faster) rate.
  CHECK(predict_in_process({1000, 1000, 1000, DType::float32}, 1, c) <
        predict_in_process({1000, 1000, 1000, DType::float64}, 1, c));
}

TEST_CASE("the automatic plan: in process for small products, workers where threads scale badly") {
  Options o;  // workers = 0: automatic
  const Plan small = make_plan({64, 64, 64, DType::float64}, o, 4, machine(0.9));
  CHECK(small.automatic);
  CHECK(small.in_process);
  CHECK(small.threads_per_worker == 4);
  CHECK(small.candidates.size() == 5);
  CHECK(small.reason.find("in process x 4 threads predicted") == 0);

  // Threads that scale at 60%: four single-threaded workers beat one process of four threads.
  const Plan big = make_plan({4000, 4000, 4000, DType::float64}, o, 4, machine(0.6));
  CHECK(!big.in_process);
  CHECK(big.workers == 4);
  CHECK(big.threads_per_worker == 1);
  CHECK(big.rows.size() == 4);
  CHECK(big.rows.back().end == 4000);
  CHECK(big.reason.find("4 workers x 1 thread predicted") == 0);

  // A chosen plan is never predicted slower than in process.
  for (std::uint64_t s : {8, 100, 1000, 5000})
    for (double scaling : {0.5, 0.8, 1.0}) {
      const Plan p = make_plan({s, s, s, DType::float64}, o, 4, machine(scaling));
      double chosen = p.candidates.front().predicted_seconds;
      for (const PlanCandidate& x : p.candidates)
        if (x.workers == p.workers && !p.in_process) chosen = x.predicted_seconds;
      CHECK(chosen <= p.candidates.front().predicted_seconds);
    }
}

TEST_CASE("the plan keeps what the caller fixed") {
  Options o;
  o.workers = 3;
  Plan p = make_plan({10, 5, 5, DType::float64}, o, 4, machine(0.9));
  CHECK(!p.automatic);
  CHECK(p.workers == 3);
  CHECK(p.threads_per_worker == 1);  // 4 cores / 3 workers
  o.threads_per_worker = 2;
  CHECK(make_plan({10, 5, 5, DType::float64}, o, 4, machine(0.9)).threads_per_worker == 2);
  o.workers = 8;
  CHECK(make_plan({3, 5, 5, DType::float64}, o, 4, machine(0.9)).workers == 3);  // capped at m
  Options in;
  in.in_process = true;
  p = make_plan({4000, 4000, 4000, DType::float64}, in, 4, machine(0.1));
  CHECK(p.in_process);
  CHECK(p.threads_per_worker == 4);
  // Automatic with m below the cores: only as many workers as rows are weighed.
  Options automatic;
  CHECK(make_plan({2, 1000, 1000, DType::float64}, automatic, 4, machine(0.9)).candidates.size() ==
        3);
}

TEST_CASE("split_products: every row of every product once, no part above its share and a piece") {
  const double works[] = {0, 1, 3, 10, 50};
  const std::uint64_t heights[] = {0, 1, 2, 5, 100};
  std::size_t cases = 0, splits = 0;
  for (std::size_t count = 0; count <= 4; ++count)
    for (std::size_t pick = 0, picks = std::size_t(std::pow(25, count));
         pick<picks; pick += count> 3 ? 37 : 1)
      for (std::size_t parts = 1; parts <= 4; ++parts) {
        std::vector<double> flops;
        std::vector<std::uint64_t> rows;
        for (std::size_t i = 0, code = pick; i < count; ++i, code /= 25) {
          flops.push_back(works[code % 5]);
          rows.push_back(heights[code / 5 % 5]);
        }
        CAPTURE(count);
        CAPTURE(pick);
        CAPTURE(parts);
        const auto dealt = detail::split_products(flops, rows, parts);
        REQUIRE(dealt.size() == parts);
        ++cases;
        const double total = std::accumulate(flops.begin(), flops.end(), 0.0);
        std::vector<std::vector<RowRange>> covered(count);
        double dealt_flops = 0;
        for (const auto& part : dealt) {
          double load = 0;
          for (const detail::ProductPiece& piece : part) {
            REQUIRE(piece.product < count);
            covered[piece.product].push_back(piece.rows);
            load += piece.flops;
          }
          dealt_flops += load;
          if (!part.empty()) CHECK(load <= total / double(parts) + part.back().flops + 1e-9);
        }
        CHECK(dealt_flops == doctest::Approx(total));
        for (std::size_t i = 0; i < count; ++i) {
          CAPTURE(i);
          std::sort(covered[i].begin(), covered[i].end(),
                    [](const RowRange& x, const RowRange& y) { return x.begin < y.begin; });
          REQUIRE(!covered[i].empty());
          CHECK(covered[i].size() <=
                std::max<std::size_t>(1, std::min<std::size_t>(parts, rows[i])));
          splits += covered[i].size() > 1;
          std::size_t at = 0;
          for (const RowRange& r : covered[i]) {
            CHECK(r.begin == at);
            at = r.end;
          }
          CHECK(at == rows[i]);
        }
      }
  CHECK(cases > 1000);
  CHECK(splits > 100);
  // One large product among small ones: both parts share it, each within a row of half.
  const double flops[] = {100, 1, 1};
  const std::uint64_t rows[] = {100, 10, 10};
  const auto dealt = detail::split_products(flops, rows, 2);
  for (const auto& part : dealt) {
    const auto big = std::find_if(part.begin(), part.end(),
                                  [](const detail::ProductPiece& p) { return p.product == 0; });
    REQUIRE(big != part.end());
    CHECK(big->rows.size() == 50);
  }
}
