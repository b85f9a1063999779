#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "common/npy_file.hpp"
#include "shmgemm/error.hpp"
#include "tests/test_support.hpp"

using namespace shmgemm;
using test::contains;
using test::TempDir;

namespace {

std::string open_error(const std::filesystem::path& p) {
  try {
    NpyMapping::open(p);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::size_t entries_in(const std::filesystem::path& dir) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir))
    ++n;
  return n;
}

}  // namespace

TEST_CASE("NpyMapping maps every version and order, data in place") {
  TempDir tmp;
  std::mt19937_64 rng(1);
  const test::Dense m = test::random_dense(4, 3, rng);
  for (int major : {1, 2, 3}) {
    for (bool fortran : {false, true}) {
      const auto path = tmp / "m.npy";
      test::write_file(path, test::npy_bytes(m, DType::float64, fortran, major));
      const NpyMapping f = NpyMapping::open(path);
      const ConstMatrixRef r = f.matrix();
      CHECK(r.rows == 4);
      CHECK(r.cols == 3);
      CHECK(r.layout == (fortran ? Layout::col_major : Layout::row_major));
      CHECK(r.ld == (fortran ? 4 : 3));
      const auto* d = reinterpret_cast<const double*>(r.data);
      for (std::uint64_t i = 0; i < 4; ++i)
        for (std::uint64_t j = 0; j < 3; ++j)
          CHECK(d[fortran ? j * r.ld + i : i * r.ld + j] == m.at(i, j));
    }
  }
}

TEST_CASE("NpyMapping refuses files that disagree with their header, naming them") {
  TempDir tmp;
  std::mt19937_64 rng(1);
  const std::string good = test::npy_bytes(test::random_dense(4, 3, rng), DType::float64);
  const auto path = tmp / "bad.npy";

  test::write_file(path, good.substr(0, good.size() - 8));
  CHECK(contains(open_error(path), "bad.npy: truncated data: shape (4,3) of float64 needs 96"));
  test::write_file(path, good + "extra");
  CHECK(contains(open_error(path), "unexpected trailing data"));
  test::write_file(path, "");
  CHECK(contains(open_error(path), "bad.npy: not a .npy file (empty)"));
  test::write_file(path, "hello, world\n");
  CHECK(contains(open_error(path), "bad.npy: not a .npy file"));
  CHECK(contains(open_error(tmp / "missing.npy"),
                 "missing.npy: cannot open: No such file or directory"));
  CHECK(contains(open_error(tmp.path()), "is a directory"));
  if (::geteuid() != 0) {
    test::write_file(path, good);
    ::chmod(path.c_str(), 0);
    CHECK(contains(open_error(path), "bad.npy: cannot open: Permission denied"));
  }
}

TEST_CASE("NpyOutput leaves the target untouched until commit") {
  TempDir tmp;
  const auto target = tmp / "C.npy";
  test::write_file(target, "previous contents");
  const std::uint64_t shape[] = {3, 2};
  {
    NpyOutput out = NpyOutput::create(target, DType::float32, shape);
    // Unnamed until commit: nothing new in the folder, yet other processes can open it.
    CHECK(entries_in(tmp.path()) == 1);
    CHECK(std::filesystem::exists(out.path_for_workers()));
    reinterpret_cast<float*>(out.data())[0] = 42.0f;
    CHECK(test::read_file(target) == "previous contents");
  }  // dropped uncommitted: the temporary goes, the target stays
  CHECK(test::read_file(target) == "previous contents");
  CHECK(entries_in(tmp.path()) == 1);

  {
    NpyOutput out = NpyOutput::create(target, DType::float32, shape);
    const MatrixRef c = out.matrix();
    for (int i = 0; i < 6; ++i)
      reinterpret_cast<float*>(c.data)[i] = static_cast<float>(i);
    out.commit();
  }
  CHECK(entries_in(tmp.path()) == 1);
  const NpyMapping back = NpyMapping::open(target);
  CHECK(back.header().shape == std::vector<std::uint64_t>{3, 2});
  CHECK(back.header().dtype == DType::float32);
  CHECK(reinterpret_cast<const float*>(back.data())[5] == 5.0f);
}

TEST_CASE("check_output_path names the path and the problem") {
  TempDir tmp;
  auto error_of = [](const std::filesystem::path& p) -> std::string {
    try {
      check_output_path(p);
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::invalid_argument);
      return e.what();
    }
    return "";
  };
  CHECK(error_of(tmp / "C.npy") == "");
  CHECK(contains(error_of(tmp / "nope" / "C.npy"), "folder '"));
  CHECK(contains(error_of(tmp / "nope" / "C.npy"), "does not exist"));
  test::write_file(tmp / "file", "x");
  CHECK(contains(error_of(tmp / "file" / "C.npy"), "is not a folder"));
  std::filesystem::create_directory(tmp / "dir");
  CHECK(contains(error_of(tmp / "dir"), "is a directory"));
  if (::geteuid() != 0) {
    std::filesystem::create_directory(tmp / "ro");
    ::chmod((tmp / "ro").c_str(), 0500);
    CHECK(contains(error_of(tmp / "ro" / "C.npy"), "is not writable"));
  }
}
