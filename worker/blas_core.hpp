#pragma once
// OpenBLAS's kernel for this CPU. A DYNAMIC_ARCH OpenBLAS (Debian's) chooses its kernels by the
// CPU's model number, and a release older than the CPU does not know it: OpenBLAS 0.3.21 on an
// Intel Xeon of family 6, model 207 (Emerald Rapids) falls back to its Prescott kernels (SSE3),
// which compute dgemm about 7 times slower than its SkylakeX kernels (AVX-512) on the same
// core. So when OpenBLAS fell back to Prescott on a CPU that has AVX2 or AVX-512, shmgemm
// chooses the kernels by the CPU's features instead (SkylakeX for AVX-512 F/CD/BW/DQ/VL, else
// Haswell for AVX2 with FMA, else SandyBridge for AVX), as OpenBLAS does for the CPUs it knows:
// once, when the program or library is loaded, before any BLAS call.
//
// It sets OPENBLAS_CORETYPE for the processes this one starts (spawned workers, mpirun's
// ranks, a bench's peers), and switches this process's OpenBLAS over by
// gotoblas_dynamic_quit/gotoblas_dynamic_init (a DYNAMIC_ARCH build's exported functions, looked
// up with dlsym). OpenBLAS is one library per process: numpy's calls in the same process get
// the same kernels. A user's OPENBLAS_CORETYPE, of any value, is left as it is: it is the way
// to keep OpenBLAS's own choice (OPENBLAS_CORETYPE=Prescott).
#include <string>

#include "shmgemm/shmgemm.hpp"

namespace shmgemm::detail {

// What happened when this process was loaded (shmgemm::blas_kernel() returns a copy); the first
// call makes sure it happened.
const BlasKernel& blas_core();

// "SkylakeX", or "SkylakeX (chosen by shmgemm: OpenBLAS fell back to Prescott on this CPU)".
std::string blas_core_text();

}  // namespace shmgemm::detail
