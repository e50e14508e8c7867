// Per-job sandbox uids (see sandbox_user.h).
#include "rl/rewards/sandbox_user.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace temper {
namespace {

// The lease folder: root-owned, mode 0700, not a symlink (a sandbox without a mount
// namespace could otherwise have planted one in /tmp).
std::string lease_dir() {
  static const std::string dir = [] {
    for (const char* d : {"/run/temper-sandbox-uids", "/tmp/.temper-sandbox-uids"}) {
      mkdir(d, 0700);
      struct stat st {};
      if (lstat(d, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == 0 && (st.st_mode & 077) == 0) return std::string(d);
    }
    return std::string();
  }();
  return dir;
}

// Child of kill_all(): shares our memory (CLONE_VM), takes the uid and signals everything
// that uid may signal: all its processes but itself. (kill(-1) reports success as long
// as any process exists, so the parent checks /proc for what is left.)
struct SweepPlan {
  uid_t uid;
  gid_t gid;
};

int sweep_main(void* arg) {
  const SweepPlan& p = *static_cast<const SweepPlan*>(arg);
  if (syscall(SYS_setgroups, 0, nullptr) != 0 || syscall(SYS_setresgid, p.gid, p.gid, p.gid) != 0 ||
      syscall(SYS_setresuid, p.uid, p.uid, p.uid) != 0)
    _exit(2);
  kill(-1, SIGKILL);
  _exit(0);
}

// True while a process (not a zombie) whose real, effective or saved uid is `uid` exists.
bool any_alive(uid_t uid) {
  DIR* d = opendir("/proc");
  if (!d) return false;
  bool found = false;
  char path[64], buf[4096];
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::snprintf(path, sizeof path, "/proc/%s/status", e->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    const ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) continue;
    buf[n] = '\0';
    const char* state = std::strstr(buf, "\nState:");
    const char* uids = std::strstr(buf, "\nUid:");
    if (!uids || (state && std::strchr("ZX", state[8] == '\t' ? state[9] : state[8]))) continue;
    unsigned long r = 0, eff = 0, saved = 0;
    if (std::sscanf(uids + 5, "%lu %lu %lu", &r, &eff, &saved) == 3 && (r == uid || eff == uid || saved == uid)) {
      found = true;
      break;
    }
  }
  closedir(d);
  return found;
}

}  // namespace

SandboxUser SandboxUser::acquire() {
  SandboxUser u;
  u.uid_ = getuid();
  u.gid_ = getgid();
  if (geteuid() != 0) return u;
  const std::string dir = lease_dir();
  TEMPER_CHECK(!dir.empty(), "code sandbox: no safe folder for uid leases (/run/temper-sandbox-uids and "
               "/tmp/.temper-sandbox-uids must be root-owned folders of mode 0700)");
  static std::atomic<unsigned> next{0};
  const unsigned start = (unsigned(getpid()) * 977u + next.fetch_add(1)) % kSandboxUidCount;
  for (unsigned i = 0; i < kSandboxUidCount; ++i) {
    const unsigned slot = (start + i) % kSandboxUidCount;
    const std::string path = dir + "/" + std::to_string(kSandboxUidBase + slot);
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) continue;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
      u.lock_fd_ = fd;
      u.uid_ = kSandboxUidBase + slot;
      u.gid_ = kSandboxUidBase + slot;
      // A process left by an earlier holder of this uid (a crashed trainer) must not meet the new job.
      u.kill_all();
      return u;
    }
    close(fd);
  }
  fail("code sandbox: all ", kSandboxUidCount, " sandbox uids are in use");
}

SandboxUser::~SandboxUser() {
  if (lock_fd_ >= 0) close(lock_fd_);
}

SandboxUser::SandboxUser(SandboxUser&& o) noexcept : uid_(o.uid_), gid_(o.gid_), lock_fd_(o.lock_fd_) { o.lock_fd_ = -1; }

SandboxUser& SandboxUser::operator=(SandboxUser&& o) noexcept {
  if (this != &o) {
    if (lock_fd_ >= 0) close(lock_fd_);
    uid_ = o.uid_;
    gid_ = o.gid_;
    lock_fd_ = o.lock_fd_;
    o.lock_fd_ = -1;
  }
  return *this;
}

bool SandboxUser::kill_all() const {
  if (lock_fd_ < 0) return true;
  for (int round = 0; round < 200; ++round) {
    if (!any_alive(uid_)) return true;
    sweep(uid_, gid_);
    if (round > 0) std::this_thread::sleep_for(std::chrono::milliseconds(std::min(round, 10)));
  }
  return !any_alive(uid_);
}

void SandboxUser::sweep(uid_t uid, gid_t gid) {
  SweepPlan plan{uid, gid};
  const size_t stack_size = 64 << 10;
  void* stack = mmap(nullptr, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return;
  // No signal handler may run in the child while it shares our memory.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t pid = clone(sweep_main, static_cast<char*>(stack) + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD, &plan);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid > 0)
    while (waitpid(pid, nullptr, __WALL) < 0 && errno == EINTR) {
    }
  munmap(stack, stack_size);
}

}  // namespace temper
