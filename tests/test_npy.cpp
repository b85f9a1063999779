#include <doctest/doctest.h>

#include <string>

#include "common/npy.hpp"
#include "shmgemm/error.hpp"
#include "tests/test_support.hpp"

using namespace shmgemm;
using test::contains;

namespace {

// A version-1.0 file's bytes around a hand-written header dict (no data).
std::string v1(const std::string& dict) {
  std::string h = dict + "\n";
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(h.size() & 0xFF);
  out += static_cast<char>(h.size() >> 8);
  return out + h;
}

// The message parse_npy_header throws for `bytes`, or "" when it parses.
std::string error_of(const std::string& bytes) {
  try {
    parse_npy_header(bytes, "x.npy");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("format_npy_header round-trips through parse_npy_header") {
  const std::vector<std::vector<std::uint64_t>> shapes = {{}, {5}, {3, 4}, {2, 3, 4}, {0, 7}};
  for (DType dtype : {DType::float32, DType::float64}) {
    for (bool fortran : {false, true}) {
      for (const auto& shape : shapes) {
        const std::string header = format_npy_header(dtype, shape, fortran);
        CHECK(header.size() % 64 == 0);
        CHECK(header.back() == '\n');
        const NpyHeader h = parse_npy_header(header, "x.npy");
        CHECK(h.major == 1);
        CHECK(h.dtype == dtype);
        CHECK(h.fortran_order == fortran);
        CHECK(h.shape == shape);
        CHECK(h.data_offset == header.size());
        std::uint64_t count = 1;
        for (auto d : shape)
          count *= d;
        CHECK(h.element_count == count);
        CHECK(h.data_bytes == count * item_size(dtype));
      }
    }
  }
}

TEST_CASE("parse_npy_header reads versions 1.0, 2.0 and 3.0 in both orders") {
  std::mt19937_64 rng(7);
  const test::Dense m = test::random_dense(3, 5, rng);
  for (int major : {1, 2, 3}) {
    for (bool fortran : {false, true}) {
      const std::string bytes = test::npy_bytes(m, DType::float32, fortran, major);
      const NpyHeader h = parse_npy_header(bytes, "x.npy");
      CHECK(h.major == major);
      CHECK(h.fortran_order == fortran);
      CHECK(h.shape == std::vector<std::uint64_t>{3, 5});
      CHECK(h.data_offset % 64 == 0);
      CHECK(h.data_offset + h.data_bytes == bytes.size());
    }
  }
}

TEST_CASE("parse_npy_header accepts what numpy accepts") {
  CHECK(error_of(v1("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }")) == "");
  CHECK(error_of(v1("{'shape': (3,4), 'fortran_order': True, 'descr': '<f4'}")) == "");
  CHECK(error_of(v1("{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (2L, 3L)}")) == "");
  CHECK(error_of(v1("{'descr': '<f8', 'fortran_order': False, 'shape': (7,), }   ")) == "");
  CHECK(error_of(v1("{'descr': '<f8', 'fortran_order': False, 'shape': (), }")) == "");
}

TEST_CASE("parse_npy_header refuses broken and unsupported headers, naming the file") {
  const std::string ok_dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }";
  struct Case {
    std::string bytes;
    std::string expect;
  };
  std::string huge("\x93NUMPY\x02\x00", 8);
  huge += std::string("\x11\x27\x00\x00", 4);  // 10001 bytes
  huge += std::string(10001, ' ');
  const std::vector<Case> cases = {
      {"", "not a .npy file"},
      {"PK\x03\x04 a zip file", "not a .npy file"},
      {std::string("\x93NUMPY\x04\x00\x10\x00", 10), "version 4.0"},
      {std::string("\x93NUMPY\x01\x00", 8), "truncated"},
      {v1(ok_dict).substr(0, 30), "truncated .npy header"},
      {huge, "exceeds the 10000-byte limit"},
      {v1("{'descr': '<f8', 'shape': (3, 4), }"), "lacks"},
      {v1("{'descr': '<f8', 'fortran_order': False, 'shape': (3,4), 'x': 1}"), "unexpected"},
      {v1("{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (3,4)}"), "repeated"},
      {v1("{'descr': '>f8', 'fortran_order': False, 'shape': (3, 4), }"), "big-endian float64"},
      {v1("{'descr': '|O', 'fortran_order': False, 'shape': (3, 4), }"), "object arrays"},
      {v1("{'descr': '|b1', 'fortran_order': False, 'shape': (3, 4), }"),
       "unsupported dtype bool ('|b1'); supported: int8, int16, int32, int64, uint8, uint16, "
       "uint32, uint64, float32, float64, complex64, complex128"},
      {v1("{'descr': '<f2', 'fortran_order': False, 'shape': (3, 4), }"), "float16"},
      {v1("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (3,), }"), "structured"},
      {v1("{'descr': '<f8', 'fortran_order': maybe, 'shape': (3, 4), }"), "True or False"},
      {v1("{'descr': '<f8', 'fortran_order': False, 'shape': (-3, 4), }"), "non-negative"},
      {v1("{'descr': '<f8', 'fortran_order': False, 'shape': (5), }"), "not a tuple"},
      {v1("{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999, 1), }"),
       "overflows 64 bits"},
      {v1("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }"),
       "more elements than 64 bits"},
      {v1("{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952,), }"),
       "more bytes than 64 bits"},
      {v1("{'descr': '<f8', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
          "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1)}"),
       "more than 32 dimensions"},
      {v1(ok_dict + " junk"), "trailing characters"},
      {v1("{'descr': '<f8, 'fortran_order': False, 'shape': (3, 4), }"), "malformed"},
      {v1("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), "), "malformed"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.expect);
    const std::string msg = error_of(c.bytes);
    CHECK(contains(msg, "x.npy: "));
    CHECK(contains(msg, c.expect));
  }
}

TEST_CASE("shape_string spells shapes as numpy does") {
  CHECK(shape_string(std::vector<std::uint64_t>{3, 4}) == "(3,4)");
  CHECK(shape_string(std::vector<std::uint64_t>{5}) == "(5,)");
  CHECK(shape_string(std::vector<std::uint64_t>{}) == "()");
}
