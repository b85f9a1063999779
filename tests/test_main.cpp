// The test programs' main: doctest's, after the kernel choice shmgemm's programs make at start.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "tests/test_support.hpp"
#include "worker/blas_core.hpp"

int main(int argc, char** argv) {
  shmgemm::detail::use_worker_kernels();
  return shmgemm::test::finish(doctest::Context(argc, argv).run());
}
