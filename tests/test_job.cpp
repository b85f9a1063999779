#include <doctest/doctest.h>

#include <functional>
#include <memory>
#include <string>

#include "common/job.hpp"
#include "tests/job_fixture.hpp"
#include "tests/test_support.hpp"

using namespace shmgemm;
using test::contains;

namespace {

// A valid descriptor for a 10x6 @ 6x4 float64 job on 2 workers.
std::unique_ptr<JobDescriptor> valid_job() {
  auto job = std::make_unique<JobDescriptor>();
  test::fill_valid_job(*job, 10, 6, 4, 2, "shmgemm-1-0-x-0");
  return job;
}

std::string problem_with(const std::function<void(JobDescriptor&)>& corrupt,
                         std::size_t bytes = sizeof(JobDescriptor)) {
  auto job = valid_job();
  corrupt(*job);
  std::string problem;
  const auto* ok = validate_job(
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(job.get()), bytes), problem);
  CHECK((ok == nullptr) == !problem.empty());
  return problem;
}

}  // namespace

TEST_CASE("validate_job accepts a valid descriptor") {
  CHECK(problem_with([](JobDescriptor&) {}) == "");
  CHECK(problem_with([](JobDescriptor& j) { j.a.layout = Layout::col_major, j.a.ld = 60; }) == "");
  CHECK(problem_with([](JobDescriptor& j) {
          j.general.a.row_stride = 1, j.general.a.col_stride = 10;
        }) == "");
}

TEST_CASE("validate_job refuses each kind of corruption") {
  CHECK(contains(problem_with([](JobDescriptor&) {}, sizeof(JobDescriptor) - 1), "smaller"));
  CHECK(contains(problem_with([](JobDescriptor& j) { j.magic = 0; }), "bad magic"));
  CHECK(contains(problem_with([](JobDescriptor& j) { j.version = 9; }), "version 9"));
  CHECK(contains(problem_with([](JobDescriptor& j) { j.descriptor_bytes = 1; }), "version"));
  CHECK(contains(problem_with([](JobDescriptor& j) { j.general.result = static_cast<DType>(99); }),
                 "result dtype"));
  CHECK(contains(problem_with([](JobDescriptor& j) { j.general.b.dtype = static_cast<DType>(99); }),
                 "operand B: bad dtype"));
  CHECK(contains(problem_with([](JobDescriptor& j) { j.general.a.row_stride = 7; }),
                 "operand A: strides reach beyond its 60 elements"));
  CHECK(
      contains(problem_with([](JobDescriptor& j) { j.general.batch = 2; }), "shapes do not match"));
  CHECK(contains(problem_with([](JobDescriptor& j) { j.workers = 0; }), "worker count"));
  CHECK(contains(problem_with([](JobDescriptor& j) { j.workers = kMaxWorkers + 1; }),
                 "worker count"));
  CHECK(contains(problem_with([](JobDescriptor& j) { j.threads_per_worker = 0; }), "thread count"));
  CHECK(contains(problem_with([](JobDescriptor& j) { j.b.storage = static_cast<Storage>(0); }),
                 "operand B: bad storage"));
  CHECK(contains(problem_with([](JobDescriptor& j) { j.a.layout = static_cast<Layout>(5); }),
                 "operand A: bad layout"));
  CHECK(contains(problem_with([](JobDescriptor& j) { j.k = 7; }), "shapes do not match"));
  CHECK(contains(problem_with([](JobDescriptor& j) { j.c.ld = 0; }), "operand C: leading"));
  CHECK(contains(problem_with([](JobDescriptor& j) { j.a.offset = UINT64_MAX - 8; }),
                 "operand A: leading dimension"));
  CHECK(contains(problem_with([](JobDescriptor& j) { j.a.ld = UINT64_MAX / 2; }), "out of range"));
  CHECK(
      contains(problem_with([](JobDescriptor& j) { std::memset(j.b.name, 'x', sizeof j.b.name); }),
               "not NUL-terminated"));
  CHECK(contains(problem_with([](JobDescriptor& j) { j.c.name[0] = '\0'; }), "empty"));
  CHECK(
      contains(problem_with([](JobDescriptor& j) { j.c.layout = Layout::col_major, j.c.ld = 40; }),
               "must be row-major"));
  CHECK(contains(problem_with([](JobDescriptor& j) { j.slots[1].row_end = 11; }),
                 "worker 1: rows [5, 11) outside [0, 10)"));
  CHECK(contains(problem_with([](JobDescriptor& j) { j.slots[0].row_begin = 6; }),
                 "worker 0: rows [6, 5)"));
}

TEST_CASE("matrix_extent_bytes") {
  CHECK(matrix_extent_bytes(3, 4, 4, Layout::row_major, 8) == 96);
  CHECK(matrix_extent_bytes(3, 4, 5, Layout::row_major, 8) == (2 * 5 + 4) * 8);
  CHECK(matrix_extent_bytes(3, 4, 3, Layout::col_major, 4) == 48);
  CHECK(matrix_extent_bytes(3, 4, 3, Layout::row_major, 8) == std::nullopt);
  CHECK(matrix_extent_bytes(0, 4, 4, Layout::row_major, 8) == 0);
  CHECK(matrix_extent_bytes(UINT64_MAX, 1, 1, Layout::row_major, 8) == std::nullopt);
}
