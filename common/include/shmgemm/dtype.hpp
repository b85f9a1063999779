// shmgemm::DType: the twelve element types np.matmul takes here, by numpy's names. Public API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

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

}  // namespace shmgemm
