#include "worker/blas_core.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

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

BlasCore choose() {
  BlasCore core{openblas_get_corename(), {}};
  const char* wanted = kernel_for_features();
  // Only OpenBLAS's fallback for a CPU it does not know is replaced, and only by a user's leave.
  if (core.name != "Prescott" || wanted == nullptr || std::getenv("OPENBLAS_CORETYPE") != nullptr)
    return core;
  ::setenv("OPENBLAS_CORETYPE", wanted, 1);  // for the processes this one starts
  using Fn = void (*)();
  auto quit = reinterpret_cast<Fn>(::dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit"));
  auto init = reinterpret_cast<Fn>(::dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init"));
  if (quit == nullptr || init == nullptr)
    return core;  // not a DYNAMIC_ARCH build: it has one kernel, and keeps it
  quit();
  init();  // reads OPENBLAS_CORETYPE
  BlasCore now{openblas_get_corename(), core.name};
  return now;
}

const BlasCore& chosen() {
  static const BlasCore core = choose();
  return core;
}

// At load: after OpenBLAS's own initialisation (a library's initialisers run after those of the
// libraries it needs, and an executable's after every library's), before any call of ours.
[[gnu::constructor]] void choose_at_load() {
  chosen();
}

}  // namespace

const BlasCore& blas_core() {
  return chosen();
}

std::string blas_core_text() {
  const BlasCore& core = blas_core();
  if (core.fallback.empty()) return core.name;
  return core.name + " (chosen by shmgemm: OpenBLAS fell back to " + core.fallback +
         " on this CPU; OPENBLAS_CORETYPE=" + core.fallback + " keeps that)";
}

}  // namespace shmgemm::detail
