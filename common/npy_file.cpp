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
#include <charconv>
#include <cstdio>
#include <cstring>
#include <utility>

#include "common/mapped_file.hpp"
#include "common/segment.hpp"
#include "shmgemm/error.hpp"

namespace bip = boost::interprocess;
namespace fs = std::filesystem;

namespace shmgemm {
namespace {

[[noreturn]] void throw_errno(ErrorCode code, std::string_view what, std::string_view action,
                              int err) {
  throw Error(code, fmt::format("{}: {}: {}", what, action, std::strerror(err)), err,
              std::string(what));
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

namespace {

// Whether this process has CAP_FOWNER (which overrides the sticky bit), from /proc/self/status.
bool may_override_sticky() {
  std::FILE* f = std::fopen("/proc/self/status", "re");
  if (f == nullptr) return ::geteuid() == 0;
  char line[256];
  unsigned long long caps = 0;
  bool found = false;
  while (!found && std::fgets(line, sizeof line, f))
    found = std::sscanf(line, "CapEff: %llx", &caps) == 1;
  std::fclose(f);
  constexpr unsigned kCapFowner = 3;
  return found ? (caps >> kCapFowner) & 1 : ::geteuid() == 0;
}

// A folder where others may create files and only an entry's owner (or the folder's) may
// remove or replace it: sticky and world-writable, as /tmp.
bool sticky_and_shared(const struct stat& dir) {
  return (dir.st_mode & S_ISVTX) != 0 && (dir.st_mode & S_IWOTH) != 0;
}

}  // namespace

std::string temp_name_beside(const fs::path& target) {
  std::uint64_t r = 0;
  if (::getrandom(&r, sizeof r, 0) != static_cast<ssize_t>(sizeof r)) r = ::getpid();
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  const std::string tail =
      fmt::format(".shmgemm-{}-{:08x}.tmp", maker_tag(::getpid()), static_cast<std::uint32_t>(r));
  // Shortened so that the whole name fits in NAME_MAX (255) with its dot and tail.
  std::string name = target.filename().string();
  name.resize(std::min<std::size_t>(name.size(), 255 - 1 - tail.size()));
  return (dir / ("." + name + tail)).string();
}

bool parse_temp_name(std::string_view name, pid_t& pid, std::uint64_t& ns) {
  // Open MPI's MPI-IO (ompio) tests file locking with "<file>.locktest.<rank>" beside a file it
  // opens: a rank killed meanwhile leaves one beside shmgemm-mpi's temporary output.
  if (const std::size_t lock = name.rfind(".tmp.locktest."); lock != std::string_view::npos) {
    const std::string_view rank = name.substr(lock + 14);
    if (rank.empty() || rank.find_first_not_of("0123456789") != std::string_view::npos)
      return false;
    name = name.substr(0, lock + 4);
  }
  if (name.size() < 2 || name[0] != '.' || !name.ends_with(".tmp")) return false;
  const std::size_t at = name.rfind(".shmgemm-");
  if (at == std::string_view::npos || at == 0) return false;
  // ".shmgemm-" <maker tag> "-" <8 hex digits> ".tmp"
  const std::string_view rest = name.substr(at + 9, name.size() - 4 - at - 9);
  const std::size_t tag = parse_maker_tag(rest, pid, ns);
  std::uint32_t random = 0;
  const auto [end, err] = std::from_chars(rest.data() + tag, rest.data() + rest.size(), random, 16);
  return tag > 0 && err == std::errc() && end == rest.data() + rest.size() &&
         rest.size() - tag == 8;
}

NpyMapping NpyMapping::open(const fs::path& path) {
  NpyMapping m;
  m.path_ = path.string();
  // Opened once: every later look (size, mapping, spawned workers) is at this file, whatever
  // the name comes to mean. O_NONBLOCK: a FIFO given as an operand must not block the open.
  m.fd_.reset(::open(m.path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!m.fd_) {
    const int err = errno;
    if (err == ENOENT || err == EACCES || err == ELOOP || err == ENAMETOOLONG || err == ENOTDIR)
      throw_errno(ErrorCode::bad_file, m.path_, "cannot open", err);
    throw_errno(ErrorCode::resource, m.path_, "cannot open", err);
  }
  struct stat st {};
  if (::fstat(m.fd_.get(), &st) != 0)
    throw_errno(ErrorCode::bad_file, m.path_, "cannot open", errno);
  if (S_ISDIR(st.st_mode))
    throw Error(ErrorCode::bad_file, m.path_ + ": is a directory", EISDIR, m.path_);
  if (!S_ISREG(st.st_mode)) throw Error(ErrorCode::bad_file, m.path_ + ": not a regular file");
  if (st.st_size == 0) throw Error(ErrorCode::bad_file, m.path_ + ": not a .npy file (empty)");

  try {
    m.region_ = map_whole_file(m.fd_.path_here(), false);
  } catch (const MapError& e) {
    throw Error(e.code(), fmt::format("{}: cannot map: {}", m.path_, e.reason()));
  }
  // Named in a signal handler's message, which cannot escape it then.
  m.guard_ = MappingGuard(m.region_.get_address(), m.region_.get_size(), escaped(m.path_));
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

std::string NpyMapping::path_for_workers() const {
  return fd_.path_for_others();
}

ConstMatrixRef NpyMapping::matrix() const {
  return matrix_of(data(), header_, path_);
}

void NpyMapping::drop_pages(std::uint64_t offset, std::uint64_t bytes) const {
  advise_pages(data() + offset, bytes, MADV_DONTNEED);
}

void NpyMapping::prefetch(std::uint64_t offset, std::uint64_t bytes) const {
  if (bytes > 0)
    ::posix_fadvise(fd_.get(), off_t(header_.data_offset + offset), off_t(bytes),
                    POSIX_FADV_WILLNEED);
}

void NpyMapping::read(std::uint64_t offset, std::uint64_t bytes, std::byte* to) const {
  const int err = pread_all(fd_.get(), to, header_.data_offset + offset, bytes);
  if (err > 0) throw_errno(ErrorCode::resource, path_, "cannot read", err);
  if (err < 0)
    throw Error(ErrorCode::bad_file, fmt::format("{}: cannot read: the file shrank", path_));
}

void NpyMapping::evict(std::uint64_t offset, std::uint64_t bytes) const {
  advise_pages(data() + offset, bytes, MADV_DONTNEED);
  // The page cache: every page that holds a byte of the range.
  const std::uint64_t page = 4096, from = header_.data_offset + offset;
  const std::uint64_t first = from & ~(page - 1), end = (from + bytes + page - 1) & ~(page - 1);
  ::posix_fadvise(fd_.get(), off_t(first), off_t(end - first), POSIX_FADV_DONTNEED);
}

void NpyOutput::drop_pages(std::uint64_t offset, std::uint64_t bytes) const {
  advise_pages(data() + offset, bytes, MADV_DONTNEED);
}

void NpyOutput::write_back(std::uint64_t offset, std::uint64_t bytes) const {
  // msync takes whole pages: the pages that hold any byte of the range.
  const std::uintptr_t page = 4096;
  const auto from = reinterpret_cast<std::uintptr_t>(data() + offset);
  const auto first = from & ~(page - 1), end = (from + bytes + page - 1) & ~(page - 1);
  if (::msync(reinterpret_cast<void*>(first), end - first, MS_SYNC) != 0)
    throw_errno(ErrorCode::resource, target_, "cannot write the output", errno);
  advise_pages(data() + offset, bytes, MADV_DONTNEED);
  ::posix_fadvise(fd_.get(), off_t(header_.data_offset + offset), off_t(bytes),
                  POSIX_FADV_DONTNEED);
}

OutputTarget resolve_output(const fs::path& target) {
  const std::string what = target.string();
  // The system's error number where np.save's open() would fail with one.
  auto refuse = [&](const std::string& problem, int err = 0) {
    if (err == 0) throw Error(ErrorCode::invalid_argument, fmt::format("{}: {}", what, problem));
    throw Error(ErrorCode::invalid_argument, fmt::format("{}: {}", what, problem), err, what);
  };
  if (target.empty() || !target.has_filename()) refuse("not a file name");
  // Follow symlinks, as np.save's open() does: the file they lead to is the one replaced.
  fs::path path = target;
  struct stat st {};
  bool exists = false;
  auto check_length = [&](const fs::path& p) {
    if (p.filename().string().size() > 255)
      refuse(
          fmt::format("file name too long ({} bytes; at most 255)", p.filename().string().size()),
          ENAMETOOLONG);
    if (p.string().size() >= 4096)
      refuse(fmt::format("path too long ({} bytes; at most 4095)", p.string().size()),
             ENAMETOOLONG);
  };
  for (int hops = 0;; ++hops) {
    check_length(path);
    if (::lstat(path.c_str(), &st) != 0) {
      // Missing: created new; a component that is no folder: reported below.
      if (errno != ENOENT && errno != ENOTDIR)
        refuse(fmt::format("cannot look at it: {}", std::strerror(errno)), errno);
      break;
    }
    if (!S_ISLNK(st.st_mode)) {
      exists = true;
      break;
    }
    if (hops == 40) refuse("too many levels of symbolic links", ELOOP);
    // The kernel's protected_symlinks rule, whatever the sysctl says: in a sticky folder that
    // anyone may write to (/tmp), a link is followed only when it is this user's or the
    // folder owner's. Another user's link there could aim the output at any file this process
    // may write.
    const fs::path link_dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
    struct stat folder {};
    if (::stat(link_dir.c_str(), &folder) == 0 && sticky_and_shared(folder) &&
        st.st_uid != ::geteuid() && st.st_uid != folder.st_uid)
      refuse(fmt::format("a symbolic link of another user (uid {}) in the shared sticky folder "
                         "'{}': not followed (protected_symlinks)",
                         st.st_uid, link_dir.string()),
             EACCES);
    std::error_code ec;
    const fs::path to = fs::read_symlink(path, ec);
    if (ec) refuse(fmt::format("cannot read the symbolic link: {}", ec.message()), ec.value());
    path = to.is_absolute() ? to : path.parent_path() / to;
  }
  if (exists && S_ISDIR(st.st_mode)) refuse("is a directory", EISDIR);
  if (exists && !S_ISREG(st.st_mode))
    refuse(
        fmt::format("is a {}, not a regular file: shmgemm writes its output under a "
                    "temporary name and renames it into place, which would replace it",
                    S_ISCHR(st.st_mode)    ? "character device"
                    : S_ISBLK(st.st_mode)  ? "block device"
                    : S_ISFIFO(st.st_mode) ? "FIFO"
                    : S_ISSOCK(st.st_mode) ? "socket"
                                           : "special file"));
  if (!path.has_filename()) refuse("not a file name");
  const fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  std::error_code ec;
  if (!fs::exists(dir, ec)) refuse(fmt::format("folder '{}' does not exist", dir.string()), ENOENT);
  if (!fs::is_directory(dir, ec))
    refuse(fmt::format("'{}' is not a folder", dir.string()), ENOTDIR);
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    refuse(fmt::format("folder '{}' is not writable: {}", dir.string(), std::strerror(errno)),
           errno);
  // The output is renamed over the file at the end: in a sticky folder only the file's owner,
  // the folder's or a process with CAP_FOWNER may. Known now, so refused before any work.
  struct stat folder {};
  if (exists && ::stat(dir.c_str(), &folder) == 0 && (folder.st_mode & S_ISVTX) != 0 &&
      st.st_uid != ::geteuid() && folder.st_uid != ::geteuid() && !may_override_sticky())
    refuse(fmt::format("cannot replace it: the folder '{}' is sticky and the file belongs to "
                       "another user (uid {})",
                       dir.string(), st.st_uid),
           EPERM);
  if (temp_name_beside(path).size() >= 4096)
    refuse(
        fmt::format("path too long ({} bytes; with the temporary name beside it, it must stay "
                    "under 4096)",
                    path.string().size()));
  OutputTarget t;
  t.path = path;
  t.exists = exists;
  if (exists) {
    t.mode = st.st_mode & 07777;
    t.uid = st.st_uid;
    t.gid = st.st_gid;
  }
  return t;
}

void check_output_path(const fs::path& target) {
  resolve_output(target);
}

NpyOutput NpyOutput::create(const fs::path& target, DType dtype,
                            std::span<const std::uint64_t> shape) {
  const OutputTarget where = resolve_output(target);
  NpyOutput out;
  out.target_ = target.string();
  out.path_ = where.path.string();
  const std::string header = format_npy_header(dtype, shape);
  out.header_ = parse_npy_header(header, out.target_);
  const std::uint64_t total = out.header_.data_offset + out.header_.data_bytes;

  // An unnamed file in the target's folder: nothing to clean up if this process dies. Where
  // the filesystem has no O_TMPFILE, a named temporary beside the target. A new file gets 0666
  // as numpy.save uses (the umask applies); a replaced one its mode, from the start, so that a
  // private result is never readable by others, not even while it is computed.
  const fs::path dir = where.path.parent_path().empty() ? fs::path(".") : where.path.parent_path();
  const mode_t mode = where.exists ? where.mode & 0777 : 0666;
  out.fd_.reset(::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, mode));
  if (!out.fd_ && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
    out.temp_path_ = temp_name_beside(where.path);
    out.fd_.reset(::open(out.temp_path_.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, mode));
    if (!out.fd_) out.temp_path_.clear();
  }
  if (!out.fd_) throw_errno(ErrorCode::resource, out.target_, "cannot create output", errno);
  // From here on the destructor removes what was created.
  if (where.exists) {
    // The old file's owner and group where this process may give them (root, or a group it
    // belongs to), and its exact mode (the umask took bits off above).
    if (::fchown(out.fd_.get(), where.uid, where.gid) != 0)
      static_cast<void>(::fchown(out.fd_.get(), static_cast<uid_t>(-1), where.gid));
    ::fchmod(out.fd_.get(), where.mode);
  }
  auto no_space = [&] {
    struct statvfs st {};
    const std::uint64_t avail = ::fstatvfs(out.fd_.get(), &st) == 0
                                    ? static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize
                                    : 0;
    throw Error(ErrorCode::resource,
                fmt::format("{}: not enough space for the output: {} bytes needed, {} free",
                            out.target_, total, avail));
  };
  // Reserve the blocks up front so a full disk is an error now, not a SIGBUS mid-run.
  int err = ::posix_fallocate(out.fd_.get(), 0, static_cast<off_t>(total));
  if (err == EOPNOTSUPP || err == EINVAL)
    err = ::ftruncate(out.fd_.get(), static_cast<off_t>(total)) ? errno : 0;
  if (err == ENOSPC || err == EFBIG || err == EDQUOT) no_space();
  if (err != 0) throw_errno(ErrorCode::resource, out.target_, "cannot reserve space", err);
  if (::pwrite(out.fd_.get(), header.data(), header.size(), 0) !=
      static_cast<ssize_t>(header.size())) {
    if (errno == ENOSPC || errno == EDQUOT) no_space();
    throw_errno(ErrorCode::resource, out.target_, "cannot write output header", errno);
  }
  try {
    out.region_ = map_whole_file(out.fd_.path_here(), true);
  } catch (const MapError& e) {
    // Name the output, not the descriptor it was mapped through.
    throw Error(e.code(), fmt::format("{}: cannot map the output: {}", out.target_, e.reason()));
  }
  return out;
}

NpyOutput::NpyOutput(NpyOutput&& other) noexcept
    : target_(std::move(other.target_)),
      path_(std::move(other.path_)),
      temp_path_(std::exchange(other.temp_path_, {})),
      fd_(std::move(other.fd_)),
      header_(std::move(other.header_)),
      region_(std::move(other.region_)),
      committed_(other.committed_) {}

NpyOutput::~NpyOutput() {
  if (!committed_ && !temp_path_.empty()) ::unlink(temp_path_.c_str());
}

std::string NpyOutput::path_for_workers() const {
  return temp_path_.empty() ? fd_.path_for_others() : temp_path_;
}

MatrixRef NpyOutput::matrix() const {
  const ConstMatrixRef ref = matrix_of(data(), header_, target_);
  return {data(), ref.rows, ref.cols, ref.ld, ref.layout};
}

void NpyOutput::commit(bool durable) {
  if (durable && ::fdatasync(fd_.get()) != 0)
    throw_errno(ErrorCode::resource, target_, "cannot write the output to disk", errno);
  if (temp_path_.empty()) {
    // Give the unnamed file a temporary name (linkat cannot replace), then rename it over the
    // target in one step.
    const std::string named = temp_name_beside(path_);
    if (::linkat(AT_FDCWD, fd_.path_here().c_str(), AT_FDCWD, named.c_str(), AT_SYMLINK_FOLLOW) !=
        0)
      throw_errno(ErrorCode::resource, target_, "cannot link the finished output", errno);
    temp_path_ = named;
  }
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0)
    throw_errno(ErrorCode::resource, target_, "cannot rename the finished output into place",
                errno);
  committed_ = true;
  if (durable) {
    // The rename itself reaches the disk with the folder.
    const fs::path dir =
        fs::path(path_).parent_path().empty() ? fs::path(".") : fs::path(path_).parent_path();
    const Fd folder(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!folder || ::fsync(folder.get()) != 0)
      throw_errno(ErrorCode::resource, target_, "cannot write the output's folder to disk", errno);
  }
}

}  // namespace shmgemm
