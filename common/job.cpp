#include "common/job.hpp"

#include <fmt/format.h>

#include <cstring>

#include "shmgemm/error.hpp"

namespace shmgemm {
namespace {

bool check_operand(const OperandRef& ref, std::string_view which, std::uint64_t rows,
                   std::uint64_t cols, DType dtype, std::string& problem) {
  if (ref.storage != Storage::shm && ref.storage != Storage::file &&
      ref.storage != Storage::arena) {
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

bool mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  return !__builtin_mul_overflow(a, b, &out);
}

// The largest element offset `s` reaches along `ndim` axes of `shape` with `strides`, plus its
// core matrix; false on overflow. Empty stacks reach nothing (offset 0).
bool reach(const StackRef& s, std::uint32_t ndim, const std::uint64_t* shape,
           const std::uint64_t* strides, std::uint64_t& last) {
  last = 0;
  if (s.rows == 0 || s.cols == 0) return true;
  for (std::uint32_t i = 0; i < ndim; ++i) {
    if (shape[i] == 0) return last = 0, true;
    std::uint64_t step = 0;
    if (!mul(shape[i] - 1, strides[i], step) || __builtin_add_overflow(last, step, &last))
      return false;
  }
  std::uint64_t r = 0, c = 0;
  return mul(s.rows - 1, s.row_stride, r) && mul(s.cols - 1, s.col_stride, c) &&
         !__builtin_add_overflow(last, r, &last) && !__builtin_add_overflow(last, c, &last);
}

bool check_stack(const StackRef& s, const GeneralJob& g, std::string_view which,
                 std::string& problem) {
  if (!is_valid_dtype(static_cast<std::uint32_t>(s.dtype)) || s.batch_ndim > kMaxDims) {
    problem = fmt::format("operand {}: bad dtype code {} or {} batch axes", which,
                          static_cast<std::uint32_t>(s.dtype), s.batch_ndim);
    return false;
  }
  // Its own batch axes align with the job's from the right, each the same size or 1: so it
  // holds at most g.batch matrices, and every product's index into it is in range.
  if (s.batch_ndim > g.batch_ndim) {
    problem =
        fmt::format("operand {}: {} batch axes, the job has {}", which, s.batch_ndim, g.batch_ndim);
    return false;
  }
  for (std::uint32_t j = 0; j < s.batch_ndim; ++j) {
    const std::uint64_t own = s.batch_shape[s.batch_ndim - 1 - j];
    if (own != 1 && own != g.batch_shape[g.batch_ndim - 1 - j]) {
      problem =
          fmt::format("operand {}: batch axis of {} does not broadcast to the job's", which, own);
      return false;
    }
  }
  std::uint64_t own = 0, broadcast = 0;
  if (!reach(s, s.batch_ndim, s.batch_shape, s.batch_strides, own) ||
      !reach(s, g.batch_ndim, g.batch_shape, s.broadcast_strides, broadcast) ||
      ((s.rows && s.cols) && (own >= s.elements || broadcast >= s.elements))) {
    problem = fmt::format("operand {}: strides reach beyond its {} elements", which, s.elements);
    return false;
  }
  return true;
}

bool check_limbs(unsigned limbs, unsigned bits) {
  return limbs >= 1 && limbs <= 64 && bits <= 64 && std::uint64_t{bits} * (limbs - 1) < 64;
}

bool check_general(const JobDescriptor& job, std::string& problem) {
  const GeneralJob& g = job.general;
  if (static_cast<std::uint32_t>(g.phase) > 2 ||
      !is_valid_dtype(static_cast<std::uint32_t>(g.result)) ||
      !is_valid_dtype(static_cast<std::uint32_t>(g.compute)) || !is_blas_type(g.compute) ||
      g.batch_ndim > kMaxDims) {
    problem = "bad phase, result dtype, compute dtype or batch axes";
    return false;
  }
  std::uint64_t batch = 1, rows = 0;
  bool overflow = false;
  for (std::uint32_t i = 0; i < g.batch_ndim; ++i)
    overflow = overflow || !mul(batch, g.batch_shape[i], batch);
  if (overflow || batch != g.batch || !mul(batch, g.a.rows, rows) || rows != job.m ||
      g.a.cols != job.k || g.b.rows != job.k || g.b.cols != job.n) {
    problem = fmt::format("shapes do not match the job's: {} products of ({},{}) @ ({},{})",
                          g.batch, g.a.rows, g.a.cols, g.b.rows, g.b.cols);
    return false;
  }
  if (!check_stack(g.a, g, "A", problem) || !check_stack(g.b, g, "B", problem)) return false;
  if (g.integer && (!is_integer(g.result) || g.compute != DType::float64 ||
                    !check_limbs(g.limbs.limbs_a, g.limbs.bits_a) ||
                    !check_limbs(g.limbs.limbs_b, g.limbs.bits_b))) {
    problem = "bad integer product: result, compute type or limbs";
    return false;
  }
  std::uint64_t c_elements = 0;
  if (!mul(job.m, job.n, c_elements) ||
      !check_operand(job.a, "A", g.a.elements, 1, g.a.dtype, problem) ||
      !check_operand(job.b, "B", g.b.elements, 1, g.b.dtype, problem) ||
      !check_operand(job.c, "C", c_elements, 1, g.result, problem))
    return false;
  if (g.b_prepared && g.phase != Phase::scan &&
      !check_operand(job.prepared, "prepared B", prepared_elements(g, job.k, job.n), 1, g.compute,
                     problem))
    return false;
  return true;
}

}  // namespace

std::uint64_t stack_matrices(const StackRef& s) {
  std::uint64_t count = 1;
  for (std::uint32_t i = 0; i < s.batch_ndim && i < kMaxDims; ++i)
    if (!mul(count, s.batch_shape[i], count)) return 0;
  return count;
}

std::uint64_t prepared_elements(const GeneralJob& g, std::uint64_t k, std::uint64_t n) {
  std::uint64_t elements = g.integer ? g.limbs.limbs_b : 1;
  if (!mul(elements, stack_matrices(g.b), elements) || !mul(elements, k, elements) ||
      !mul(elements, n, elements))
    return 0;
  return elements;
}

std::uint64_t operand_extent(const OperandRef& ref, DType dtype) {
  return matrix_extent_bytes(ref.rows, ref.cols, ref.ld, ref.layout, item_size(dtype)).value_or(0);
}

void check_operand_name(std::string_view name) {
  if (name.size() >= kMaxOperandName)
    throw Error(ErrorCode::invalid_argument,
                fmt::format("operand name of {} bytes does not fit in the job descriptor (at most "
                            "{}): {:.60}...",
                            name.size(), kMaxOperandName - 1, name));
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
  if (std::memchr(job->label_a, '\0', sizeof job->label_a) == nullptr ||
      std::memchr(job->label_b, '\0', sizeof job->label_b) == nullptr) {
    problem = "operand labels are not NUL-terminated";
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
  if (!check_general(*job, problem)) return nullptr;
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
