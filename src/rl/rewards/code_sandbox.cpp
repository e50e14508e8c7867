// Process sandbox for the code reward (see code_sandbox.h, docs/rewards.md).
// The child is started like posix_spawn (clone with CLONE_VM|CLONE_VFORK), with the
// namespaces requested as clone flags, and only makes system calls on data prepared
// before the clone until it execs.
#include "rl/rewards/code_sandbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "core/log.h"
#include "rl/rewards/sandbox_cgroup.h"
#include "rl/rewards/sandbox_view.h"

namespace temper {
namespace {

constexpr const char* kSandboxPath = "/usr/local/bin:/usr/bin:/bin";
constexpr int kNamespaces = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// ---- the child, between clone and exec ----------------------------------------
// It shares the parent's memory (CLONE_VM|CLONE_VFORK, like posix_spawn: no page
// table copy of a large trainer, no atfork handlers), so it only makes system
// calls, writes nothing but its own stack, and reports failures on a pipe.
enum : int {
  kStageUserMap = 1, kStageCgroup, kStageView, kStageDup, kStageDrop, kStageRlimit, kStageChdir, kStageExec
};
const char* const kStages[] = {"?", "user namespace map", "joining the cgroup", "file system view", "dup2",
                               "dropping privileges", "setrlimit", "chdir", "exec"};
struct Failure {
  int stage;
  int err;
  int step;  // the view's failed step
};

struct ChildPlan {
  const char* path;
  char* const* argv;
  char* const* envp;
  const char* workdir;
  int in_fd, out_fd, err_fd, report_fd;
  rlimit lim_cpu, lim_as, lim_fsize, lim_nproc, lim_nofile, lim_core;
  bool drop, user_ns;
  uid_t uid;
  gid_t gid;
  const char* uid_map;  // "<uid> <uid> 1\n" for a user namespace
  const char* gid_map;
  const SandboxView* view;            // null when unisolated
  std::vector<const char*> cgroups;   // cgroup.procs files to join
};

[[noreturn]] void child_fail(int fd, int stage, int step = -1) {
  Failure f{stage, errno, step};
  ssize_t n;
  do n = write(fd, &f, sizeof f); while (n < 0 && errno == EINTR);
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

int child_main(void* arg) {
  const ChildPlan& p = *static_cast<const ChildPlan*>(arg);
  // The parent's handlers must never run here: defaults first, then unblock.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; ++s) sigaction(s, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  setsid();  // its own session: no controlling terminal to inject input into; group = session
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (p.user_ns) {  // map only our own ids into the new user namespace
    write_proc("/proc/self/setgroups", "deny");
    if (!write_proc("/proc/self/uid_map", p.uid_map) || !write_proc("/proc/self/gid_map", p.gid_map))
      child_fail(p.report_fd, kStageUserMap);
  }
  for (const char* procs : p.cgroups)
    if (!write_proc(procs, "0")) child_fail(p.report_fd, kStageCgroup);
  if (p.view) {
    const int step = p.view->enter();
    if (step >= 0) child_fail(p.report_fd, kStageView, step);
    sethostname("sandbox", 7);
  }
  // stdio: 0/1/2 from the pipes, the report pipe at 3 (close-on-exec), nothing else.
  if (dup2(p.in_fd, 0) < 0 || dup2(p.out_fd, 1) < 0 || dup2(p.err_fd, 2) < 0) child_fail(p.report_fd, kStageDup);
  if (p.report_fd != 3 && dup2(p.report_fd, 3) < 0) child_fail(p.report_fd, kStageDup);
  fcntl(3, F_SETFD, FD_CLOEXEC);
#ifdef SYS_close_range
  if (syscall(SYS_close_range, 4u, ~0u, 0u) != 0)
#endif
    for (int fd = 4; fd < 65536; ++fd) close(fd);
  if (p.drop) {  // raw system calls: glibc's setuid() would signal the parent's other threads
    if (syscall(SYS_setgroups, 0, nullptr) != 0 || syscall(SYS_setresgid, p.gid, p.gid, p.gid) != 0 ||
        syscall(SYS_setresuid, p.uid, p.uid, p.uid) != 0)
      child_fail(3, kStageDrop);
  }
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);  // no setuid binary gives anything back
  if (setrlimit(RLIMIT_CPU, &p.lim_cpu) != 0 || setrlimit(RLIMIT_AS, &p.lim_as) != 0 ||
      setrlimit(RLIMIT_FSIZE, &p.lim_fsize) != 0 || setrlimit(RLIMIT_NOFILE, &p.lim_nofile) != 0 ||
      setrlimit(RLIMIT_CORE, &p.lim_core) != 0 || setrlimit(RLIMIT_NPROC, &p.lim_nproc) != 0)
    child_fail(3, kStageRlimit);
  if (chdir(p.workdir) != 0) child_fail(3, kStageChdir);
  umask(077);
  execve(p.path, p.argv, p.envp);
  child_fail(3, kStageExec);
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

// Unisolated and without a uid of its own (a non-root trainer): kill processes that
// escaped the group but still carry the run's marker in their environment or sit in
// the work dir. A process that clears both is not found: docs/rewards.md says so.
void kill_marked(const std::string& marker, const std::string& workdir) {
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

rlimit lim_of(long long soft, long long hard) {
  rlimit r{};
  r.rlim_cur = static_cast<rlim_t>(soft);
  r.rlim_max = static_cast<rlim_t>(hard);
  return r;
}

// Errors of a clone or set-up step that mean "namespaces are not available here".
bool namespace_refusal(int stage, int err) {
  if (stage == kStageUserMap) return true;
  if (stage == kStageView) return err == EPERM || err == EACCES || err == EINVAL || err == ENOSYS;
  return false;
}

// One run. `isolated`: in namespaces with the private view; otherwise in the job's host folder.
// *refused is set when namespaces were refused (the caller may fall back).
ExecResult run_once(const std::vector<std::string>& argv_in, const std::string& input, const SandboxDir& job,
                    const SandboxLimits& lim, bool isolated, std::string* refused) {
  ExecResult res;
  TEMPER_CHECK(!argv_in.empty(), "code sandbox: empty command");
  std::string path = sandbox_which(argv_in[0]);
  if (path.empty()) {
    res.exec_failed = true;
    res.error = cat("'", argv_in[0], "' not found on PATH (", kSandboxPath, ":$PATH)");
    return res;
  }
  const bool root = geteuid() == 0;
  const SandboxUser& user = job.user();
  const std::string workdir = isolated ? "/work" : job.work();

  std::unique_ptr<SandboxView> view;
  std::string root_dir;
  if (isolated) {
    root_dir = job.base() + "/root";
    SandboxViewOptions vo;
    vo.tmp_bytes = lim.tmp_bytes;
    vo.keep_work = lim.keep_work;
    vo.ro_paths = lim.ro_paths;
    view = std::make_unique<SandboxView>(root_dir, job.work(), vo, user.uid(), user.gid());
    char real[PATH_MAX];
    if (!realpath(path.c_str(), real) || !view->shows(real)) {
      res.exec_failed = true;
      res.error = cat("'", path, "' (", realpath(path.c_str(), real) ? real : "unresolvable",
                      ") is not visible inside the sandbox (it shows /usr and the system's bin/lib folders; "
                      "add the interpreter's folder to rl.code_ro_paths)");
      return res;
    }
  }
  SandboxCgroup cgroup(lim.memory_bytes, lim.max_processes);

  // Command-line words naming files of the job's folder (anywhere in the word, as in
  // "sh -c 'cc {src}'") name them where the program sees them.
  std::vector<std::string> argv_s = argv_in;
  if (isolated)
    for (auto& w : argv_s)
      for (size_t p = w.find(job.work()); p != std::string::npos; p = w.find(job.work(), p + 5))
        w.replace(p, job.work().size(), "/work");
  const std::string marker = "TEMPER_SANDBOX=" + job.work();
  std::vector<std::string> env_s = {std::string("PATH=") + kSandboxPath, "HOME=" + workdir,
                                    "TMPDIR=" + std::string(isolated ? "/tmp" : workdir), "LANG=C.UTF-8",
                                    "PYTHONDONTWRITEBYTECODE=1", "PYTHONIOENCODING=utf-8"};
  if (!isolated) env_s.push_back(marker);
  std::vector<char*> argv = c_strings(argv_s), envp = c_strings(env_s);
  std::string uid_map = cat(user.uid(), " ", user.uid(), " 1\n"), gid_map = cat(user.gid(), " ", user.gid(), " 1\n");

  ChildPlan plan{};
  plan.path = path.c_str();
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.workdir = workdir.c_str();
  plan.lim_cpu = lim_of(lim.cpu_seconds, lim.cpu_seconds + 1);
  plan.lim_fsize = lim_of(lim.file_size_bytes, lim.file_size_bytes);
  plan.lim_nofile = lim_of(lim.max_open_files, lim.max_open_files);
  plan.lim_core = lim_of(0, 0);
  // Processes: a uid or a user namespace of its own makes RLIMIT_NPROC count this tree only.
  const bool own_count = user.leased() || (isolated && !root);
  const long nproc = own_count ? lim.max_processes : count_user_tasks(user.uid()) + lim.max_processes;
  plan.lim_nproc = lim_of(nproc, nproc);
  // Memory: the cgroup caps the tree; without one, an address-space limit per process that
  // the process cap multiplies up to the same total.
  const long long as = cgroup.ok() ? lim.memory_bytes : lim.memory_bytes / std::max(1, lim.max_processes);
  plan.lim_as = lim_of(as, as);
  plan.drop = root && user.leased();
  plan.user_ns = isolated && !root;
  plan.uid = user.uid();
  plan.gid = user.gid();
  plan.uid_map = uid_map.c_str();
  plan.gid_map = gid_map.c_str();
  plan.view = view.get();
  for (const auto& f : cgroup.procs_files()) plan.cgroups.push_back(f.c_str());

  int in_p[2], out_p[2], err_p[2], rep_p[2];
  if (pipe2(in_p, O_CLOEXEC) != 0) fail("code sandbox: pipe: ", strerror(errno));
  if (pipe2(out_p, O_CLOEXEC) != 0 || pipe2(err_p, O_CLOEXEC) != 0 || pipe2(rep_p, O_CLOEXEC) != 0)
    fail("code sandbox: pipe: ", strerror(errno));
  plan.in_fd = in_p[0];
  plan.out_fd = out_p[1];
  plan.err_fd = err_p[1];
  plan.report_fd = rep_p[1];
  fcntl(rep_p[0], F_SETFL, O_NONBLOCK);

  // No signal handler may run in the child (it shares our memory until exec), and
  // writing stdin to a program that exited raises SIGPIPE: keep both off this thread.
  sigset_t all, pipe_set, old_mask;
  sigfillset(&all);
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_SETMASK, &all, &old_mask);
  const size_t stack_size = 256 << 10;
  void* stack = mmap(nullptr, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  auto start = Clock::now();
  pid_t pid = -1;
  int clone_errno = 0;
  Failure failure{0, 0, -1};
  const int flags = isolated ? kNamespaces | (root ? 0 : CLONE_NEWUSER) : 0;
  if (stack == MAP_FAILED) {
    clone_errno = errno;
  } else {
    // Returns once the child has called execve or exited (CLONE_VFORK).
    pid = clone(child_main, static_cast<char*>(stack) + stack_size, flags | CLONE_VM | CLONE_VFORK | SIGCHLD, &plan);
    if (pid < 0) {
      clone_errno = errno;
    } else if (read(rep_p[0], &failure, sizeof failure) == static_cast<ssize_t>(sizeof failure)) {
      while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {  // it failed before exec
      }
      pid = -1;
    } else {
      failure = Failure{0, 0, -1};
    }
    munmap(stack, stack_size);
  }
  sigset_t run_mask = old_mask;
  sigaddset(&run_mask, SIGPIPE);
  pthread_sigmask(SIG_SETMASK, &run_mask, nullptr);
  for (int fd : {in_p[0], out_p[1], err_p[1], rep_p[1], rep_p[0]}) close(fd);
  if (pid < 0) {
    for (int fd : {in_p[1], out_p[0], err_p[0]}) close(fd);
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    res.exec_failed = true;
    if (failure.stage > 0 && failure.stage <= kStageExec) {
      std::string what = kStages[failure.stage];
      if (failure.stage == kStageView && view) what += " (" + view->describe(failure.step) + ")";
      res.error = cat(what, " of '", path, "' failed: ", strerror(failure.err));
      if (isolated && refused && namespace_refusal(failure.stage, failure.err)) *refused = res.error;
    } else {
      res.error = cat("clone: ", strerror(clone_errno));
      if (isolated && refused) *refused = cat("namespaces refused: ", strerror(clone_errno));
    }
    return res;
  }
  int pidfd = -1;
#ifdef SYS_pidfd_open
  pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#endif

  int fds[3] = {in_p[1], out_p[0], err_p[0]};
  for (int fd : fds) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  if (input.empty()) {
    close(fds[0]);
    fds[0] = -1;
  }
  size_t written = 0;
  bool exited = false, killed = false;
  double exit_at = 0, kill_at = 0;
  auto kill_group = [&] {  // the child is a session (and group) leader: its group is its pid
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
    bool pipes_open = fds[1] >= 0 || fds[2] >= 0;
    if (exited && (!pipes_open || now - exit_at > grace)) break;
    if (killed && !exited && now - kill_at > 5.0) {  // unkillable (D state): give up on it
      res.error = "program did not die after SIGKILL";
      break;
    }
    pollfd pf[4];
    int nf = 0;
    if (fds[0] >= 0) pf[nf++] = {fds[0], POLLOUT, 0};
    for (int i = 1; i < 3; ++i)
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
    for (int i = 1; i < 3; ++i) {
      if (fds[i] < 0) continue;
      char buf[65536];
      while (true) {
        ssize_t n = read(fds[i], buf, sizeof buf);
        if (n > 0) {
          std::string& dst = i == 1 ? res.out : res.err;
          size_t room = lim.output_cap_bytes - std::min(dst.size(), lim.output_cap_bytes);
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
  // Nothing of the run may outlive it: its PID namespace died with it; its uid is swept
  // (double forks, setsid, execve with a clean environment all keep the uid).
  if (user.leased()) user.kill_all();
  else if (!isolated) kill_marked(marker, job.work());
  res.memory_cap_hit = cgroup.memory_cap_hit();
  if (exited) {
    if (WIFEXITED(status)) res.exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status)) res.term_signal = WTERMSIG(status);
  }
  if (res.timed_out || res.output_truncated) res.term_signal = 0;
  std::string iso = isolated ? std::string(root ? "" : "userns+") + "mnt+pid+net+ipc+uts" : "unisolated";
  iso += user.leased() ? cat(", uid ", user.uid()) : cat(", uid ", user.uid(), " (the trainer's)");
  iso += cgroup.ok() ? ", " + cgroup.kind() : cat(", rlimits (", as >> 20, " MiB x ", lim.max_processes, " processes)");
  res.isolation = iso;
  return res;
}

std::mutex g_probe_mu;

}  // namespace

std::string ExecResult::describe() const {
  if (exec_failed) return "could not start: " + error;
  if (timed_out) return cat("timeout after ", wall_s, " s");
  if (output_truncated) return "output over the size cap";
  if (memory_cap_hit && term_signal == SIGKILL) return "killed at the memory cap of its process tree";
  if (term_signal) return cat("killed by signal ", term_signal, " (", strsignal(term_signal), ")");
  return cat("exit ", exit_code);
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

SandboxDir::SandboxDir(const std::string& tmp_root) : user_(SandboxUser::acquire()) {
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
  const std::string root_dir = base_ + "/root";  // the mount point of each run's private root
  if (mkdir(root_dir.c_str(), 0700) != 0) fail("code sandbox: cannot create '", root_dir, "': ", strerror(errno));
  // Unisolated, the program works in w/ as the job's uid: it may enter base_ but not write to it.
  const bool other = user_.uid() != getuid();
  if (other && chown(work_.c_str(), user_.uid(), user_.gid()) != 0)
    fail("code sandbox: cannot hand '", work_, "' to uid ", user_.uid(), ": ", strerror(errno));
  chmod(base_.c_str(), other ? 0711 : 0500);
}

SandboxDir::~SandboxDir() {
  if (base_.empty()) return;
  user_.kill_all();
  chmod(base_.c_str(), 0700);
  remove_tree_at(AT_FDCWD, base_.c_str());
}

std::string sandbox_isolation_problem() {
  static std::string problem;
  static bool probed = false;
  std::lock_guard<std::mutex> lock(g_probe_mu);
  if (probed) return problem;
  probed = true;
  try {
    SandboxDir probe("");
    SandboxLimits lim;
    lim.wall_timeout_s = 10;
    std::string refused;
    ExecResult r = run_once({"true"}, "", probe, lim, true, &refused);
    if (r.exec_failed) problem = r.error;
    else if (!r.ok()) problem = "a sandboxed /bin/true ended with " + r.describe() + ": " + r.err.substr(0, 200);
  } catch (const std::exception& e) {
    problem = e.what();
  }
  return problem;
}

void check_sandbox_isolation(const SandboxLimits& lim) {
  if (lim.force_unisolated) {
    TEMPER_CHECK(lim.allow_unisolated, "code sandbox: unisolated runs were asked for but are not allowed");
    return;
  }
  const std::string problem = sandbox_isolation_problem();
  if (problem.empty()) return;
  TEMPER_CHECK(lim.allow_unisolated, "code sandbox: programs cannot be isolated here (", problem,
               "); code rewards refuse to run unisolated, where a program could read the run's data and prompts,"
               " other processes and other sandboxes. Run as root or where user namespaces are allowed, or set "
               "rl.code_unisolated = true to accept the risk");
  static std::once_flag warned;
  std::call_once(warned, [&] {
    log_warn("code sandbox: programs run UNISOLATED (", problem, "): they see the whole file system and every "
             "process, as ", geteuid() == 0 ? "a uid of their own" : "the trainer's user",
             "; rl.code_unisolated = true allows this");
  });
}

ExecResult sandbox_exec(const std::vector<std::string>& argv, const std::string& input, const SandboxDir& job,
                        const SandboxLimits& lim) {
  if (lim.force_unisolated) {
    if (!lim.allow_unisolated) {
      ExecResult r;
      r.exec_failed = true;
      r.error = "unisolated runs are not allowed";
      return r;
    }
    return run_once(argv, input, job, lim, false, nullptr);
  }
  if (lim.allow_unisolated && !sandbox_isolation_problem().empty()) return run_once(argv, input, job, lim, false, nullptr);
  std::string refused;
  ExecResult r = run_once(argv, input, job, lim, true, &refused);
  if (!refused.empty() && lim.allow_unisolated) return run_once(argv, input, job, lim, false, nullptr);
  if (!refused.empty())
    r.error += " (programs cannot be isolated here; rl.code_unisolated = true would run them unisolated)";
  return r;
}

}  // namespace temper
