// libFuzzer target: parse_npy_header on arbitrary bytes. It must either throw shmgemm::Error or
// return a header whose numbers are consistent and that round-trips through the writer.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/npy.hpp"
#include "shmgemm/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace shmgemm;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  NpyHeader h;
  try {
    h = parse_npy_header(bytes, "fuzz.npy");
  } catch (const Error&) {
    return 0;
  }
  // The header lies inside the bytes, within numpy's cap, and its sizes do not overflow.
  if (h.data_offset > size || h.data_offset > 12 + kMaxNpyHeaderBytes) __builtin_trap();
  if (h.shape.size() > kMaxNpyDims) __builtin_trap();
  std::uint64_t count = 1;
  for (std::uint64_t d : h.shape)
    if (__builtin_mul_overflow(count, d, &count)) __builtin_trap();
  if (count != h.element_count || h.data_bytes != count * item_size(h.dtype)) __builtin_trap();
  // What we write for it reads back the same.
  const NpyHeader again =
      parse_npy_header(format_npy_header(h.dtype, h.shape, h.fortran_order), "again.npy");
  if (again.shape != h.shape || again.dtype != h.dtype || again.fortran_order != h.fortran_order ||
      again.data_offset % 64 != 0)
    __builtin_trap();
  return 0;
}
