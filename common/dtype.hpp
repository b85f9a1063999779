// Element types the engine multiplies, and their names in numpy's terms.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace shmgemm {

enum class DType : std::uint32_t { float32 = 1, float64 = 2 };

std::size_t item_size(DType dtype);
// numpy's name: "float32", "float64".
std::string_view dtype_name(DType dtype);
// The little-endian .npy descr: "<f4", "<f8".
std::string_view npy_descr(DType dtype);
// The dtype named `name` ("float64"), or nothing.
std::optional<DType> dtype_from_name(std::string_view name);
// For messages: "float32, float64".
std::string_view supported_dtypes();

}  // namespace shmgemm
