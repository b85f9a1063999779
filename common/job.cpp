#include "common/job.hpp"

#include <fmt/format.h>

#include <cstring>

namespace shmgemm {
namespace {

bool check_operand(const OperandRef& ref, std::string_view which, std::uint64_t rows,
                   std::uint64_t cols, DType dtype, std::string& problem) {
  if (ref.storage != Storage::shm && ref.storage != Storage::file) {
    problem = fmt::format("operand {}: bad storage kind {}", which,
                          static_cast<std::uint32_t>(ref.storage));
    return false;
  }
  if (ref.layout != Layout::row_major && ref.layout != Layout::col_major) {
    problem =
        fmt::format("operand {}: bad layout {}", which, static_cast<std::uint32_t>(ref.layout));
    return false;
  }
  if (ref.rows != rows || ref.cols != cols) {
    problem = fmt::format("operand {}: shape ({},{}) does not match the job's ({},{})", which,
                          ref.rows, ref.cols, rows, cols);
    return false;
  }
  if (std::memchr(ref.name, '\0', sizeof ref.name) == nullptr || ref.name[0] == '\0') {
    problem = fmt::format("operand {}: name is empty or not NUL-terminated", which);
    return false;
  }
  const auto extent = matrix_extent_bytes(ref.rows, ref.cols, ref.ld, ref.layout, item_size(dtype));
  std::uint64_t end = 0;
  if (!extent || ref.ld == 0 || __builtin_add_overflow(ref.offset, *extent, &end)) {
    problem = fmt::format("operand {}: leading dimension {} or offset {} out of range", which,
                          ref.ld, ref.offset);
    return false;
  }
  return true;
}

}  // namespace

std::uint64_t operand_extent(const OperandRef& ref, DType dtype) {
  return matrix_extent_bytes(ref.rows, ref.cols, ref.ld, ref.layout, item_size(dtype)).value_or(0);
}

const JobDescriptor* validate_job(std::span<const std::byte> bytes, std::string& problem) {
  if (bytes.size() < sizeof(JobDescriptor)) {
    problem = fmt::format("descriptor of {} bytes is smaller than the {} expected", bytes.size(),
                          sizeof(JobDescriptor));
    return nullptr;
  }
  const auto* job = reinterpret_cast<const JobDescriptor*>(bytes.data());
  if (job->magic != kJobMagic) {
    problem = "bad magic: not a shmgemm job descriptor";
    return nullptr;
  }
  if (job->version != kJobVersion || job->descriptor_bytes != sizeof(JobDescriptor)) {
    problem =
        fmt::format("descriptor version {} ({} bytes); this worker reads version {} ({} bytes)",
                    job->version, job->descriptor_bytes, kJobVersion, sizeof(JobDescriptor));
    return nullptr;
  }
  if (job->dtype != DType::float32 && job->dtype != DType::float64) {
    problem = fmt::format("unknown dtype code {}", static_cast<std::uint32_t>(job->dtype));
    return nullptr;
  }
  if (job->workers == 0 || job->workers > kMaxWorkers || job->threads_per_worker == 0 ||
      job->threads_per_worker > 1024) {
    problem = fmt::format("bad worker count {} or thread count {}", job->workers,
                          job->threads_per_worker);
    return nullptr;
  }
  if (job->chunk_rows == 0) {
    problem = "chunk of 0 rows";
    return nullptr;
  }
  if (!check_operand(job->a, "A", job->m, job->k, job->dtype, problem) ||
      !check_operand(job->b, "B", job->k, job->n, job->dtype, problem) ||
      !check_operand(job->c, "C", job->m, job->n, job->dtype, problem))
    return nullptr;
  if (job->c.layout != Layout::row_major) {
    problem = "operand C: must be row-major";
    return nullptr;
  }
  for (std::uint32_t i = 0; i < job->workers; ++i) {
    const WorkerSlot& s = job->slots[i];
    if (s.row_begin > s.row_end || s.row_end > job->m) {
      problem = fmt::format("worker {}: rows [{}, {}) outside [0, {})", i, s.row_begin, s.row_end,
                            job->m);
      return nullptr;
    }
  }
  return job;
}

}  // namespace shmgemm
