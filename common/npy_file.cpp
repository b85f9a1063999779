#include "common/npy_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "common/mapped_file.hpp"
#include "shmgemm/error.hpp"

namespace bip = boost::interprocess;
namespace fs = std::filesystem;

namespace shmgemm {
namespace {

[[noreturn]] void throw_errno(ErrorCode code, std::string_view what, std::string_view action,
                              int err) {
  throw Error(code, fmt::format("{}: {}: {}", what, action, std::strerror(err)));
}

ConstMatrixRef matrix_of(const std::byte* data, const NpyHeader& h, std::string_view what) {
  if (h.shape.size() != 2)
    throw Error(ErrorCode::internal, fmt::format("{}: not a 2-D array", what));
  ConstMatrixRef ref;
  ref.data = data;
  ref.rows = h.shape[0];
  ref.cols = h.shape[1];
  ref.layout = h.fortran_order ? Layout::col_major : Layout::row_major;
  ref.ld = std::max<std::uint64_t>(1, h.fortran_order ? ref.rows : ref.cols);
  return ref;
}

}  // namespace

std::string temp_name_beside(const fs::path& target) {
  std::uint64_t r = 0;
  if (::getrandom(&r, sizeof r, 0) != static_cast<ssize_t>(sizeof r)) r = ::getpid();
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  return (dir / fmt::format(".{}.shmgemm-{}-{:08x}.tmp", target.filename().string(), ::getpid(),
                            static_cast<std::uint32_t>(r)))
      .string();
}

NpyMapping NpyMapping::open(const fs::path& path) {
  NpyMapping m;
  m.path_ = path.string();
  struct stat st {};
  if (::stat(m.path_.c_str(), &st) != 0)
    throw_errno(ErrorCode::bad_file, m.path_, "cannot open", errno);
  if (S_ISDIR(st.st_mode)) throw Error(ErrorCode::bad_file, m.path_ + ": is a directory");
  if (!S_ISREG(st.st_mode)) throw Error(ErrorCode::bad_file, m.path_ + ": not a regular file");
  if (::access(m.path_.c_str(), R_OK) != 0)
    throw_errno(ErrorCode::bad_file, m.path_, "cannot open", errno);
  if (st.st_size == 0) throw Error(ErrorCode::bad_file, m.path_ + ": not a .npy file (empty)");

  m.region_ = map_whole_file(m.path_, false);
  const auto* base = static_cast<const char*>(m.region_.get_address());
  const std::size_t size = m.region_.get_size();
  m.header_ = parse_npy_header(std::string_view(base, std::min(size, kNpyPrefixBytes)), m.path_);

  // The file must hold exactly the data the header announces.
  const std::uint64_t expected = m.header_.data_offset + m.header_.data_bytes;
  if (size != expected)
    throw Error(ErrorCode::bad_file,
                fmt::format("{}: {} data: shape {} of {} needs {} bytes after the {}-byte "
                            "header, the file has {}",
                            m.path_, size < expected ? "truncated" : "unexpected trailing",
                            shape_string(m.header_.shape), dtype_name(m.header_.dtype),
                            m.header_.data_bytes, m.header_.data_offset,
                            size - std::min<std::uint64_t>(size, m.header_.data_offset)));
  return m;
}

ConstMatrixRef NpyMapping::matrix() const {
  return matrix_of(data(), header_, path_);
}

void NpyMapping::drop_pages(std::uint64_t offset, std::uint64_t bytes) const {
  advise_pages(data() + offset, bytes, MADV_DONTNEED);
}

void NpyOutput::drop_pages(std::uint64_t offset, std::uint64_t bytes) const {
  advise_pages(data() + offset, bytes, MADV_DONTNEED);
}

void check_output_path(const fs::path& target) {
  const std::string what = target.string();
  if (target.empty() || !target.has_filename())
    throw Error(ErrorCode::invalid_argument, fmt::format("output '{}': not a file name", what));
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  std::error_code ec;
  if (!fs::exists(dir, ec))
    throw Error(ErrorCode::invalid_argument,
                fmt::format("{}: folder '{}' does not exist", what, dir.string()));
  if (!fs::is_directory(dir, ec))
    throw Error(ErrorCode::invalid_argument,
                fmt::format("{}: '{}' is not a folder", what, dir.string()));
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    throw Error(ErrorCode::invalid_argument, fmt::format("{}: folder '{}' is not writable: {}",
                                                         what, dir.string(), std::strerror(errno)));
  if (fs::is_directory(target, ec))
    throw Error(ErrorCode::invalid_argument, fmt::format("{}: is a directory", what));
}

NpyOutput NpyOutput::create(const fs::path& target, DType dtype,
                            std::span<const std::uint64_t> shape) {
  check_output_path(target);
  NpyOutput out;
  out.target_ = target.string();
  const std::string header = format_npy_header(dtype, shape);
  out.header_ = parse_npy_header(header, out.target_);
  const std::uint64_t total = out.header_.data_offset + out.header_.data_bytes;

  // An unnamed file in the target's folder: nothing to clean up if this process dies. Where
  // the filesystem has no O_TMPFILE, a named temporary beside the target. 0666 as numpy.save
  // uses; the umask applies.
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  out.fd_ = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0666);
  if (out.fd_ < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
    out.temp_path_ = temp_name_beside(target);
    out.fd_ = ::open(out.temp_path_.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0666);
    if (out.fd_ < 0) out.temp_path_.clear();
  }
  if (out.fd_ < 0) throw_errno(ErrorCode::resource, out.target_, "cannot create output", errno);
  // From here on the destructor removes what was created.
  if (::pwrite(out.fd_, header.data(), header.size(), 0) != static_cast<ssize_t>(header.size()))
    throw_errno(ErrorCode::resource, out.target_, "cannot write output header", errno);
  // Reserve the blocks up front so a full disk is an error now, not a SIGBUS mid-run.
  int err = ::posix_fallocate(out.fd_, 0, static_cast<off_t>(total));
  if (err == EOPNOTSUPP || err == EINVAL)
    err = ::ftruncate(out.fd_, static_cast<off_t>(total)) ? errno : 0;
  if (err == ENOSPC || err == EFBIG) {
    struct statvfs st {};
    const std::uint64_t avail =
        ::fstatvfs(out.fd_, &st) == 0 ? static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize : 0;
    throw Error(ErrorCode::resource,
                fmt::format("{}: not enough space for the output: {} bytes needed, {} free",
                            out.target_, total, avail));
  }
  if (err != 0) throw_errno(ErrorCode::resource, out.target_, "cannot reserve space", err);
  out.region_ = map_whole_file(fmt::format("/proc/self/fd/{}", out.fd_), true);
  return out;
}

NpyOutput::NpyOutput(NpyOutput&& other) noexcept
    : target_(std::move(other.target_)),
      temp_path_(std::exchange(other.temp_path_, {})),
      fd_(std::exchange(other.fd_, -1)),
      header_(std::move(other.header_)),
      region_(std::move(other.region_)),
      committed_(other.committed_) {}

NpyOutput::~NpyOutput() {
  if (!committed_ && !temp_path_.empty()) ::unlink(temp_path_.c_str());
  if (fd_ >= 0) ::close(fd_);
}

std::string NpyOutput::path_for_workers() const {
  return temp_path_.empty() ? fmt::format("/proc/{}/fd/{}", ::getpid(), fd_) : temp_path_;
}

MatrixRef NpyOutput::matrix() const {
  const ConstMatrixRef ref = matrix_of(data(), header_, target_);
  return {data(), ref.rows, ref.cols, ref.ld, ref.layout};
}

void NpyOutput::commit() {
  if (temp_path_.empty()) {
    // Give the unnamed file a temporary name (linkat cannot replace), then rename it over the
    // target in one step.
    const std::string named = temp_name_beside(target_);
    if (::linkat(AT_FDCWD, fmt::format("/proc/self/fd/{}", fd_).c_str(), AT_FDCWD, named.c_str(),
                 AT_SYMLINK_FOLLOW) != 0)
      throw_errno(ErrorCode::resource, target_, "cannot link the finished output", errno);
    temp_path_ = named;
  }
  if (::rename(temp_path_.c_str(), target_.c_str()) != 0)
    throw_errno(ErrorCode::resource, target_, "cannot rename the finished output into place",
                errno);
  committed_ = true;
}

}  // namespace shmgemm
