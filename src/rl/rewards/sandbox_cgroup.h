// One memory cap and one process cap for a sandboxed program's whole process tree:
// a cgroup made for the run below the trainer's own, in the cgroup v2 hierarchy when
// its memory controller can be used there, else in the v1 memory (+ pids) hierarchy.
// Where neither is writable ok() is false and the sandbox falls back to rlimits that
// the tree cannot exceed together (code_sandbox.cpp).
#pragma once
#include <string>
#include <vector>

namespace temper {

class SandboxCgroup {
 public:
  // Never throws: a cgroup that cannot be made leaves ok() false and why() saying so.
  SandboxCgroup(long long memory_bytes, int max_processes);
  ~SandboxCgroup();  // kills what is left in it and removes it
  SandboxCgroup(const SandboxCgroup&) = delete;
  SandboxCgroup& operator=(const SandboxCgroup&) = delete;

  bool ok() const { return !procs_.empty(); }
  const std::string& why() const { return why_; }
  // "cgroup v2 memory+pids", "cgroup v1 memory+pids", ...
  const std::string& kind() const { return kind_; }
  // cgroup.procs files the child writes "0" to (joining them) before it execs.
  const std::vector<std::string>& procs_files() const { return procs_; }
  // The memory cap was reached during the run (the kernel's OOM killer acted in it).
  bool memory_cap_hit() const;

 private:
  std::vector<std::string> dirs_;  // created cgroup folders
  std::vector<std::string> procs_;
  std::string memory_dir_, kind_, why_;
  bool v2_ = false;
};

// Where a cgroup for a sandbox would go ("" and the reason when none can be made);
// found once per process. For the docs and the isolation summary.
std::string sandbox_cgroup_summary();

}  // namespace temper
