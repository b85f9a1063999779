// libFuzzer target: validate_job on descriptors corrupted anywhere. The input is a list of
// patches applied to a valid descriptor, so that every field, however deep, can be reached:
// each 12-byte record is (u32 offset, u64 value); a first byte of 0xFF also truncates the
// mapping. Whatever validate_job accepts must be safe for a worker to use.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <string>

#include "common/job.hpp"
#include "tests/fuzz/patch.hpp"
#include "tests/job_fixture.hpp"

namespace {

using namespace shmgemm;

std::unique_ptr<std::byte[]> valid_descriptor() {
  auto mem = std::make_unique<std::byte[]>(sizeof(JobDescriptor));
  auto* job = new (mem.get()) JobDescriptor{};
  test::fill_valid_job(*job, 10, 6, 4, 2, "shmgemm-1-0-x-0");
  return mem;
}

void check_safe(const JobDescriptor& job) {
  if (job.magic != kJobMagic || job.version != kJobVersion) __builtin_trap();
  if (job.workers == 0 || job.workers > kMaxWorkers) __builtin_trap();
  const GeneralJob& g = job.general;
  const OperandRef* refs[3] = {&job.a, &job.b, &job.c};
  const DType dtypes[3] = {g.a.dtype, g.b.dtype, g.result};
  for (int i = 0; i < 3; ++i) {
    const OperandRef* r = refs[i];
    if (std::memchr(r->name, 0, sizeof r->name) == nullptr) __builtin_trap();
    const auto extent =
        matrix_extent_bytes(r->rows, r->cols, r->ld, r->layout, item_size(dtypes[i]));
    std::uint64_t end = 0;
    if (!extent || __builtin_add_overflow(r->offset, *extent, &end)) __builtin_trap();
  }
  // Each operand's whole array is its column; C holds the flattened rows; B's own matrices
  // are no more than the job's products.
  if (job.a.rows != g.a.elements || job.b.rows != g.b.elements || job.c.rows != job.m * job.n ||
      g.a.rows * g.batch != job.m || g.a.cols != job.k || g.b.cols != job.n ||
      stack_matrices(g.b) > g.batch)
    __builtin_trap();
  for (std::uint32_t i = 0; i < job.workers; ++i)
    if (job.slots[i].row_begin > job.slots[i].row_end || job.slots[i].row_end > job.m)
      __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::unique_ptr<std::byte[]> pristine = valid_descriptor();
  alignas(JobDescriptor) static std::byte mem[sizeof(JobDescriptor)];
  std::memcpy(mem, pristine.get(), sizeof mem);
  const std::size_t mapped = fuzz::apply_patches(mem, sizeof mem, data, size);
  std::string problem;
  const JobDescriptor* job = validate_job(std::span<const std::byte>(mem, mapped), problem);
  if (job != nullptr) check_safe(*job);
  if ((job == nullptr) == problem.empty()) __builtin_trap();
  return 0;
}
