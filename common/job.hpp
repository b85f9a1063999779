// The job descriptor: one product, as the coordinator describes it to its workers. It lives in
// a shared segment that workers map; spawned workers find everything else through it.
#pragma once

#include <boost/interprocess/sync/interprocess_semaphore.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "common/dtype.hpp"
#include "common/limbs.hpp"
#include "common/matmul_shape.hpp"
#include "common/matrix.hpp"
#include "common/partition.hpp"

namespace shmgemm {

inline constexpr std::uint64_t kJobMagic = 0x314a4d4547484d53ULL;  // "SHMGEMJ1"
inline constexpr std::uint32_t kJobVersion = 6;
inline constexpr std::size_t kMaxWorkers = 256;
inline constexpr std::size_t kMaxOperandName = 4096;  // PATH_MAX
inline constexpr std::size_t kWorkerMessageBytes = 512;
// Rows of C per BLAS call. Each call packs B again, so fewer rows cost more: on 4000^2 float64,
// 2 workers, chunks of 1000 rows took 1.105 s against 1.106 s unchunked, 500 rows 1.114 s,
// 250 rows 1.156 s and 128 rows 1.214 s. Chunks are rounded up to the row block factor.
inline constexpr std::uint64_t kChunkRows = 512;

// Where an operand's bytes are: a shared segment or a file, by name; or (a Pool's jobs) at an
// offset into the pool's arena, which its workers have mapped.
enum class Storage : std::uint32_t { shm = 1, file = 2, arena = 3 };

struct OperandRef {
  Storage storage = Storage::shm;
  Layout layout = Layout::row_major;
  std::uint64_t rows = 0;
  std::uint64_t cols = 0;
  std::uint64_t ld = 0;
  std::uint64_t offset = 0;         // bytes from the start of the segment or file
  char name[kMaxOperandName] = {};  // segment name or file path, NUL-terminated
};

// What the workers of a general job do in this launch.
enum class Phase : std::uint32_t {
  multiply = 0,  // their rows of the flattened C (products x m rows)
  scan = 1,      // the largest magnitudes in their share of A's and B's elements (integers)
  prepare = 2,   // convert their share of B's rows into `prepared` (compute type, or limbs)
};

// One operand of a general job: a stack of rows x cols matrices at element strides. Its
// OperandRef (a, b) is a column of `elements` elements of `dtype`: the whole array.
struct StackRef {
  DType dtype = DType::float64;
  std::uint32_t batch_ndim = 0;  // its own batch axes
  std::uint64_t elements = 0;
  std::uint64_t rows = 0, cols = 0, row_stride = 0, col_stride = 0;
  std::uint64_t batch_shape[kMaxDims] = {};
  std::uint64_t batch_strides[kMaxDims] = {};
  std::uint64_t broadcast_strides[kMaxDims] = {};  // along GeneralJob's batch axes; 0: broadcast
};

struct GeneralJob {
  Phase phase = Phase::multiply;
  DType result = DType::float64;   // C's dtype (np.result_type)
  DType compute = DType::float64;  // the BLAS type; float64 for integer results
  std::uint32_t integer = 0;       // 1: exact integer product through limbs
  std::uint32_t batch_ndim = 0;
  std::uint64_t batch = 1;  // products; C is batch x m x n, row-major
  std::uint64_t batch_shape[kMaxDims] = {};
  StackRef a, b;
  // 1: workers read B from the job's `prepared` operand: B's matrices (b.batch_shape of them,
  // row-major k x n, in the compute type), or for integers limbs_b such stacks of doubles.
  std::uint32_t b_prepared = 0;
  LimbPlan limbs;  // integer products: set after the scan
};

enum class SlotState : std::uint32_t { pending = 0, attached = 1, done = 2, failed = 3 };

// One worker's part of the job. The coordinator writes the range; the worker writes the rest.
struct WorkerSlot {
  std::uint64_t row_begin = 0;
  std::uint64_t row_end = 0;
  std::uint32_t attempt = 0;  // 0 for the first worker on these rows, 1 for its first retry, ...
  std::atomic<std::uint32_t> state{0};
  std::atomic<std::uint64_t> rows_done{0};
  std::uint64_t max_a = 0, max_b = 0;      // Phase::scan's result: largest magnitudes seen
  char message[kWorkerMessageBytes] = {};  // why it failed, NUL-terminated
  // The failure's ErrorCode, as in process; -1 when it was no shmgemm::Error.
  std::int32_t error_code = -1;
  // With the job staged: posted by the coordinator when the worker's next phase is set.
  boost::interprocess::interprocess_semaphore go{0};
};

struct JobDescriptor {
  std::uint64_t magic = kJobMagic;
  std::uint32_t version = kJobVersion;
  std::uint32_t descriptor_bytes = sizeof(JobDescriptor);
  std::uint32_t workers = 0;
  std::uint32_t threads_per_worker = 1;
  std::int32_t coordinator_pid = 0;
  std::uint64_t m = 0, k = 0, n = 0;
  std::uint32_t stream = 0;  // 1: release A's and C's rows after each chunk (larger than memory)
  std::uint32_t copy_inputs = 0;  // 1: each worker first copies B and its rows of A privately
  // Rows per BLAS call; each worker publishes its progress after each.
  std::uint64_t chunk_rows = 1;
  // Each operand is a column of its array's elements (see StackRef); C is row-major.
  OperandRef a, b, c;
  GeneralJob general;   // m is batch x m, the flattened rows of C
  OperandRef prepared;  // general.b_prepared: a column of float64/compute-type elements
  // How messages name A and B (their files, as the user named them); display only, cut to fit.
  char label_a[256] = {}, label_b[256] = {};
  // Each worker posts once when it has mapped every operand: the coordinator may then remove
  // the names.
  boost::interprocess::interprocess_semaphore attached{0};
  // 1: another phase follows this one. A worker that finishes its part of the phase then posts
  // phase_done and waits on its slot's `go` for the next one, instead of exiting: one launch
  // serves every phase. The coordinator writes it only while no worker computes.
  std::uint32_t staged = 0;
  boost::interprocess::interprocess_semaphore phase_done{0};
  WorkerSlot slots[kMaxWorkers];
};

// Checks every field a worker relies on before it touches a matrix: magic, version, size,
// dtype, worker count, shapes against m/k/n, leading dimensions, extents that do not overflow,
// NUL-terminated names and row ranges inside [0, m]. `bytes` is the mapped descriptor.
// Returns nullptr and sets `problem` when it is invalid.
const JobDescriptor* validate_job(std::span<const std::byte> bytes, std::string& problem);
// The same for a descriptor mapped writable (a worker writes its slot).
inline JobDescriptor* validate_job(std::span<std::byte> bytes, std::string& problem) {
  return validate_job(std::span<const std::byte>(bytes), problem)
             ? reinterpret_cast<JobDescriptor*>(bytes.data())
             : nullptr;
}

// Matrices in a stack: the product of its own batch axes; 0 when that overflows 64 bits.
std::uint64_t stack_matrices(const StackRef& s);

// Elements of the general job's prepared B: B's matrices x k x n, times limbs_b for integers.
std::uint64_t prepared_elements(const GeneralJob& g, std::uint64_t k, std::uint64_t n);

// The bytes that `ref` spans from its offset, given the job's dtype; checked by validate_job.
std::uint64_t operand_extent(const OperandRef& ref, DType dtype);

// Copies `text` into a fixed field, truncating, always NUL-terminated.
template <std::size_t N>
void copy_name(char (&field)[N], std::string_view text) {
  const std::size_t len = text.size() < N - 1 ? text.size() : N - 1;
  for (std::size_t i = 0; i < len; ++i)
    field[i] = text[i];
  field[len] = '\0';
}

// Throws Error(invalid_argument) when `name` does not fit in an operand's name field: a name
// cut short could name another file.
void check_operand_name(std::string_view name);

// `m`'s shape and layout as a job operand found by `name` at byte `offset`.
template <class Byte>
OperandRef operand_ref(const BasicMatrixRef<Byte>& m, Storage storage, std::string_view name,
                       std::uint64_t offset) {
  check_operand_name(name);
  OperandRef r;
  r.storage = storage;
  r.layout = m.layout;
  r.rows = m.rows;
  r.cols = m.cols;
  r.ld = m.ld;
  r.offset = offset;
  copy_name(r.name, name);
  return r;
}

}  // namespace shmgemm
