#pragma once
// OpenBLAS's kernels in shmgemm's processes. A DYNAMIC_ARCH OpenBLAS (Debian's) chooses its
// kernels by the CPU's model number, and a release older than the CPU does not know it: OpenBLAS
// 0.3.21 on an Intel Xeon of family 6, model 207 (Emerald Rapids) falls back to its Prescott
// kernels (SSE3), which compute dgemm about 7 times slower than its SkylakeX kernels (AVX-512)
// on the same core. Where OpenBLAS fell back to Prescott on a CPU that has AVX2 or AVX-512,
// shmgemm's own processes run the kernels the CPU's features call for instead (SkylakeX for
// AVX-512 F/CD/BW/DQ/VL, else Haswell for AVX2 with FMA, else SandyBridge for AVX), as OpenBLAS
// does for the CPUs it knows.
//
// OpenBLAS is one library per process, and re-initialising it (gotoblas_dynamic_quit/init)
// while another thread computes in it gives wrong results or hangs. So the switch happens only
// where no other thread can be inside OpenBLAS: in shmgemm's executables at the start of main,
// and in a worker just forked (it has one thread). Spawned workers get OPENBLAS_CORETYPE in
// their own environment. A host program that loads libshmgemm keeps the kernels OpenBLAS chose
// for it (its in-process products run on them; the plan knows), and its environment is left as
// it is. A user's OPENBLAS_CORETYPE, of any value, is always kept.
#include <optional>
#include <string>
#include <utility>

namespace shmgemm::detail {

// The kernels OpenBLAS runs in this process now ("Prescott", "Haswell").
std::string kernel_here();

// The kernels shmgemm's workers run: the CPU's where OpenBLAS fell back and no
// OPENBLAS_CORETYPE is set, else OpenBLAS's own choice. Decided once per process, on first use.
const std::string& worker_kernel();

// OpenBLAS's own choice where it is a fallback that shmgemm's workers do not run ("Prescott"),
// else empty.
const std::string& openblas_fallback();

// Switches this process's OpenBLAS to worker_kernel(), and sets OPENBLAS_CORETYPE for the
// processes it starts. Only where no other thread can be inside OpenBLAS: at the start of an
// executable's main, or in a child just forked. Nothing where the kernels are the same.
void use_worker_kernels();

// The same for the kernels OpenBLAS calls `name` ("Prescott"): false where this OpenBLAS cannot
// switch (not a DYNAMIC_ARCH build).
bool use_kernels(const std::string& name);

// What a spawned worker's environment needs so that it runs worker_kernel():
// {"OPENBLAS_CORETYPE", kernel} where OpenBLAS would fall back in it, else nothing.
std::optional<std::pair<std::string, std::string>> worker_kernel_env();

// For --version: the kernels this process and its workers run, and, where a host program's
// OpenBLAS falls back, how it gets the same ones.
std::string kernel_text();

}  // namespace shmgemm::detail
