// The process sandbox behind the code reward: runs one command in a fresh
// process group under rlimits, optional network/PID/user namespaces, a cleared
// environment and a wall-clock deadline, with captured, size-capped output.
// See docs/rewards.md for what it does and does not contain.
#pragma once
#include <string>
#include <vector>

namespace temper {

struct SandboxLimits {
  double wall_timeout_s = 5.0;
  int cpu_seconds = 5;
  long long memory_bytes = 1LL << 30;
  long long file_size_bytes = 16LL << 20;
  int max_processes = 32;
  int max_open_files = 64;
  size_t output_cap_bytes = 1 << 20;
  bool isolate_network = true;
  bool isolate_pids = true;
  bool drop_root = true;
};

struct ExecResult {
  int exit_code = -1;       // valid when term_signal == 0 and !timed_out
  int term_signal = 0;      // signal that ended the program, 0 if it exited
  bool timed_out = false;   // wall-clock deadline hit, group killed
  bool output_truncated = false;  // stdout or stderr exceeded the cap, group killed
  bool exec_failed = false;       // the command could not be started (see error)
  std::string out, err;
  double wall_s = 0;
  std::string isolation;    // e.g. "net+pid+uid:65534", "none (namespaces refused: ...)"
  std::string error;
  bool ok() const { return !timed_out && !output_truncated && !exec_failed && term_signal == 0 && exit_code == 0; }
  std::string describe() const;  // one line: "exit 1", "timeout after 2.0 s", ...
};

// A private temporary directory tree: <tmp_root>/temper-sbx-XXXXXX/w. The inner
// "w" is the program's working directory (owned by `owner_uid` when >= 0); the outer
// one is made read-only so naive writes to ".." fail. Removed (without following
// symlinks) on destruction.
class SandboxDir {
 public:
  SandboxDir(const std::string& tmp_root, int owner_uid, int owner_gid);
  ~SandboxDir();
  SandboxDir(const SandboxDir&) = delete;
  SandboxDir& operator=(const SandboxDir&) = delete;
  const std::string& work() const { return work_; }
  const std::string& base() const { return base_; }

 private:
  std::string base_, work_;
};

// Runs argv[0] (resolved on a minimal PATH when it has no '/') with `input` on stdin
// in `workdir`. Never throws for anything the program does; never blocks past the
// deadline plus a short grace period.
ExecResult sandbox_exec(const std::vector<std::string>& argv, const std::string& input,
                        const std::string& workdir, const SandboxLimits& lim);

// The uid/gid a sandboxed program runs as (nobody when root and drop_root, else ours).
void sandbox_identity(bool drop_root, int* uid, int* gid);

// Resolves a command name on the sandbox PATH; empty string if not found.
std::string sandbox_which(const std::string& name);

}  // namespace temper
