#include "worker/blas_core.hpp"

#include <dlfcn.h>

#include <cstdlib>

extern "C" char* openblas_get_corename(void);

namespace shmgemm {
namespace detail {
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

BlasKernel choose() {
  const std::string own = openblas_get_corename();
  const char* wanted = kernel_for_features();
  // Only OpenBLAS's fallback for a CPU it does not know is replaced, and never against a user's
  // OPENBLAS_CORETYPE.
  if (own != "Prescott" || wanted == nullptr || std::getenv("OPENBLAS_CORETYPE") != nullptr)
    return {own, {}};
  using Fn = void (*)();
  auto quit = reinterpret_cast<Fn>(::dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit"));
  auto init = reinterpret_cast<Fn>(::dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init"));
  if (quit == nullptr || init == nullptr)
    return {own, {}};  // not a DYNAMIC_ARCH build: it has one kernel, and keeps it
  ::setenv("OPENBLAS_CORETYPE", wanted, 1);  // read by init, and by the processes started
  quit();
  init();
  return {openblas_get_corename(), own};
}

// At load: after OpenBLAS's own initialisation (a library's initialisers run after those of the
// libraries it needs, and an executable's after every library's), before any call of ours.
[[gnu::constructor]] void choose_at_load() {
  blas_core();
}

}  // namespace

const BlasKernel& blas_core() {
  static const BlasKernel core = choose();
  return core;
}

std::string blas_core_text() {
  const BlasKernel& core = blas_core();
  if (core.replaced.empty()) return core.name;
  return core.name + " (chosen by shmgemm: OpenBLAS fell back to " + core.replaced +
         " on this CPU; OPENBLAS_CORETYPE=" + core.replaced + " keeps that)";
}

}  // namespace detail

BlasKernel blas_kernel() {
  return detail::blas_core();
}

}  // namespace shmgemm
