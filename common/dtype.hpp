// Element types the engine multiplies (shmgemm/dtype.hpp), and what the engine asks of them.
#pragma once

#include <complex>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "shmgemm/dtype.hpp"

namespace shmgemm {

// Every dtype, in numpy's order of kinds and sizes (ints, unsigned, floats, complex).
std::span<const DType> all_dtypes();
// True for the codes of DType.
bool is_valid_dtype(std::uint32_t code);

// Bits of one element: 8 for int8, 128 for complex128.
unsigned dtype_bits(DType dtype);
bool is_integer(DType dtype);
bool is_signed_integer(DType dtype);
bool is_complex(DType dtype);
// float32, float64, complex64, complex128: the types OpenBLAS multiplies.
bool is_blas_type(DType dtype);
// The .npy descr: "<f4", "|i1", "<c16".
std::string_view npy_descr(DType dtype);

// Calls f(T{}) with T the C++ type of `dtype`: std::int8_t ... std::uint64_t, float, double,
// std::complex<float>, std::complex<double>.
template <class F>
void visit_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::int8:
      return f(std::int8_t{});
    case DType::int16:
      return f(std::int16_t{});
    case DType::int32:
      return f(std::int32_t{});
    case DType::int64:
      return f(std::int64_t{});
    case DType::uint8:
      return f(std::uint8_t{});
    case DType::uint16:
      return f(std::uint16_t{});
    case DType::uint32:
      return f(std::uint32_t{});
    case DType::uint64:
      return f(std::uint64_t{});
    case DType::float32:
      return f(float{});
    case DType::float64:
      return f(double{});
    case DType::complex64:
      return f(std::complex<float>{});
    case DType::complex128:
      return f(std::complex<double>{});
  }
}

}  // namespace shmgemm
