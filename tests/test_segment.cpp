#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <cstring>
#include <filesystem>

#include "common/segment.hpp"
#include "shmgemm/error.hpp"
#include "tests/test_support.hpp"

using namespace shmgemm;

TEST_CASE("SharedSegment::create makes private, reserved, never-named memory") {
  const auto before = test::names_in("/dev/shm");
  SharedSegment seg = SharedSegment::create("t", 10000);
  const std::string name = seg.name();
  // Reached through its descriptor only: nothing in /dev/shm, ever.
  CHECK(name == fmt::format("/proc/{}/fd/{}", ::getpid(), seg.fd()));
  CHECK(test::names_in("/dev/shm") == before);
  CHECK(pid_namespace() != 0);
  CHECK(make_segment_name("t").rfind(fmt::format("shmgemm-{}-p{}-", ::getpid(), pid_namespace()),
                                     0) == 0);
  struct stat st {};
  REQUIRE(::fstat(seg.fd(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(st.st_size == 10000);
  CHECK(st.st_nlink == 0);             // unlinked
  CHECK(st.st_blocks * 512 >= 10000);  // pages reserved
  CHECK(seg.size() >= 10000);

  // Another mapping through the descriptor sees the same bytes, in this process and another.
  std::memcpy(seg.data(), "hello", 6);
  {
    const SharedSegment again = SharedSegment::attach(name, false);
    CHECK(std::memcmp(again.data(), "hello", 6) == 0);
  }
  const test::RunResult other =
      test::run({"/bin/dd", "if=" + name, "bs=5", "count=1", "status=none"});
  CHECK(other.out == "hello");
  CHECK(SharedSegment::create("t", 1).name() != name);
}

TEST_CASE("SharedSegment::create never names its memory, not even for a moment") {
  // A name that lived between shm_open and shm_unlink was left in /dev/shm by a coordinator
  // SIGKILLed in between (test_faults, "the coordinator killed at any moment...").
  const auto created = test::names_created_in("/dev/shm", [] {
    for (int i = 0; i < 20; ++i)
      CHECK(SharedSegment::create("t", 4096).size() >= 4096);
  });
  CHECK(created.empty());
}

TEST_CASE("SharedSegment: moved and destroyed, its memory goes with its last handle") {
  std::string second;
  {
    SharedSegment a = SharedSegment::create("t", 100);
    SharedSegment b = SharedSegment::create("t", 100);
    second = b.name();
    std::memcpy(b.data(), "kept", 5);
    a = std::move(b);  // a's old segment goes now
    const SharedSegment moved(std::move(a));
    CHECK(moved.name() == second);
    CHECK(std::memcmp(moved.data(), "kept", 5) == 0);
    CHECK(std::filesystem::exists(second));
  }
  CHECK_THROWS_AS(SharedSegment::attach(second, false), Error);  // the descriptor is closed
}

TEST_CASE("SharedSegment reports a segment larger than /dev/shm, and leaves no name") {
  const std::size_t too_big = std::size_t{1} << 50;  // 1 PiB
  try {
    SharedSegment::create("big", too_big);
    FAIL("a 1 PiB segment was created");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::resource);
    CHECK(std::string(e.what()).find("for the big segment") != std::string::npos);
    CHECK(std::string(e.what()).find("bytes free in /dev/shm") != std::string::npos);
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
