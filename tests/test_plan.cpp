#include <doctest/doctest.h>

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
