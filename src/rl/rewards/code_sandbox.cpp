// Process sandbox for the code reward (see code_sandbox.h, docs/rewards.md).
// The child between fork and exec only makes async-signal-safe system calls on
// data prepared before the fork, since the trainer is multi-threaded.
#include "rl/rewards/code_sandbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

#include "core/error.h"

namespace temper {
namespace {

constexpr const char* kSandboxPath = "/usr/local/bin:/usr/bin:/bin";

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// ---- records the child sends back on the report pipe ------------------------
enum : int { kRecIsolation = 1, kRecFailure = 2, kRecStatus = 3 };
enum : int { kIsoNet = 1, kIsoPid = 2, kIsoUser = 4, kIsoDropped = 8 };
struct Record {
  int kind;
  int a;  // isolation flags | failure stage | wait status
  int b;  // errno of the first failed unshare | errno | unused
};
const char* const kStages[] = {"?", "dup2", "chdir", "setrlimit", "drop privileges", "fork", "exec"};

struct ChildPlan {
  const char* path;
  char* const* argv;
  char* const* envp;
  const char* workdir;
  int in_fd, out_fd, err_fd, report_fd;
  rlimit lim_cpu, lim_as, lim_fsize, lim_nproc, lim_nofile, lim_core;
  bool want_net, want_pid, drop;
  uid_t uid;
  gid_t gid;
  const char* uid_map;  // "<uid> <uid> 1\n" for a user namespace
  const char* gid_map;
};

// fork(2) without glibc's atfork handlers (MPI and OpenMP register some): the
// child only makes system calls before exec, so none are needed.
pid_t raw_fork() { return static_cast<pid_t>(syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0)); }

void put(int fd, int kind, int a, int b) {
  Record r{kind, a, b};
  ssize_t n;
  do n = write(fd, &r, sizeof r); while (n < 0 && errno == EINTR);
}

[[noreturn]] void child_fail(const ChildPlan& p, int stage) {
  put(p.report_fd, kRecFailure, stage, errno);
  _exit(127);
}

bool write_proc(const char* file, const char* text) {
  int fd = open(file, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  size_t len = strlen(text);
  bool ok = write(fd, text, len) == static_cast<ssize_t>(len);
  close(fd);
  return ok;
}

// Tries a new user namespace (mapping our own ids) plus the given namespaces.
bool enter_user_ns(const ChildPlan& p, int extra) {
  if (unshare(CLONE_NEWUSER | extra) != 0) return false;
  write_proc("/proc/self/setgroups", "deny");
  write_proc("/proc/self/uid_map", p.uid_map);
  write_proc("/proc/self/gid_map", p.gid_map);
  return true;
}

[[noreturn]] void child_main(const ChildPlan& p) {
  setpgid(0, 0);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; ++s) sigaction(s, &dfl, nullptr);

  // stdio: 0/1/2 from the pipes, the report pipe at 3 (close-on-exec), nothing else.
  if (dup2(p.in_fd, 0) < 0 || dup2(p.out_fd, 1) < 0 || dup2(p.err_fd, 2) < 0) child_fail(p, 1);
  int rep = p.report_fd == 3 ? 3 : dup2(p.report_fd, 3);
  if (rep < 0) child_fail(p, 1);
  fcntl(3, F_SETFD, FD_CLOEXEC);
  ChildPlan q = p;
  q.report_fd = 3;
#ifdef SYS_close_range
  if (syscall(SYS_close_range, 4u, ~0u, 0u) != 0)
#endif
    for (int fd = 4; fd < 65536; ++fd) close(fd);

  // Namespaces. As root: net/pid directly, then drop to nobody; otherwise (or if
  // that is refused) inside a new user namespace that maps only our own ids.
  int iso = 0, first_errno = 0;
  int want = (p.want_net ? CLONE_NEWNET : 0) | (p.want_pid ? CLONE_NEWPID : 0);
  bool is_root = geteuid() == 0;
  if (want && is_root) {
    if (unshare(want) == 0) iso |= (p.want_net ? kIsoNet : 0) | (p.want_pid ? kIsoPid : 0);
    else if (first_errno = errno, p.want_net && unshare(CLONE_NEWNET) == 0) iso |= kIsoNet;
  }
  if (p.drop) {
    if (syscall(SYS_setgroups, 0, nullptr) != 0 || syscall(SYS_setresgid, p.gid, p.gid, p.gid) != 0 ||
        syscall(SYS_setresuid, p.uid, p.uid, p.uid) != 0)
      child_fail(q, 4);
    iso |= kIsoDropped;
  }
  if (want && iso == (iso & kIsoDropped)) {  // nothing isolated yet
    if (enter_user_ns(p, want)) iso |= kIsoUser | (p.want_net ? kIsoNet : 0) | (p.want_pid ? kIsoPid : 0);
    else if (first_errno == 0 && (first_errno = errno), p.want_net && enter_user_ns(p, CLONE_NEWNET))
      iso |= kIsoUser | kIsoNet;
  }
  put(3, kRecIsolation, iso, first_errno);

  if (setrlimit(RLIMIT_CPU, &p.lim_cpu) != 0 || setrlimit(RLIMIT_AS, &p.lim_as) != 0 ||
      setrlimit(RLIMIT_FSIZE, &p.lim_fsize) != 0 || setrlimit(RLIMIT_NOFILE, &p.lim_nofile) != 0 ||
      setrlimit(RLIMIT_CORE, &p.lim_core) != 0)
    child_fail(q, 3);
  setrlimit(RLIMIT_NPROC, &p.lim_nproc);  // may be lower than current usage as root: best effort
  if (chdir(p.workdir) != 0) child_fail(q, 2);
  umask(077);

  if (iso & kIsoPid) {
    // The next child is PID 1 of the new namespace: when it exits, the kernel kills
    // everything left in the namespace, daemons included. We relay its status.
    pid_t init = raw_fork();
    if (init < 0) child_fail(q, 5);
    if (init == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      execve(p.path, p.argv, p.envp);
      child_fail(q, 6);
    }
    int st = 0;
    while (waitpid(init, &st, 0) < 0 && errno == EINTR) {
    }
    put(3, kRecStatus, st, 0);
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
  }
  execve(p.path, p.argv, p.envp);
  child_fail(q, 6);
}

// Number of tasks (threads count) whose real uid is `uid`: RLIMIT_NPROC counts them all.
long count_user_tasks(uid_t uid) {
  long total = 0;
  DIR* d = opendir("/proc");
  if (!d) return 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/status");
    std::string key;
    long real_uid = -1, threads = 0;
    while (f >> key) {
      if (key == "Uid:") f >> real_uid;
      else if (key == "Threads:") { f >> threads; break; }
      f.ignore(1 << 16, '\n');
    }
    if (real_uid == static_cast<long>(uid)) total += threads;
  }
  closedir(d);
  return total;
}

// Without a PID namespace, kill processes that escaped the group (setsid) but still
// carry our marker in their environment or sit in the work dir.
void kill_escapees(const std::string& marker, const std::string& workdir) {
  DIR* d = opendir("/proc");
  if (!d) return;
  pid_t self = getpid();
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    pid_t pid = static_cast<pid_t>(atol(e->d_name));
    if (pid == self) continue;
    std::string dir = std::string("/proc/") + e->d_name;
    char cwd[4096];
    ssize_t n = readlink((dir + "/cwd").c_str(), cwd, sizeof cwd - 1);
    bool hit = n > 0 && std::string(cwd, n).rfind(workdir, 0) == 0;
    if (!hit) {
      std::ifstream f(dir + "/environ", std::ios::binary);
      std::string env((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      hit = env.find(marker) != std::string::npos;
    }
    if (hit) kill(pid, SIGKILL);
  }
  closedir(d);
}

std::vector<char*> c_strings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Removes a directory tree without following symlinks; makes directories writable first.
void remove_tree_at(int parent, const char* name) {
  int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    unlinkat(parent, name, 0);
    return;
  }
  fchmod(fd, 0700);
  if (DIR* d = fdopendir(fd)) {
    std::vector<std::string> names;
    while (dirent* e = readdir(d))
      if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) names.push_back(e->d_name);
    for (auto& n : names) remove_tree_at(dirfd(d), n.c_str());
    closedir(d);
  } else {
    close(fd);
  }
  unlinkat(parent, name, AT_REMOVEDIR);
}

}  // namespace

std::string ExecResult::describe() const {
  if (exec_failed) return "could not start: " + error;
  if (timed_out) return cat("timeout after ", wall_s, " s");
  if (output_truncated) return "output over the size cap";
  if (term_signal) return cat("killed by signal ", term_signal, " (", strsignal(term_signal), ")");
  return cat("exit ", exit_code);
}

void sandbox_identity(bool drop_root, int* uid, int* gid) {
  *uid = static_cast<int>(getuid());
  *gid = static_cast<int>(getgid());
  if (drop_root && geteuid() == 0) {
    passwd pw{}, *res = nullptr;
    char buf[1024];
    bool found = getpwnam_r("nobody", &pw, buf, sizeof buf, &res) == 0 && res;
    *uid = found ? static_cast<int>(pw.pw_uid) : 65534;
    *gid = found ? static_cast<int>(pw.pw_gid) : 65534;
  }
}

std::string sandbox_which(const std::string& name) {
  if (name.find('/') != std::string::npos) return access(name.c_str(), X_OK) == 0 ? name : "";
  std::string dirs = kSandboxPath;
  if (const char* p = getenv("PATH")) dirs += std::string(":") + p;
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(start, end - start);
    if (!dir.empty()) {
      std::string full = dir + "/" + name;
      struct stat st {};
      if (stat(full.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(full.c_str(), X_OK) == 0) return full;
    }
    start = end + 1;
  }
  return "";
}

SandboxDir::SandboxDir(const std::string& tmp_root, int owner_uid, int owner_gid) {
  std::string root = tmp_root;
  if (root.empty()) root = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  std::string tmpl = root + "/temper-sbx-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data()))
    fail("code sandbox: cannot create a temporary directory under '", root, "': ", strerror(errno),
         " (set the sandbox tmp_root to a writable directory)");
  base_ = buf.data();
  work_ = base_ + "/w";
  if (mkdir(work_.c_str(), 0700) != 0) fail("code sandbox: cannot create '", work_, "': ", strerror(errno));
  bool other = owner_uid >= 0 && owner_uid != static_cast<int>(getuid());
  if (other && chown(work_.c_str(), owner_uid, owner_gid) != 0)
    fail("code sandbox: cannot hand '", work_, "' to uid ", owner_uid, ": ", strerror(errno));
  // The program may enter base_ but not write to it (as its owner, it could chmod it back).
  chmod(base_.c_str(), other ? 0711 : 0500);
}

SandboxDir::~SandboxDir() {
  if (base_.empty()) return;
  chmod(base_.c_str(), 0700);
  remove_tree_at(AT_FDCWD, base_.c_str());
}

ExecResult sandbox_exec(const std::vector<std::string>& argv_in, const std::string& input,
                        const std::string& workdir, const SandboxLimits& lim) {
  ExecResult res;
  TEMPER_CHECK(!argv_in.empty(), "code sandbox: empty command");
  std::string path = sandbox_which(argv_in[0]);
  if (path.empty()) {
    res.exec_failed = true;
    res.error = cat("'", argv_in[0], "' not found on PATH (", kSandboxPath, ":$PATH)");
    return res;
  }
  int uid = 0, gid = 0;
  sandbox_identity(lim.drop_root, &uid, &gid);

  std::vector<std::string> argv_s = argv_in;
  std::vector<std::string> env_s = {std::string("PATH=") + kSandboxPath, "HOME=" + workdir,
                                    "TMPDIR=" + workdir, "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1",
                                    "PYTHONIOENCODING=utf-8", "TEMPER_SANDBOX=" + workdir};
  std::vector<char*> argv = c_strings(argv_s), envp = c_strings(env_s);
  std::string uid_map = cat(uid, " ", uid, " 1\n"), gid_map = cat(gid, " ", gid, " 1\n");

  auto lim_of = [](long long soft, long long hard) {
    rlimit r{};
    r.rlim_cur = static_cast<rlim_t>(soft);
    r.rlim_max = static_cast<rlim_t>(hard);
    return r;
  };
  ChildPlan plan{};
  plan.path = path.c_str();
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.workdir = workdir.c_str();
  plan.lim_cpu = lim_of(lim.cpu_seconds, lim.cpu_seconds + 1);
  plan.lim_as = lim_of(lim.memory_bytes, lim.memory_bytes);
  plan.lim_fsize = lim_of(lim.file_size_bytes, lim.file_size_bytes);
  long nproc = count_user_tasks(static_cast<uid_t>(uid)) + lim.max_processes;
  plan.lim_nproc = lim_of(nproc, nproc);
  plan.lim_nofile = lim_of(lim.max_open_files, lim.max_open_files);
  plan.lim_core = lim_of(0, 0);
  plan.want_net = lim.isolate_network;
  plan.want_pid = lim.isolate_pids;
  plan.drop = lim.drop_root && geteuid() == 0 && uid != 0;
  plan.uid = static_cast<uid_t>(uid);
  plan.gid = static_cast<gid_t>(gid);
  plan.uid_map = uid_map.c_str();
  plan.gid_map = gid_map.c_str();

  int in_p[2], out_p[2], err_p[2], rep_p[2];
  if (pipe2(in_p, O_CLOEXEC) != 0) fail("code sandbox: pipe: ", strerror(errno));
  if (pipe2(out_p, O_CLOEXEC) != 0 || pipe2(err_p, O_CLOEXEC) != 0 || pipe2(rep_p, O_CLOEXEC) != 0)
    fail("code sandbox: pipe: ", strerror(errno));
  plan.in_fd = in_p[0];
  plan.out_fd = out_p[1];
  plan.err_fd = err_p[1];
  plan.report_fd = rep_p[1];

  // Writing stdin to a program that exited raises SIGPIPE: keep it off this thread.
  sigset_t pipe_set, old_mask;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);

  auto start = Clock::now();
  pid_t pid = raw_fork();
  if (pid == 0) child_main(plan);
  for (int fd : {in_p[0], out_p[1], err_p[1], rep_p[1]}) close(fd);
  if (pid < 0) {
    for (int fd : {in_p[1], out_p[0], err_p[0], rep_p[0]}) close(fd);
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    res.exec_failed = true;
    res.error = cat("fork: ", strerror(errno));
    return res;
  }
  setpgid(pid, pid);  // also done by the child; whichever runs first wins
  int pidfd = -1;
#ifdef SYS_pidfd_open
  pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#endif

  int fds[4] = {in_p[1], out_p[0], err_p[0], rep_p[0]};
  for (int fd : fds) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  if (input.empty()) {
    close(fds[0]);
    fds[0] = -1;
  }
  std::string report;
  size_t written = 0;
  bool exited = false, killed = false;
  double exit_at = 0, kill_at = 0;
  auto kill_group = [&] {
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
  };
  const double grace = 0.2;
  while (true) {
    double now = seconds_since(start);
    if (!killed && now >= lim.wall_timeout_s) {
      res.timed_out = true;
      kill_group();
      killed = true;
      kill_at = now;
    }
    if (!exited) {
      siginfo_t si{};
      if (waitid(P_PID, pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid) {
        exited = true;
        exit_at = now;
        kill_group();  // leftovers in the group (background jobs); leader not reaped yet
      }
    }
    bool pipes_open = fds[1] >= 0 || fds[2] >= 0 || fds[3] >= 0;
    if (exited && (!pipes_open || now - exit_at > grace)) break;
    if (killed && !exited && now - kill_at > 5.0) {  // unkillable (D state): give up on it
      res.error = "program did not die after SIGKILL";
      break;
    }
    pollfd pf[5];
    int nf = 0;
    if (fds[0] >= 0) pf[nf++] = {fds[0], POLLOUT, 0};
    for (int i = 1; i < 4; ++i)
      if (fds[i] >= 0) pf[nf++] = {fds[i], POLLIN, 0};
    if (pidfd >= 0 && !exited) pf[nf++] = {pidfd, POLLIN, 0};
    double remaining = killed || exited ? 0.02 : lim.wall_timeout_s - now;
    int wait_ms = static_cast<int>(std::max(1.0, std::min(remaining * 1000, pidfd >= 0 ? 100.0 : 5.0)));
    if (nf == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
      continue;
    }
    if (poll(pf, nf, wait_ms) < 0 && errno != EINTR) break;
    if (fds[0] >= 0) {
      ssize_t n = write(fds[0], input.data() + written, std::min<size_t>(input.size() - written, 1 << 16));
      if (n > 0) written += static_cast<size_t>(n);
      if ((n < 0 && errno != EAGAIN && errno != EINTR) || written == input.size()) {
        close(fds[0]);
        fds[0] = -1;
      }
    }
    for (int i = 1; i < 4; ++i) {
      if (fds[i] < 0) continue;
      char buf[65536];
      while (true) {
        ssize_t n = read(fds[i], buf, sizeof buf);
        if (n > 0) {
          std::string& dst = i == 1 ? res.out : i == 2 ? res.err : report;
          size_t room = i == 3 ? static_cast<size_t>(n) : lim.output_cap_bytes - std::min(dst.size(), lim.output_cap_bytes);
          dst.append(buf, std::min(room, static_cast<size_t>(n)));
          if (room < static_cast<size_t>(n) && !res.output_truncated) {
            res.output_truncated = true;
            if (!killed) {
              kill_group();
              killed = true;
              kill_at = seconds_since(start);
            }
          }
          continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
          close(fds[i]);
          fds[i] = -1;
        }
        break;
      }
    }
  }
  for (int fd : fds)
    if (fd >= 0) close(fd);
  if (pidfd >= 0) close(pidfd);
  // Consume a SIGPIPE our stdin writes may have raised, then restore the mask.
  timespec zero{0, 0};
  while (sigtimedwait(&pipe_set, nullptr, &zero) > 0) {
  }
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);

  int status = 0;
  if (exited) {
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  res.wall_s = seconds_since(start);

  // Decode the child's report: isolation, failures, relayed status of PID 1.
  int iso = 0, iso_errno = 0;
  bool relayed = false;
  for (size_t off = 0; off + sizeof(Record) <= report.size(); off += sizeof(Record)) {
    Record r;
    memcpy(&r, report.data() + off, sizeof r);
    if (r.kind == kRecIsolation) {
      iso = r.a;
      iso_errno = r.b;
    } else if (r.kind == kRecFailure) {
      res.exec_failed = true;
      int stage = r.a >= 0 && r.a < 7 ? r.a : 0;
      res.error = cat(kStages[stage], " of '", path, "' failed: ", strerror(r.b));
    } else if (r.kind == kRecStatus) {
      status = r.a;
      relayed = true;
    }
  }
  if (!(iso & kIsoPid) && !res.exec_failed) kill_escapees("TEMPER_SANDBOX=" + workdir, workdir);
  if (exited || relayed) {
    if (WIFEXITED(status)) res.exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status)) res.term_signal = WTERMSIG(status);
  }
  if (res.timed_out || res.output_truncated) res.term_signal = 0;
  std::string parts;
  if (iso & kIsoNet) parts += "net+";
  if (iso & kIsoPid) parts += "pid+";
  if (iso & kIsoUser) parts += "userns+";
  if (iso & kIsoDropped) parts += cat("uid:", uid, "+");
  if (parts.empty()) parts = "none+";
  parts.pop_back();
  if ((lim.isolate_network && !(iso & kIsoNet)) || (lim.isolate_pids && !(iso & kIsoPid)))
    parts += cat(" (unshare refused: ", strerror(iso_errno), ")");
  res.isolation = parts;
  return res;
}

}  // namespace temper
