// numpy's .npy format (numpy/lib/format.py): the preamble and header dict, parsed and written.
// Pure functions over bytes; mapping files is npy_file.hpp's job.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/dtype.hpp"

namespace shmgemm {

// numpy refuses headers longer than this by default (max_header_size in numpy.lib.format).
inline constexpr std::size_t kMaxNpyHeaderBytes = 10000;
// Most dimensions a shape may have (numpy's NPY_MAXDIMS is 32 in 1.x).
inline constexpr std::size_t kMaxNpyDims = 32;

struct NpyHeader {
  std::uint8_t major = 1;  // format version 1.0, 2.0 or 3.0
  std::uint8_t minor = 0;
  DType dtype = DType::float64;
  bool fortran_order = false;
  std::vector<std::uint64_t> shape;
  std::uint64_t data_offset = 0;  // bytes from the start of the file to the first element
  std::uint64_t element_count = 0;
  std::uint64_t data_bytes = 0;  // element_count * item size; checked not to overflow
};

// Bytes of a file's start that always hold a complete valid header (preamble + longest header).
inline constexpr std::size_t kNpyPrefixBytes = 12 + kMaxNpyHeaderBytes;

// Parses the header at the start of `bytes` (a file's first bytes, or all of it). Throws Error
// with a message that starts with `what` (the file name): bad magic, unknown version, truncated
// or oversized header, a malformed dict, an unsupported, big-endian or object dtype, or a
// shape whose byte size overflows 64 bits.
NpyHeader parse_npy_header(std::string_view bytes, std::string_view what);

// A version 1.0 header (2.0 if it does not fit) for a little-endian array of `dtype` and
// `shape`, padded with spaces and a newline so the data starts at a multiple of 64 bytes.
std::string format_npy_header(DType dtype, std::span<const std::uint64_t> shape,
                              bool fortran_order = false);

// "(3,4)", "(5,)", "()": numpy's spelling of a shape, for messages.
std::string shape_string(std::span<const std::uint64_t> shape);

// `text` with every control byte (below 0x20, and 0x7f) written as \n, \r, \t or \xNN, so
// that a message quoting a file's content or a name stays one line and cannot rewrite the
// terminal. Other bytes (UTF-8 included) are kept.
std::string escaped(std::string_view text);

}  // namespace shmgemm
