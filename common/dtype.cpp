#include "common/dtype.hpp"

namespace shmgemm {

std::size_t item_size(DType dtype) {
  return dtype == DType::float32 ? 4 : 8;
}

std::string_view dtype_name(DType dtype) {
  return dtype == DType::float32 ? "float32" : "float64";
}

std::string_view npy_descr(DType dtype) {
  return dtype == DType::float32 ? "<f4" : "<f8";
}

std::optional<DType> dtype_from_name(std::string_view name) {
  if (name == "float32") return DType::float32;
  if (name == "float64") return DType::float64;
  return std::nullopt;
}

std::string_view supported_dtypes() {
  return "float32, float64";
}

}  // namespace shmgemm
