// shmgemm::DType: the twelve element types np.matmul takes here, by numpy's names. Public API.
#pragma once

#include <complex>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>

#include "shmgemm/export.hpp"

namespace shmgemm {

// The codes are part of the job descriptor: append, never renumber.
enum class DType : std::uint32_t {
  float32 = 1,
  float64 = 2,
  int8 = 3,
  int16 = 4,
  int32 = 5,
  int64 = 6,
  uint8 = 7,
  uint16 = 8,
  uint32 = 9,
  uint64 = 10,
  complex64 = 11,
  complex128 = 12,
};

// Bytes of one element: 1 for int8, 16 for complex128.
SHMGEMM_API std::size_t item_size(DType dtype);
// numpy's name: "float32", "int8", "complex128".
SHMGEMM_API std::string_view dtype_name(DType dtype);
// The dtype numpy calls `name` ("float64"), or nothing.
SHMGEMM_API std::optional<DType> dtype_from_name(std::string_view name);
// For messages: "int8, int16, ..., complex128".
SHMGEMM_API std::string_view supported_dtypes();

// The dtype of elements of type T: DType::float64 for double, DType::complex64 for
// std::complex<float>, DType::int8 for std::int8_t, ...
template <class T>
constexpr DType dtype_of() {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, float>)
    return DType::float32;
  else if constexpr (std::is_same_v<U, double>)
    return DType::float64;
  else if constexpr (std::is_same_v<U, std::int8_t>)
    return DType::int8;
  else if constexpr (std::is_same_v<U, std::int16_t>)
    return DType::int16;
  else if constexpr (std::is_same_v<U, std::int32_t>)
    return DType::int32;
  else if constexpr (std::is_same_v<U, std::int64_t>)
    return DType::int64;
  else if constexpr (std::is_same_v<U, std::uint8_t>)
    return DType::uint8;
  else if constexpr (std::is_same_v<U, std::uint16_t>)
    return DType::uint16;
  else if constexpr (std::is_same_v<U, std::uint32_t>)
    return DType::uint32;
  else if constexpr (std::is_same_v<U, std::uint64_t>)
    return DType::uint64;
  else if constexpr (std::is_same_v<U, std::complex<float>>)
    return DType::complex64;
  else if constexpr (std::is_same_v<U, std::complex<double>>)
    return DType::complex128;
  else
    static_assert(sizeof(U) == 0, "no shmgemm dtype holds this type");
}

}  // namespace shmgemm
