#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <cstring>
#include <filesystem>

#include "common/segment.hpp"
#include "shmgemm/error.hpp"

using namespace shmgemm;

namespace {

std::filesystem::path dev_shm(const std::string& name) {
  return "/dev/shm/" + name;
}

}  // namespace

TEST_CASE("SharedSegment::create makes a private, reserved, uniquely named segment") {
  SharedSegment seg = SharedSegment::create("t", 10000);
  const std::string name = seg.name();
  CHECK(name.rfind(fmt::format("shmgemm-{}-p{}-", ::getpid(), pid_namespace()), 0) == 0);
  CHECK(pid_namespace() != 0);
  CHECK(name.find("-t-") != std::string::npos);
  struct stat st {};
  REQUIRE(::stat(dev_shm(name).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(st.st_size == 10000);
  CHECK(st.st_blocks * 512 >= 10000);  // pages reserved
  CHECK(seg.size() >= 10000);

  // Another mapping of the same name sees the same bytes.
  std::memcpy(seg.data(), "hello", 6);
  {
    const SharedSegment again = SharedSegment::attach(name, false);
    CHECK(std::memcmp(again.data(), "hello", 6) == 0);
  }
  CHECK(SharedSegment::create("t", 1).name() != name);

  seg.unlink();
  CHECK(!std::filesystem::exists(dev_shm(name)));
  CHECK(std::memcmp(seg.data(), "hello", 6) == 0);  // still mapped
  CHECK_THROWS_AS(SharedSegment::attach(name, false), Error);
}

TEST_CASE("SharedSegment removes its name when destroyed or moved over") {
  std::string first, second;
  {
    SharedSegment a = SharedSegment::create("t", 100);
    SharedSegment b = SharedSegment::create("t", 100);
    first = a.name();
    second = b.name();
    a = std::move(b);  // a's old segment goes now
    CHECK(!std::filesystem::exists(dev_shm(first)));
    CHECK(std::filesystem::exists(dev_shm(second)));
    const SharedSegment moved(std::move(a));
    CHECK(moved.name() == second);
  }
  CHECK(!std::filesystem::exists(dev_shm(second)));
}

TEST_CASE("SharedSegment reports a segment larger than /dev/shm, and leaves no name") {
  const std::size_t too_big = std::size_t{1} << 50;  // 1 PiB
  try {
    SharedSegment::create("big", too_big);
    FAIL("a 1 PiB segment was created");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::resource);
    CHECK(std::string(e.what()).find("/dev/shm/shmgemm-") != std::string::npos);
  }
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm"))
    CHECK(entry.path().filename().string().find("-big-") == std::string::npos);
}

TEST_CASE("attach to a missing segment names it") {
  try {
    SharedSegment::attach("shmgemm-0-0-none-0000000000000000", false);
    FAIL("attached to a missing segment");
  } catch (const Error& e) {
    CHECK(std::string(e.what()) ==
          "cannot attach to shared segment /dev/shm/shmgemm-0-0-none-0000000000000000: No such "
          "file or directory");
  }
}
