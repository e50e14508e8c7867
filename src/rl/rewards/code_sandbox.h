// The process sandbox behind the code reward. Each run gets its own mount, PID,
// network, IPC and UTS namespaces (a user namespace too when the trainer is not
// root), a minimal read-only view of the system (sandbox_view.h) with private,
// size-capped /tmp, /dev/shm and /work, a uid no concurrent job shares
// (sandbox_user.h), one memory and process cap for its whole tree (sandbox_cgroup.h,
// else rlimits the tree cannot exceed together), a cleared environment, a wall-clock
// deadline and captured, size-capped output. Where namespaces are unavailable it
// refuses to run unless unisolated runs are explicitly allowed.
// See docs/rewards.md for what a program can and cannot see.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "rl/rewards/sandbox_user.h"

namespace temper {

struct SandboxLimits {
  double wall_timeout_s = 5.0;
  int cpu_seconds = 5;
  long long memory_bytes = 1LL << 30;      // the whole process tree
  long long file_size_bytes = 16LL << 20;  // RLIMIT_FSIZE
  long long tmp_bytes = 64LL << 20;        // size of each of /tmp, /dev/shm and /work
  int max_processes = 32;                  // the whole tree
  int max_open_files = 64;
  size_t output_cap_bytes = 1 << 20;
  bool allow_unisolated = false;  // where namespaces are unavailable, run without them (with a warning)
  bool force_unisolated = false;  // never try namespaces (tests of that mode; needs allow_unisolated)
  bool keep_work = false;         // the run writes the job's folder itself (a compile step), not a copy
  std::vector<std::string> ro_paths;  // more host paths shown read-only (an interpreter outside /usr)
};

struct ExecResult {
  int exit_code = -1;       // valid when term_signal == 0 and !timed_out
  int term_signal = 0;      // signal that ended the program, 0 if it exited
  bool timed_out = false;   // wall-clock deadline hit, tree killed
  bool output_truncated = false;  // stdout or stderr exceeded the cap, tree killed
  bool exec_failed = false;       // the command could not be started (see error)
  bool memory_cap_hit = false;    // the tree's memory cap was reached (the kernel killed in it)
  std::string out, err;
  double wall_s = 0;
  std::string isolation;    // e.g. "mnt+pid+net+ipc+uts, uid 1800000042, cgroup v1 memory+pids"
  std::string error;
  bool ok() const { return !timed_out && !output_truncated && !exec_failed && term_signal == 0 && exit_code == 0; }
  std::string describe() const;  // one line: "exit 1", "timeout after 2.0 s", ...
};

// One job's host side: <tmp_root>/temper-sbx-XXXXXX (root-only) with the job's files in
// work() (write them there; each run sees a private copy in /work, and command-line
// words naming files of work() are given as their /work paths), and the job's user.
// Removed (without following symlinks) on destruction, after every process of the
// job's uid is killed.
class SandboxDir {
 public:
  explicit SandboxDir(const std::string& tmp_root);
  ~SandboxDir();
  SandboxDir(const SandboxDir&) = delete;
  SandboxDir& operator=(const SandboxDir&) = delete;
  const std::string& work() const { return work_; }
  const std::string& base() const { return base_; }
  const SandboxUser& user() const { return user_; }

 private:
  SandboxUser user_;
  std::string base_, work_;
};

// Runs argv[0] (resolved on PATH=/usr/local/bin:/usr/bin:/bin when it has no '/') with
// `input` on stdin. Never throws for anything the program does; never blocks past
// the deadline plus a short grace period.
ExecResult sandbox_exec(const std::vector<std::string>& argv, const std::string& input, const SandboxDir& job,
                        const SandboxLimits& lim);

// "" when programs can be isolated here, else why not (checked once per process by
// running /bin/true in a sandbox).
std::string sandbox_isolation_problem();

// Called before any code is scored: throws when isolation is unavailable and
// lim.allow_unisolated is false; when it is allowed, warns once (saying what a program
// can then reach).
void check_sandbox_isolation(const SandboxLimits& lim);

// Resolves a command name on the sandbox PATH; empty string if not found.
std::string sandbox_which(const std::string& name);

}  // namespace temper
