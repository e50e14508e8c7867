// The user a sandboxed job runs as. As root every concurrent job gets a uid of its
// own from a range no login uses, leased through an flock'ed file per uid in a
// root-only folder, so concurrent jobs of every temper process on the node never
// share one (no job can signal, trace or overwrite another's). Without root the job
// keeps the trainer's ids and gets a user namespace instead (code_sandbox.cpp).
#pragma once
#include <sys/types.h>

#include <string>

namespace temper {

class SandboxUser {
 public:
  // Leases a free uid as root (throws when none is free or the lease folder is unsafe);
  // otherwise the trainer's own ids, not leased.
  static SandboxUser acquire();
  SandboxUser() = default;
  ~SandboxUser();
  SandboxUser(SandboxUser&& o) noexcept;
  SandboxUser& operator=(SandboxUser&& o) noexcept;
  SandboxUser(const SandboxUser&) = delete;
  SandboxUser& operator=(const SandboxUser&) = delete;

  uid_t uid() const { return uid_; }
  gid_t gid() const { return gid_; }
  bool leased() const { return lock_fd_ >= 0; }  // a uid of its own (root trainer)

  // SIGKILLs every process of the leased uid, wherever it runs (a helper takes the uid and
  // calls kill(-1)), repeated until none is left. True when none is left; a no-op (true)
  // without a lease.
  bool kill_all() const;

 private:
  static void sweep(uid_t uid, gid_t gid);  // one kill(-1, SIGKILL) as uid

  uid_t uid_ = 0;
  gid_t gid_ = 0;
  int lock_fd_ = -1;
};

// The first uid of the leased range and the number of uids in it.
constexpr uid_t kSandboxUidBase = 1800000000u;
constexpr unsigned kSandboxUidCount = 65536u;

}  // namespace temper
