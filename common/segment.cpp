#include "common/segment.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <fmt/format.h>
#include <atomic>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <cstring>
#include <utility>

#include "shmgemm/error.hpp"

namespace bip = boost::interprocess;

namespace shmgemm {
namespace {

std::uint64_t random_u64() {
  std::uint64_t v = 0;
  if (::getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v))
    throw Error(ErrorCode::resource,
                fmt::format("cannot draw a random segment name: {}", std::strerror(errno)));
  return v;
}

std::uint64_t shm_free_bytes() {
  struct statvfs st {};
  if (::statvfs("/dev/shm", &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
}

[[noreturn]] void throw_segment_error(const std::string& name, std::string_view action,
                                      const bip::interprocess_exception& e) {
  const int err = e.get_native_error();
  throw Error(ErrorCode::resource, fmt::format("cannot {} shared segment /dev/shm/{}: {}", action,
                                               name, err ? std::strerror(err) : e.what()));
}

}  // namespace

std::string make_segment_name(std::string_view role) {
  static std::atomic<std::uint64_t> counter{0};
  return fmt::format("{}{}-{}-{}-{:016x}", kSegmentPrefix, ::getpid(), counter++, role,
                     random_u64());
}

SharedSegment SharedSegment::create(std::string_view role, std::size_t bytes) {
  SharedSegment seg;
  seg.name_ = make_segment_name(role);
  bip::permissions owner_only(0600);
  try {
    bip::shared_memory_object shm(bip::create_only, seg.name_.c_str(), bip::read_write, owner_only);
    seg.owns_name_ = true;  // from here on the destructor removes the name
    shm.truncate(static_cast<bip::offset_t>(bytes));
    // Reserve the pages now: a full tmpfs is an error here, not a SIGBUS at first touch.
    const int err =
        ::posix_fallocate(shm.get_mapping_handle().handle, 0, static_cast<off_t>(bytes));
    if (err != 0)
      throw Error(ErrorCode::resource,
                  fmt::format("cannot reserve {} bytes for shared segment /dev/shm/{}: {} ({} "
                              "bytes free in /dev/shm)",
                              bytes, seg.name_, std::strerror(err), shm_free_bytes()));
    seg.region_ = bip::mapped_region(shm, bip::read_write);
  } catch (const bip::interprocess_exception& e) {
    throw_segment_error(seg.name_, "create", e);
  }
  return seg;
}

SharedSegment SharedSegment::attach(const std::string& name, bool writable) {
  SharedSegment seg;
  seg.name_ = name;
  const bip::mode_t mode = writable ? bip::read_write : bip::read_only;
  try {
    bip::shared_memory_object shm(bip::open_only, name.c_str(), mode);
    seg.region_ = bip::mapped_region(shm, mode);
  } catch (const bip::interprocess_exception& e) {
    throw_segment_error(name, "attach to", e);
  }
  return seg;
}

SharedSegment::SharedSegment(SharedSegment&& other) noexcept
    : name_(std::move(other.name_)),
      region_(std::move(other.region_)),
      owns_name_(std::exchange(other.owns_name_, false)) {}

SharedSegment& SharedSegment::operator=(SharedSegment&& other) noexcept {
  if (this != &other) {
    unlink();
    name_ = std::move(other.name_);
    region_ = std::move(other.region_);
    owns_name_ = std::exchange(other.owns_name_, false);
  }
  return *this;
}

SharedSegment::~SharedSegment() {
  unlink();
}

void SharedSegment::unlink() noexcept {
  if (!owns_name_) return;
  owns_name_ = false;
  bip::shared_memory_object::remove(name_.c_str());
}

}  // namespace shmgemm
