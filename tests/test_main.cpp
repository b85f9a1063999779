// The test programs' main: doctest's, after the kernel choice shmgemm's programs make at start.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "worker/blas_core.hpp"

int main(int argc, char** argv) {
  shmgemm::detail::use_worker_kernels();
  return doctest::Context(argc, argv).run();
}
