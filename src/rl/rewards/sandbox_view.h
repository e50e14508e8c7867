// The file system a sandboxed program sees (docs/rewards.md): a small read-only root
// holding /usr and the top-level bin/lib links (read-only, nosuid), a few files of
// /etc, the harmless /dev nodes, its own /proc, and size-capped private tmpfs folders
// /tmp, /dev/shm and /work (its working directory, holding a copy of the job's files).
// Nothing else of the host: no data, decks, checkpoints, other sandboxes or processes.
//
// The parent builds the list of steps; the child carries them out between clone and
// exec with system calls only (it shares the parent's memory), then pivots into it.
#pragma once
#include <sys/types.h>

#include <string>
#include <vector>

namespace temper {

struct SandboxViewOptions {
  long long tmp_bytes = 64LL << 20;      // size of each of /tmp, /dev/shm and /work
  long long tmp_inodes = 16384;          // files + folders in each of them
  bool keep_work = false;                // /work is the job's host folder itself (a compile step)
  std::vector<std::string> ro_paths;     // more host paths shown read-only at the same place
};

class SandboxView {
 public:
  // root_dir: an empty host folder the new root is mounted on (in the child's mount
  // namespace only); job_work: the host folder with the job's files (copied into /work).
  SandboxView(const std::string& root_dir, const std::string& job_work, const SandboxViewOptions& opt, uid_t uid,
              gid_t gid);
  ~SandboxView();
  SandboxView(const SandboxView&) = delete;
  SandboxView& operator=(const SandboxView&) = delete;

  // In the child (new mount and PID namespaces, still privileged): builds the view and
  // enters it (cwd /work). Returns -1 on success, else the failed step's index (errno set).
  int enter() const noexcept;
  // One line naming step `index` (for the error message of a failed set-up).
  std::string describe(int index) const;

  // True when the program would see host path `path` (it lies under a read-only mount).
  bool shows(const std::string& path) const;

 private:
  enum class Kind { Mkdir, Symlink, Bind, BindRw, Tmpfs, Proc, WriteFile, CopyIn, Chown };
  struct Step {
    Kind kind;
    std::string target;    // absolute host path inside the new root (root_dir + path)
    std::string source;    // bind source, symlink target, file text, tmpfs options, copied name
    unsigned long flags = 0;
    unsigned mode = 0;
    bool is_file = false;  // a bind of one file (the mount point is an empty file)
  };
  void add_bind_ro(const std::string& host_path);  // with its parent folders
  void add_mkdirs(const std::string& path);        // every missing folder of a path in the view

  std::string root_;
  std::vector<Step> steps_;
  std::vector<std::string> made_;   // folders of the view already created
  std::vector<std::string> shown_;  // host paths visible read-only
  int work_fd_ = -1;                // the job's host folder, for the copies
  uid_t uid_;
  gid_t gid_;
};

}  // namespace temper
