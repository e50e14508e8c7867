// Checked file writes (see file_write.h): POSIX calls, every return value checked.
#include "core/file_write.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/error.h"

namespace temper {
namespace {

// Writes all of [data, data + n) to fd; false with errno set on failure.
bool write_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (w == 0) errno = ENOSPC;
      return false;
    }
    data += w;
    n -= size_t(w);
  }
  return true;
}

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string reason(int err) {
  std::string s = std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) s += " (disk full or quota exceeded)";
  return s;
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& text) {
  const size_t slash = path.find_last_of('/');
  const std::string tmp = (slash == std::string::npos ? std::string() : path.substr(0, slash + 1)) + "." +
                          path.substr(slash == std::string::npos ? 0 : slash + 1) + ".tmp" +
                          std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot write '", path, "': cannot create '", tmp, "': ", reason(errno));
  const bool wrote = write_all(fd, text.data(), text.size()) && ::fsync(fd) == 0;
  int err = errno;
  if (::close(fd) != 0 && wrote) {
    err = errno;
    ::unlink(tmp.c_str());
    fail("writing '", path, "' failed: ", reason(err));
  }
  if (!wrote) {
    ::unlink(tmp.c_str());
    fail("writing '", path, "' failed: ", reason(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    ::unlink(tmp.c_str());
    fail("cannot write '", path, "': renaming '", tmp, "' over it failed: ", reason(err));
  }
  // The rename itself is durable once the folder is synced (best effort: not every file system allows it).
  int dfd = ::open(parent_dir(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  if (fd < 0) fail("cannot open ", path, " to fsync it: ", reason(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) fail("fsync of ", path, " failed: ", reason(err));
}

void rename_durably(const std::string& partial, const std::string& final_path) {
  if (std::rename(partial.c_str(), final_path.c_str()) != 0) {
    int err = errno;
    ::unlink(partial.c_str());
    fail("cannot rename ", partial, " to ", final_path, ": ", reason(err));
  }
  fsync_path(parent_dir(final_path), true);
}

LineFile::LineFile(const std::string& path, Mode mode) : path_(path) {
  const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (mode == Mode::Append ? O_APPEND : O_TRUNC);
  fd_ = ::open(path.c_str(), flags, 0644);
  if (fd_ < 0) fail("cannot open '", path, "' for writing: ", reason(errno));
}

LineFile::~LineFile() {
  if (fd_ >= 0) ::close(fd_);
}

LineFile::LineFile(LineFile&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }

LineFile& LineFile::operator=(LineFile&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    path_ = std::move(o.path_);
    o.fd_ = -1;
  }
  return *this;
}

void LineFile::write(const std::string& text) {
  TEMPER_CHECK(fd_ >= 0, "writing '", path_, "': the file is not open");
  const off_t before = ::lseek(fd_, 0, SEEK_END);
  if (!write_all(fd_, text.data(), text.size())) {
    const int err = errno;
    if (before >= 0) (void)::ftruncate(fd_, before);  // no half line left behind
    ::close(fd_);
    fd_ = -1;
    fail("writing '", path_, "' failed: ", reason(err));
  }
}

void LineFile::close() {
  if (fd_ < 0) return;
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("closing '", path_, "' failed: ", reason(errno));
}

}  // namespace temper
