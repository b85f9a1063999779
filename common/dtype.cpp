#include "common/dtype.hpp"

#include <array>

namespace shmgemm {
namespace {

struct Info {
  DType dtype;
  std::string_view name;
  std::string_view descr;
  unsigned bits;
};

constexpr std::array<Info, 12> kInfo{{
    {DType::int8, "int8", "|i1", 8},
    {DType::int16, "int16", "<i2", 16},
    {DType::int32, "int32", "<i4", 32},
    {DType::int64, "int64", "<i8", 64},
    {DType::uint8, "uint8", "|u1", 8},
    {DType::uint16, "uint16", "<u2", 16},
    {DType::uint32, "uint32", "<u4", 32},
    {DType::uint64, "uint64", "<u8", 64},
    {DType::float32, "float32", "<f4", 32},
    {DType::float64, "float64", "<f8", 64},
    {DType::complex64, "complex64", "<c8", 64},
    {DType::complex128, "complex128", "<c16", 128},
}};

constexpr std::array<DType, 12> kAll = [] {
  std::array<DType, 12> all{};
  for (std::size_t i = 0; i < kInfo.size(); ++i)
    all[i] = kInfo[i].dtype;
  return all;
}();

const Info& info(DType dtype) {
  for (const Info& i : kInfo)
    if (i.dtype == dtype) return i;
  return kInfo[9];  // unreachable for valid codes; callers validate descriptors first
}

}  // namespace

std::span<const DType> all_dtypes() {
  return kAll;
}

bool is_valid_dtype(std::uint32_t code) {
  return code >= 1 && code <= 12;
}

std::size_t item_size(DType dtype) {
  return info(dtype).bits / 8;
}

unsigned dtype_bits(DType dtype) {
  return info(dtype).bits;
}

bool is_integer(DType dtype) {
  return dtype >= DType::int8 && dtype <= DType::uint64;
}

bool is_signed_integer(DType dtype) {
  return dtype >= DType::int8 && dtype <= DType::int64;
}

bool is_complex(DType dtype) {
  return dtype == DType::complex64 || dtype == DType::complex128;
}

bool is_blas_type(DType dtype) {
  return !is_integer(dtype);
}

std::string_view dtype_name(DType dtype) {
  return info(dtype).name;
}

std::string_view npy_descr(DType dtype) {
  return info(dtype).descr;
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const Info& i : kInfo)
    if (i.name == name) return i.dtype;
  return std::nullopt;
}

std::string_view supported_dtypes() {
  return "int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64, "
         "complex64, complex128";
}

}  // namespace shmgemm
