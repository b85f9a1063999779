// What the fuzz targets of fixed-layout blocks share: patching a valid block where the input
// says. The input is a list of 12-byte records (u32 offset, u64 value), each written at
// offset % (size - 7); a first byte of 0xFF first truncates the mapping to a size taken from
// the next three bytes. Returns the bytes of `block` a validator may look at.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace shmgemm::fuzz {

inline std::size_t apply_patches(std::byte* block, std::size_t size, const std::uint8_t* data,
                                 std::size_t n) {
  std::size_t mapped = size;
  if (n > 0 && data[0] == 0xFF) {
    mapped = n > 4 ? (data[1] | data[2] << 8 | data[3] << 16) % (size + 1) : 0;
    data += 4 < n ? 4 : n;
    n -= 4 < n ? 4 : n;
  }
  for (std::size_t at = 0; at + 12 <= n; at += 12) {
    std::uint32_t offset = 0;
    std::memcpy(&offset, data + at, 4);
    offset %= static_cast<std::uint32_t>(size - 7);
    std::memcpy(block + offset, data + at + 4, 8);
  }
  return mapped;
}

}  // namespace shmgemm::fuzz
