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

TEST_CASE("plan_set: a set's products in process, side by side or not, or on one-thread workers") {
  const Calibration c = machine(0.9);
  const std::size_t cores = 4;
  const std::size_t threads = within_thread_limit(cores);
  const double launch = 1e-3;
  // The calibration's rate, and `seconds` for any launch.
  auto costs = [&c](double seconds) -> SetCostsOf {
    return [&c, seconds](std::size_t) { return SetCosts{c.gflops_f64, seconds}; };
  };
  Options automatic;
  // 1000 products of 18 MFLOP: in process, side by side on every thread the host allows.
  SetShape small{1000, 1.8e10, 2e8};
  Plan p = plan_set(small, automatic, cores, 4, true, costs(launch));
  CHECK(p.in_process);
  CHECK(p.workers == 0);
  CHECK(p.side_by_side == std::min<std::size_t>(threads, 4));
  CHECK(p.threads_per_worker == 1);
  CHECK(p.reason.find("under 50 MFLOP") != std::string::npos);
  // The host's OpenBLAS count is 1 (threadpoolctl's limit): one after another, on one thread.
  p = plan_set(small, automatic, cores, 1, true, costs(launch));
  CHECK(p.side_by_side == 0);
  CHECK(p.threads_per_worker == threads);  // InProcessBlas keeps it within the host's count
  // Another thread may be inside OpenBLAS: OpenBLAS's count is not touched, no side by side.
  p = plan_set(small, automatic, cores, 4, false, costs(launch));
  CHECK(p.in_process);
  CHECK(p.side_by_side == 0);
  // One product more than a thread's share: OpenBLAS's threads serve it better.
  p = plan_set({10, 1e9, 0.5e9}, automatic, cores, 4, true, costs(launch));
  CHECK(p.side_by_side == 0);
  // One product: nothing to run beside it.
  CHECK(plan_set({1, 1e6, 1e6}, automatic, cores, 4, true, costs(launch)).side_by_side == 0);
  // Products of 100 MFLOP, 40 GFLOP in all: one-thread workers, one per core.
  const SetShape large{400, 4e10, 1e8};
  p = plan_set(large, automatic, cores, 4, true, costs(launch));
  CHECK(!p.in_process);
  CHECK(p.workers == cores);
  CHECK(p.threads_per_worker == 1);
  CHECK(p.reason.find("largest first") != std::string::npos);
  // ... but never forked while another thread may be inside OpenBLAS.
  p = plan_set(large, automatic, cores, 4, false, costs(launch));
  CHECK(p.in_process);
  CHECK(p.reason.find("a fork then is unsafe") != std::string::npos);
  // Launching them would cost about what the set takes.
  CHECK(plan_set(large, automatic, cores, 4, true, costs(10.0)).in_process);
  // What the caller fixed is kept: workers (at most the products), threads, in process.
  Options o;
  o.workers = 3;
  p = plan_set(large, o, cores, 4, true, costs(10.0));
  CHECK(p.workers == 3);
  CHECK(plan_set({2, 2e8, 1e8}, o, cores, 4, true, costs(launch)).workers == 2);
  o.workers = 1;
  p = plan_set(large, o, cores, 4, true, costs(launch));
  CHECK(p.in_process);
  CHECK(p.reason.find("one worker would add only its launch") != std::string::npos);
  Options in;
  in.in_process = true;
  in.threads_per_worker = 3;
  p = plan_set(large, in, cores, 4, true, costs(launch));
  CHECK(p.in_process);
  CHECK(p.side_by_side == 3);
  CHECK(p.reason.find("as asked") != std::string::npos);
  p = plan_set(large, in, cores, 2, true, costs(launch));
  CHECK(p.side_by_side == 2);  // at most the host's count
}
