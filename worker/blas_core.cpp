#include "worker/blas_core.hpp"

#include <dlfcn.h>

#include <cstdlib>

extern "C" char* openblas_get_corename(void);

namespace shmgemm::detail {
namespace {

// The kernels a CPU's features call for, or nullptr: OpenBLAS's names (OPENBLAS_CORETYPE).
const char* kernel_for_features() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  if (__builtin_cpu_supports("avx")) return "SandyBridge";
#endif
  return nullptr;
}

using Fn = void (*)();
Fn openblas_function(const char* name) {
  return reinterpret_cast<Fn>(::dlsym(RTLD_DEFAULT, name));
}

struct Kernels {
  std::string openblas;  // OpenBLAS's own choice
  std::string workers;
};

const Kernels& kernels() {
  static const Kernels k = [] {
    Kernels r;
    r.openblas = openblas_get_corename();
    r.workers = r.openblas;
    // Only OpenBLAS's fallback for a CPU it does not know is replaced, never against a user's
    // OPENBLAS_CORETYPE, and only where OpenBLAS can switch (a DYNAMIC_ARCH build).
    const char* wanted = kernel_for_features();
    if (r.openblas == "Prescott" && wanted != nullptr &&
        std::getenv("OPENBLAS_CORETYPE") == nullptr &&
        openblas_function("gotoblas_dynamic_quit") != nullptr &&
        openblas_function("gotoblas_dynamic_init") != nullptr)
      r.workers = wanted;
    return r;
  }();
  return k;
}

}  // namespace

std::string kernel_here() {
  return openblas_get_corename();
}

const std::string& worker_kernel() {
  return kernels().workers;
}

const std::string& openblas_fallback() {
  static const std::string none;
  return kernels().workers != kernels().openblas ? kernels().openblas : none;
}

bool use_kernels(const std::string& name) {
  if (kernel_here() == name) return true;
  const Fn quit = openblas_function("gotoblas_dynamic_quit");
  const Fn init = openblas_function("gotoblas_dynamic_init");
  if (quit == nullptr || init == nullptr) return false;
  ::setenv("OPENBLAS_CORETYPE", name.c_str(), 1);  // read by init, and by the processes started
  quit();
  init();
  return kernel_here() == name;
}

void use_worker_kernels() {
  use_kernels(worker_kernel());
}

std::optional<std::pair<std::string, std::string>> worker_kernel_env() {
  if (openblas_fallback().empty()) return std::nullopt;
  return std::pair<std::string, std::string>{"OPENBLAS_CORETYPE", worker_kernel()};
}

std::string kernel_text() {
  const std::string here = kernel_here();
  if (openblas_fallback().empty()) return here;
  if (here == worker_kernel())
    return here + " (chosen by shmgemm: OpenBLAS falls back to " + openblas_fallback() +
           " on this CPU; OPENBLAS_CORETYPE=" + here +
           " gives other programs, numpy among them, the same kernels)";
  return here + " in this process, " + worker_kernel() +
         " in shmgemm's workers (OpenBLAS falls back to " + here +
         " on this CPU; start the program with OPENBLAS_CORETYPE=" + worker_kernel() +
         " for its own products to run them too)";
}

}  // namespace shmgemm::detail
