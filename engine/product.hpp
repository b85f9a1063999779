// The one path of every product, whatever the front end: the operands as this process and its
// workers see them, the job descriptor that describes them, and the job's phases (scan, prepare
// B, multiply) run by an executor: in process, one-shot workers, or a Pool's workers.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/job.hpp"
#include "common/matmul_shape.hpp"
#include "common/npy_file.hpp"
#include "engine/plan.hpp"
#include "shmgemm/array_view.hpp"
#include "shmgemm/shmgemm.hpp"
#include "worker/general_kernel.hpp"

namespace shmgemm::detail {

// One operand: its extent as this process reads it, and as workers find it.
struct Operand {
  const std::byte* local = nullptr;  // its element of lowest address
  DType dtype = DType::float64;
  ArrayShape shape;            // its shape, and strides in elements from `local` (all >= 0)
  std::uint64_t elements = 0;  // the elements its extent spans from `local`
  OperandRef ref;              // where workers find the extent (set by the placement)
  std::string label;           // how messages name it: its file, or empty
  std::uint64_t bytes() const { return elements * item_size(dtype); }
};

// C as workers write it: C-contiguous, in the result's dtype.
struct ResultArea {
  std::byte* local = nullptr;
  OperandRef ref;
};

// One call's product: np.matmul(a, b) into c.
struct Product {
  MatmulShape shape;
  DType result = DType::float64;
  Operand a, b;
  ResultArea c;
  // The work as the plan and the cost model see it.
  ProductShape work() const;
  std::uint64_t c_elements() const { return shape.batch * shape.m * shape.n; }
  bool empty() const { return shape.batch == 0 || shape.m == 0 || shape.n == 0 || shape.k == 0; }
  // The report's description of it (m, k, n, batch, dtype): the same in every front end.
  void describe(Report& report) const;
};

// The front end for arrays: np.matmul's shape rules and numpy's messages, the result dtype,
// and, when `out` is given, that it is writable with that shape and dtype. Throws Error
// (shape_mismatch, invalid_argument, unsupported).
struct Checked {
  MatmulShape shape;
  DType result = DType::float64;
};
Checked check_arrays(const ArrayView& a, const ArrayView& b, const MutableArrayView* out);

// check_arrays' answer (the result's shape, and its dtype) for two matrices that it accepts, found
// without its allocations (a set of many small products checks every pair); nothing for any
// other pair, which check_arrays then decides, with its messages.
struct MatrixProduct {
  std::int64_t rows = 0, cols = 0;
  DType result = DType::float64;
};
std::optional<MatrixProduct> accepted_matrices(const ArrayView& a, const ArrayView& b);

// Throws Error(unsupported), naming the operand, for a matrix dimension beyond OpenBLAS's 32-bit
// int.
void check_blas_dims(std::span<const std::uint64_t> a_dims, std::span<const std::uint64_t> b_dims,
                     std::string_view a_name, std::string_view b_name);
// np.matmul's shape of two .npy files' arrays, numpy's messages after their names.
MatmulShape npy_matmul_shape(const NpyMapping& a, const NpyMapping& b);

// `v` as an operand read where it is: when its strides are non-negative multiples of its item
// size. Nothing otherwise (the caller copies it: gather_into).
std::optional<Operand> operand_in_place(const ArrayView& v);
// Copies `v` into `to` (v.size() elements, C order) and returns the operand that reads it.
Operand gather_into(const ArrayView& v, std::byte* to);
// Copies the C-order elements at `from` into `out`, at its strides.
void scatter_from(const std::byte* from, const MutableArrayView& out);
// np.matmul's zeros for a product with k = 0, into `out` at its strides.
void fill_zeros(const MutableArrayView& out);

// Runs a job's phases on workers. Implementations: in process, one-shot workers, a Pool.
class Executor {
 public:
  virtual ~Executor() = default;
  // The job descriptor, where this executor's workers find it.
  virtual JobDescriptor& job() = 0;
  // Runs the job's current phase (job.general.phase) on its job.workers slots and returns when
  // every slot is done. Throws Error (worker_failed, interrupted, timed_out, ...).
  virtual void run(const GeneralOperands& local, double flops_per_row) = 0;
  // Room for the prepared B (`bytes` bytes) where the workers reach it; sets job().prepared.
  virtual std::byte* prepared_area(std::uint64_t bytes, std::uint64_t elements) = 0;
  unsigned retries = 0;
  unsigned launches = 0;  // worker processes started
};

// Fills `job` for `p`, split as `plan` says: the general job (dtypes, stacks, strides), the
// operands' refs, each slot's rows, chunks, streaming and private copies as `options` ask.
void describe_job(JobDescriptor& job, const Product& p, const Plan& plan, const Options& options);

// The phases of a described job, in order, and the coordinator's step between two of them: the
// limbs after the scan (integers), the prepared B's room before the prepare phase.
class Phases {
 public:
  explicit Phases(JobDescriptor& job) : job_(job) {}
  // After the previous phase finished: the next one to run (set in the job), or nothing when
  // the product is done. `prepared(bytes, elements)` gives the room for the prepared B.
  std::optional<Phase> next(const std::function<std::byte*(std::uint64_t, std::uint64_t)>& prepared,
                            Report& report, GeneralOperands& local);

 private:
  JobDescriptor& job_;
  int step_ = 0;
};

// Runs every phase of `p` on `executor` (described_job first), and records the compute time,
// retries, launches, prepared bytes and limb products in `report`.
void execute(Executor& executor, const Product& p, const Plan& plan, const Options& options,
             Report& report);

// The executors of one-shot calls: in this process (plan.in_process), or workers started for
// this call and joined (fork or spawn, as options.launch says).
std::unique_ptr<Executor> one_shot_executor(const Plan& plan, const Options& options);

// The plan for a one-shot call, recorded in the report; decides Launch::automatic in `options`
// where workers may run (plan_product).
Plan plan_call(const Product& p, Options& options, Report& report);

}  // namespace shmgemm::detail
