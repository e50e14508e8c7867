// The sandbox's file system view (see sandbox_view.h).
#include "rl/rewards/sandbox_view.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "core/error.h"

namespace temper {
namespace {

// The mount flags a read-only bind of `path` keeps from its source (a user namespace may
// not drop locked ones such as noexec or the atime mode).
unsigned long kept_flags(const std::string& path) {
  struct statvfs sv {};
  unsigned long f = 0;
  if (statvfs(path.c_str(), &sv) != 0) return f;
  if (sv.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  if (sv.f_flag & ST_NOATIME) f |= MS_NOATIME;
  if (sv.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (sv.f_flag & ST_RELATIME) f |= MS_RELATIME;
  return f;
}

bool under(const std::string& path, const std::string& dir) {
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/');
}

std::string tmpfs_options(long long bytes, long long inodes, const char* mode) {
  return "size=" + std::to_string(bytes) + ",nr_inodes=" + std::to_string(inodes) + ",mode=" + mode;
}

}  // namespace

SandboxView::SandboxView(const std::string& root_dir, const std::string& job_work, const SandboxViewOptions& opt,
                         uid_t uid, gid_t gid)
    : root_(root_dir), uid_(uid), gid_(gid) {
  // The system: /usr read-only; bin, sbin, lib* as on the host (links into /usr on a merged-/usr system).
  add_bind_ro("/usr");
  for (const char* top : {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}) {
    struct stat st {};
    if (lstat(top, &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      const ssize_t n = readlink(top, buf, sizeof buf - 1);
      if (n <= 0) continue;
      steps_.push_back({Kind::Symlink, root_ + top, std::string(buf, size_t(n))});
    } else if (S_ISDIR(st.st_mode)) {
      add_bind_ro(top);
    }
  }
  // /etc: the loader cache and the alternatives links; a passwd/group naming the program's ids.
  add_mkdirs("/etc");
  for (const char* f : {"/etc/ld.so.cache", "/etc/alternatives"}) {
    struct stat st {};
    if (stat(f, &st) == 0) add_bind_ro(f);
  }
  steps_.push_back({Kind::WriteFile, root_ + "/etc/passwd",
                    "sandbox:x:" + std::to_string(uid) + ":" + std::to_string(gid) + ":sandbox:/work:/bin/sh\n"});
  steps_.push_back({Kind::WriteFile, root_ + "/etc/group", "sandbox:x:" + std::to_string(gid) + ":\n"});
  steps_.push_back({Kind::WriteFile, root_ + "/etc/hosts", "127.0.0.1 localhost\n::1 localhost\n"});
  for (const auto& p : opt.ro_paths) {
    TEMPER_CHECK(!p.empty() && p[0] == '/', "code sandbox: read-only path '", p, "' must be absolute");
    struct stat st {};
    TEMPER_CHECK(stat(p.c_str(), &st) == 0, "code sandbox: read-only path '", p, "' does not exist");
    if (!shows(p)) add_bind_ro(p);
  }
  // /dev: the harmless character devices, /dev/fd links, a private /dev/shm.
  add_mkdirs("/dev");
  for (const char* dev : {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"}) {
    struct stat st {};
    if (stat(dev, &st) != 0 || !S_ISCHR(st.st_mode)) continue;
    Step s{Kind::BindRw, root_ + dev, dev};
    s.is_file = true;
    steps_.push_back(s);
  }
  steps_.push_back({Kind::Symlink, root_ + "/dev/fd", "/proc/self/fd"});
  steps_.push_back({Kind::Symlink, root_ + "/dev/stdin", "/proc/self/fd/0"});
  steps_.push_back({Kind::Symlink, root_ + "/dev/stdout", "/proc/self/fd/1"});
  steps_.push_back({Kind::Symlink, root_ + "/dev/stderr", "/proc/self/fd/2"});
  add_mkdirs("/dev/shm");
  steps_.push_back({Kind::Tmpfs, root_ + "/dev/shm", tmpfs_options(opt.tmp_bytes, opt.tmp_inodes, "1777"),
                    MS_NOSUID | MS_NODEV});
  add_mkdirs("/tmp");
  steps_.push_back({Kind::Tmpfs, root_ + "/tmp", tmpfs_options(opt.tmp_bytes, opt.tmp_inodes, "1777"),
                    MS_NOSUID | MS_NODEV});
  add_mkdirs("/proc");
  steps_.push_back({Kind::Proc, root_ + "/proc", "", MS_NOSUID | MS_NODEV | MS_NOEXEC});
  // /work: a private copy of the job's files, or (a compile step) the job's folder itself.
  add_mkdirs("/work");
  if (opt.keep_work) {
    steps_.push_back({Kind::BindRw, root_ + "/work", job_work, MS_NOSUID | MS_NODEV | kept_flags(job_work)});
  } else {
    steps_.push_back({Kind::Tmpfs, root_ + "/work", tmpfs_options(opt.tmp_bytes, opt.tmp_inodes, "0700"),
                      MS_NOSUID | MS_NODEV});
    work_fd_ = open(job_work.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    TEMPER_CHECK(work_fd_ >= 0, "code sandbox: cannot open the job folder '", job_work, "'");
    if (DIR* d = opendir(job_work.c_str())) {
      while (dirent* e = readdir(d)) {
        struct stat st {};
        if (fstatat(work_fd_, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
        Step s{Kind::CopyIn, root_ + "/work/" + e->d_name, e->d_name};
        s.mode = st.st_mode & 0755;
        steps_.push_back(s);
      }
      closedir(d);
    }
    steps_.push_back({Kind::Chown, root_ + "/work"});
  }
}

SandboxView::~SandboxView() {
  if (work_fd_ >= 0) close(work_fd_);
}

void SandboxView::add_mkdirs(const std::string& path) {
  for (size_t pos = 1; pos != std::string::npos;) {
    pos = path.find('/', pos + 1);
    const std::string dir = path.substr(0, pos);
    if (std::find(made_.begin(), made_.end(), dir) != made_.end()) continue;
    made_.push_back(dir);
    Step s{Kind::Mkdir, root_ + dir};
    s.mode = 0755;
    steps_.push_back(s);
  }
}

void SandboxView::add_bind_ro(const std::string& host_path) {
  struct stat st {};
  const bool dir = stat(host_path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  const size_t slash = host_path.find_last_of('/');
  if (slash > 0) add_mkdirs(host_path.substr(0, slash));
  if (dir) add_mkdirs(host_path);
  Step s{Kind::Bind, root_ + host_path, host_path, kept_flags(host_path)};
  s.is_file = !dir;
  steps_.push_back(s);
  shown_.push_back(host_path);
}

bool SandboxView::shows(const std::string& path) const {
  for (const auto& p : shown_)
    if (under(path, p)) return true;
  return false;
}

std::string SandboxView::describe(int index) const {
  if (index == int(steps_.size())) return "entering the new root (pivot_root into " + root_ + ")";
  if (index < 0 || index > int(steps_.size())) return "setting up the private root on " + root_;
  const Step& s = steps_[size_t(index)];
  const std::string in = s.target.substr(std::min(root_.size(), s.target.size()));
  switch (s.kind) {
    case Kind::Mkdir: return "creating " + in;
    case Kind::Symlink: return "linking " + in + " -> " + s.source;
    case Kind::Bind: return "showing " + s.source + " read-only";
    case Kind::BindRw: return "showing " + s.source + " at " + in;
    case Kind::Tmpfs: return "mounting a tmpfs on " + in + " (" + s.source + ")";
    case Kind::Proc: return "mounting /proc";
    case Kind::WriteFile: return "writing " + in;
    case Kind::CopyIn: return "copying the job's " + s.source + " into /work";
    case Kind::Chown: return "handing " + in + " to the sandbox user";
  }
  return "?";
}

int SandboxView::enter() const noexcept {
  // Nothing done here may reach the parent's mounts.
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return int(steps_.size()) + 1;
  if (mount("tmpfs", root_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=1048576,nr_inodes=4096,mode=0755") != 0)
    return int(steps_.size()) + 1;
  for (size_t i = 0; i < steps_.size(); ++i) {
    const Step& s = steps_[i];
    const char* t = s.target.c_str();
    bool ok = true;
    switch (s.kind) {
      case Kind::Mkdir:
        ok = mkdir(t, mode_t(s.mode)) == 0 || errno == EEXIST;
        break;
      case Kind::Symlink:
        ok = symlink(s.source.c_str(), t) == 0;
        break;
      case Kind::Bind:
      case Kind::BindRw: {
        if (s.is_file) {
          int fd = open(t, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
          ok = fd >= 0;
          if (fd >= 0) close(fd);
        }
        ok = ok && mount(s.source.c_str(), t, nullptr, MS_BIND, nullptr) == 0;
        if (ok && s.kind == Kind::Bind)
          ok = mount(nullptr, t, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | s.flags, nullptr) == 0;
        else if (ok && s.flags)
          ok = mount(nullptr, t, nullptr, MS_BIND | MS_REMOUNT | s.flags, nullptr) == 0;
        break;
      }
      case Kind::Tmpfs:
        ok = mount("tmpfs", t, "tmpfs", s.flags, s.source.c_str()) == 0;
        break;
      case Kind::Proc:
        ok = mount("proc", t, "proc", s.flags, nullptr) == 0;
        break;
      case Kind::WriteFile: {
        int fd = open(t, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ok = fd >= 0 && write(fd, s.source.data(), s.source.size()) == ssize_t(s.source.size());
        if (fd >= 0) close(fd);
        break;
      }
      case Kind::CopyIn: {
        int in = openat(work_fd_, s.source.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        int out = in >= 0 ? open(t, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode_t(s.mode)) : -1;
        ok = out >= 0;
        while (ok) {
          const ssize_t n = sendfile(out, in, nullptr, 1 << 20);
          if (n == 0) break;
          ok = n > 0 || errno == EINTR;
        }
        ok = ok && fchown(out, uid_, gid_) == 0 && fchmod(out, mode_t(s.mode)) == 0;
        if (out >= 0) close(out);
        if (in >= 0) close(in);
        break;
      }
      case Kind::Chown:
        ok = chown(t, uid_, gid_) == 0;
        break;
    }
    if (!ok) return int(i);
  }
  // Into the new root; the old one is detached, then the root itself made read-only.
  const int last = int(steps_.size());
  if (chdir(root_.c_str()) != 0 || syscall(SYS_pivot_root, ".", ".") != 0 || umount2(".", MNT_DETACH) != 0 ||
      chdir("/") != 0)
    return last;
  if (mount(nullptr, "/", nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) != 0) return last;
  if (chdir("/work") != 0) return last;
  return -1;
}

}  // namespace temper
