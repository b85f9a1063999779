#include "worker/slice_kernel.hpp"

#include <dlfcn.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <fmt/format.h>

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <complex>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <type_traits>
#include <vector>

#include "common/mapping.hpp"
#include "shmgemm/error.hpp"

namespace shmgemm {
namespace {

// C = A·B through cblas_?gemm, row-major; complex alpha and beta go by pointer.
template <class T>
void gemm_call(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, const T* a,
               blasint lda, const T* b, blasint ldb, T* c, blasint ldc) {
  const T one(1), zero(0);
  if constexpr (std::is_same_v<T, double>)
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc);
  else if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
  else if constexpr (std::is_same_v<T, std::complex<float>>)
    cblas_cgemm(CblasRowMajor, ta, tb, m, n, k, &one, a, lda, b, ldb, &zero, c, ldc);
  else
    cblas_zgemm(CblasRowMajor, ta, tb, m, n, k, &one, a, lda, b, ldb, &zero, c, ldc);
}

template <class T>
void gemm_rows(const ConstMatrixRef& a, const ConstMatrixRef& b, const MatrixRef& c,
               RowRange rows) {
  const auto m = static_cast<blasint>(rows.size());
  const auto n = static_cast<blasint>(c.cols);
  const auto k = static_cast<blasint>(a.cols);
  if (m == 0 || n == 0) return;
  T* c_rows = reinterpret_cast<T*>(c.data) + rows.begin * c.ld;
  if (k == 0) {
    for (blasint i = 0; i < m; ++i)
      std::fill_n(c_rows + i * c.ld, c.cols, T(0));
    return;
  }
  // Row-major A: its rows start at row `begin`. Column-major A is a row-major A^T whose
  // columns begin..end are our rows: offset by `begin`, and transposed.
  const T* a_base = reinterpret_cast<const T*>(a.data);
  const bool a_rows = a.layout == Layout::row_major;
  const T* a_rows_ptr = a_rows ? a_base + rows.begin * a.ld : a_base + rows.begin;
  const CBLAS_TRANSPOSE a_trans = a_rows ? CblasNoTrans : CblasTrans;
  const CBLAS_TRANSPOSE b_trans = b.layout == Layout::row_major ? CblasNoTrans : CblasTrans;
  gemm_call<T>(a_trans, b_trans, m, n, k, a_rows_ptr, static_cast<blasint>(a.ld),
               reinterpret_cast<const T*>(b.data), static_cast<blasint>(b.ld), c_rows,
               static_cast<blasint>(c.ld));
}

}  // namespace

void compute_rows(DType dtype, const ConstMatrixRef& a, const ConstMatrixRef& b, const MatrixRef& c,
                  RowRange rows) {
  switch (dtype) {
    case DType::float32:
      return gemm_rows<float>(a, b, c, rows);
    case DType::complex64:
      return gemm_rows<std::complex<float>>(a, b, c, rows);
    case DType::complex128:
      return gemm_rows<std::complex<double>>(a, b, c, rows);
    default:
      return gemm_rows<double>(a, b, c, rows);
  }
}

namespace {
// Address space one OpenBLAS thread needs to compute: its 32 MiB buffer, its stack, and room
// for the allocations around them (measured: 400-500 MiB limits hang with 216 MiB of operands
// mapped, 600 MiB runs).
constexpr std::size_t kBlasBufferRoom = std::size_t{160} << 20;

// One of OpenBLAS's exported variables, or null where this OpenBLAS has none by that name.
int* openblas_variable(const char* name) {
  return static_cast<int*>(::dlsym(RTLD_DEFAULT, name));
}

// One thread where OpenBLAS's thread pool is down, without starting it: true if done so.
// openblas_set_num_threads starts the pool even for one thread (0.3.21), and a new pool's
// threads spin on sched_yield for about 2^28 cycles before they sleep. OpenBLAS shuts its pool
// down before every fork, so each one-thread fork worker started one, which ran beside the
// worker and took the core from the other worker (docs/performance.md, target 2).
// The same for any count where the pool is down: the next call that needs threads starts it.
bool threads_without_pool(int threads) {
  static int* const cpu_number = openblas_variable("blas_cpu_number");
  static int* const server_avail = openblas_variable("blas_server_avail");
  if (cpu_number == nullptr || server_avail == nullptr || *server_avail != 0) return false;
  *cpu_number = threads;  // what openblas_set_num_threads sets; 1: gemm never calls the pool
  return true;
}
bool single_thread_without_pool() {
  return threads_without_pool(1);
}
}  // namespace

int affordable_blas_threads(int threads) {
  // Under an address-space limit (ulimit -v) an OpenBLAS thread that cannot map its buffer
  // retries for ever, and the process no longer answers signals (numpy hangs the same way).
  // Reserve, without touching, the room the threads' buffers take first: where it is not
  // there, use fewer threads, and with none, say so.
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_AS, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    while (threads > 0) {
      const std::size_t bytes = static_cast<std::size_t>(threads) * kBlasBufferRoom;
      if (Mapping::try_map(bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1))
        break;
      --threads;
    }
    if (threads == 0)
      throw Error(ErrorCode::resource,
                  fmt::format("the address-space limit (ulimit -v, {} MiB) leaves no room for "
                              "OpenBLAS's buffers ({} MiB a thread): raise the limit",
                              limit.rlim_cur >> 20, kBlasBufferRoom >> 20));
  }
  return threads;
}

void set_blas_threads(int threads) {
  threads = affordable_blas_threads(threads);
  if (threads == 1 && single_thread_without_pool()) return;
  openblas_set_num_threads(threads);
}

int blas_threads() {
  return ::openblas_get_num_threads();
}

ScopedBlasThreads::ScopedBlasThreads(int threads) : saved_(blas_threads()) {
  if (threads == saved_) return;
  set_blas_threads(threads);
  changed_ = true;
}

ScopedBlasThreads::~ScopedBlasThreads() {
  if (!changed_ || blas_threads() == saved_) return;
  // A pool that is down stays down: the host's next call that needs it starts it.
  if (threads_without_pool(saved_)) return;
  openblas_set_num_threads(saved_);
}

int blas_max_threads() {
  static const int most = [] {
    const std::string_view config = ::openblas_get_config();
    const std::size_t at = config.find("MAX_THREADS=");
    int n = 0;
    if (at != std::string_view::npos) {
      const std::string_view digits = config.substr(at + 12);
      std::from_chars(digits.data(), digits.data() + digits.size(), n);
    }
    return n > 0 ? n : 1024;
  }();
  return most;
}

int blas_pool_threads() {
  static int* const pool_threads = openblas_variable("blas_num_threads");  // with the caller's
  static int* const server_avail = openblas_variable("blas_server_avail");
  if (pool_threads == nullptr || server_avail == nullptr || *server_avail == 0) return 0;
  return std::max(*pool_threads - 1, 0);
}

namespace {
using SetAffinity = int (*)(int, std::size_t, cpu_set_t*);
SetAffinity openblas_setaffinity_fn() {
  static const auto f =
      reinterpret_cast<SetAffinity>(::dlsym(RTLD_DEFAULT, "openblas_setaffinity"));
  return f;
}
std::atomic<bool> placement_held{false};
}  // namespace

BlasThreadPlacement::BlasThreadPlacement(int threads) {
  const SetAffinity set = openblas_setaffinity_fn();
  if (threads < 2 || set == nullptr || ::openblas_get_num_threads() < threads) return;
  // OpenBLAS's fork handler stops its pool, and its next threaded call starts it again: a pool
  // that is down has no threads to place (openblas_setaffinity would use the old ones' handles),
  // so it is started first, as that call would.
  if (blas_pool_threads() < threads - 1) openblas_set_num_threads(::openblas_get_num_threads());
  if (blas_pool_threads() < threads - 1) return;
  if (::pthread_getaffinity_np(::pthread_self(), sizeof saved_, &saved_) != 0 ||
      CPU_COUNT(&saved_) < threads || placement_held.exchange(true))
    return;
  std::vector<int> cpus;  // the caller's CPU, then the others in order
  const int here = ::sched_getcpu();
  if (here >= 0 && CPU_ISSET(here, &saved_)) cpus.push_back(here);
  for (int cpu = 0; cpu < CPU_SETSIZE && cpus.size() < std::size_t(threads); ++cpu)
    if (cpu != here && CPU_ISSET(cpu, &saved_)) cpus.push_back(cpu);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpus[0], &one);
  if (::pthread_setaffinity_np(::pthread_self(), sizeof one, &one) != 0) {
    placement_held.store(false);
    return;
  }
  placed_ = 1;
  // openblas_setaffinity's index: 0 .. threads - 2 are the pool's threads (threads - 1 is the
  // caller's, set above).
  for (int i = 0; i + 1 < threads; ++i) {
    CPU_ZERO(&one);
    CPU_SET(cpus[std::size_t(i) + 1], &one);
    if (set(i, sizeof one, &one) != 0) break;
    ++placed_;
  }
}

BlasThreadPlacement::~BlasThreadPlacement() {
  if (placed_ == 0) return;
  for (int i = 0; i + 1 < placed_; ++i)
    openblas_setaffinity_fn()(i, sizeof saved_, &saved_);
  ::pthread_setaffinity_np(::pthread_self(), sizeof saved_, &saved_);
  placement_held.store(false);
}

void stop_blas_pool() {
  using Shutdown = int (*)();
  static const auto shutdown =
      reinterpret_cast<Shutdown>(::dlsym(RTLD_DEFAULT, "blas_thread_shutdown_"));
  static int* const pool_threads = openblas_variable("blas_num_threads");  // with the caller's
  static int* const server_avail = openblas_variable("blas_server_avail");
  if (shutdown == nullptr || pool_threads == nullptr || server_avail == nullptr ||
      *server_avail == 0)
    return;
  std::error_code ec;
  long tasks = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/task", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    ++tasks;
  if (!ec && tasks == *pool_threads) shutdown();
}

}  // namespace shmgemm
