// A valid job descriptor for tests and fuzz targets: (m x k) @ (k x n) float64, one product, on
// `workers` workers with rows split evenly; each operand is a column of its array's elements
// in shared memory named `name`.
#pragma once

#include <cstdint>
#include <string_view>

#include "common/job.hpp"

namespace shmgemm::test {

inline OperandRef column_operand(Storage storage, std::uint64_t elements, std::string_view name,
                                 std::uint64_t offset = 0) {
  OperandRef r;
  r.storage = storage;
  r.rows = elements;
  r.cols = 1;
  r.ld = 1;
  r.offset = offset;
  copy_name(r.name, name);
  return r;
}

inline StackRef matrix_stack(std::uint64_t rows, std::uint64_t cols) {
  StackRef s;
  s.dtype = DType::float64;
  s.elements = rows * cols;
  s.rows = rows;
  s.cols = cols;
  s.row_stride = cols;
  s.col_stride = 1;
  return s;
}

inline void fill_valid_job(JobDescriptor& job, std::uint64_t m, std::uint64_t k, std::uint64_t n,
                           std::uint32_t workers, std::string_view name) {
  job.workers = workers;
  job.m = m;
  job.k = k;
  job.n = n;
  job.chunk_rows = m > 0 ? m : 1;
  GeneralJob& g = job.general;
  g.result = g.compute = DType::float64;
  g.a = matrix_stack(m, k);
  g.b = matrix_stack(k, n);
  job.a = column_operand(Storage::shm, m * k, name);
  job.b = column_operand(Storage::shm, k * n, name);
  job.c = column_operand(Storage::shm, m * n, name);
  for (std::uint32_t i = 0; i < workers; ++i) {
    job.slots[i].row_begin = m * i / workers;
    job.slots[i].row_end = m * (i + 1) / workers;
  }
}

}  // namespace shmgemm::test
