// Per-run cgroups of the code sandbox (see sandbox_cgroup.h).
#include "rl/rewards/sandbox_cgroup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/error.h"

namespace temper {
namespace {

std::string read_small(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool write_small(const std::string& path, const std::string& text) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = write(fd, text.data(), text.size()) == ssize_t(text.size());
  close(fd);
  return ok;
}

bool has_word(const std::string& list, const std::string& word) {
  std::istringstream in(list);
  for (std::string w; in >> w;)
    if (w == word) return true;
  return false;
}

// Where the hierarchies are and where this process sits in them.
struct Layout {
  std::string v2_parent;      // our cgroup v2 folder, when memory can be enabled below it
  std::string v1_memory;      // our folder in the v1 memory hierarchy, when writable
  std::string v1_pids;        // our folder in the v1 pids hierarchy, when writable
  std::string why;            // why none is usable
};

// Our path in a hierarchy from /proc/self/cgroup ("0::/a/b" for v2, "4:memory:/a" for v1).
std::string own_path(const std::string& controller) {
  std::istringstream in(read_small("/proc/self/cgroup"));
  for (std::string line; std::getline(in, line);) {
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string ctrls = line.substr(a + 1, b - a - 1);
    std::istringstream cs(ctrls);
    bool match = controller.empty() ? ctrls.empty() : false;
    for (std::string c; !controller.empty() && std::getline(cs, c, ',');) match |= c == controller;
    if (match) return line.substr(b + 1);
  }
  return "";
}

// A usable folder: exists, and a child cgroup can be made in it.
bool can_make_child(const std::string& dir) {
  const std::string probe = dir + "/temper-sbx-probe-" + std::to_string(getpid());
  if (mkdir(probe.c_str(), 0755) != 0 && errno != EEXIST) return false;
  rmdir(probe.c_str());
  return true;
}

Layout find_layout() {
  Layout l;
  std::istringstream in(read_small("/proc/self/mountinfo"));
  std::string v2_mount, v1_mem_mount, v1_mem_root, v1_pids_mount, v1_pids_root;
  for (std::string line; std::getline(in, line);) {
    // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
    std::istringstream f(line);
    std::string id, parent, dev, root, point, opts;
    f >> id >> parent >> dev >> root >> point >> opts;
    const size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream tail(line.substr(dash + 3));
    std::string fstype, source, super;
    tail >> fstype >> source >> super;
    if (fstype == "cgroup2" && v2_mount.empty()) v2_mount = point;
    if (fstype == "cgroup") {
      std::istringstream so(super);
      for (std::string o; std::getline(so, o, ',');) {
        if (o == "memory" && v1_mem_mount.empty()) v1_mem_mount = point, v1_mem_root = root;
        if (o == "pids" && v1_pids_mount.empty()) v1_pids_mount = point, v1_pids_root = root;
      }
    }
  }
  auto join = [](const std::string& mount, const std::string& root, std::string path) {
    if (root != "/" && path.rfind(root, 0) == 0) path = path.substr(root.size());
    return mount + (path == "/" ? "" : path);
  };
  if (!v2_mount.empty()) {
    const std::string dir = join(v2_mount, "/", own_path(""));
    // memory must be available here and enabled (or enable-able) for our children
    if (has_word(read_small(dir + "/cgroup.controllers"), "memory")) {
      if (!has_word(read_small(dir + "/cgroup.subtree_control"), "memory"))
        write_small(dir + "/cgroup.subtree_control", "+memory +pids");
      if (has_word(read_small(dir + "/cgroup.subtree_control"), "memory") && can_make_child(dir)) l.v2_parent = dir;
    }
  }
  if (l.v2_parent.empty() && !v1_mem_mount.empty()) {
    const std::string dir = join(v1_mem_mount, v1_mem_root, own_path("memory"));
    if (can_make_child(dir)) l.v1_memory = dir;
    if (!v1_pids_mount.empty()) {
      const std::string pdir = join(v1_pids_mount, v1_pids_root, own_path("pids"));
      if (can_make_child(pdir)) l.v1_pids = pdir;
    }
  }
  if (l.v2_parent.empty() && l.v1_memory.empty())
    l.why = v2_mount.empty() && v1_mem_mount.empty()
                ? "no cgroup file system with a memory controller is mounted"
                : "no writable cgroup with the memory controller (cgroup v2 needs memory in the parent's "
                  "subtree_control; not root or a read-only cgroup mount)";
  return l;
}

const Layout& layout() {
  static const Layout l = find_layout();
  return l;
}

std::string fresh_name() {
  static std::atomic<unsigned> n{0};
  return "temper-sbx-" + std::to_string(getpid()) + "-" + std::to_string(n.fetch_add(1));
}

}  // namespace

std::string sandbox_cgroup_summary() {
  const Layout& l = layout();
  if (!l.v2_parent.empty()) return "cgroup v2 memory+pids under " + l.v2_parent;
  if (!l.v1_memory.empty())
    return "cgroup v1 memory" + std::string(l.v1_pids.empty() ? "" : "+pids") + " under " + l.v1_memory;
  return "";
}

SandboxCgroup::SandboxCgroup(long long memory_bytes, int max_processes) {
  const Layout& l = layout();
  if (!l.why.empty()) {
    why_ = l.why;
    return;
  }
  const std::string name = fresh_name();
  auto make = [&](const std::string& parent) -> std::string {
    const std::string dir = parent + "/" + name;
    if (mkdir(dir.c_str(), 0755) != 0) return "";
    dirs_.push_back(dir);
    return dir;
  };
  const std::string mem = std::to_string(memory_bytes), procs = std::to_string(max_processes);
  if (!l.v2_parent.empty()) {
    v2_ = true;
    const std::string dir = make(l.v2_parent);
    bool ok = !dir.empty() && write_small(dir + "/memory.max", mem);
    if (ok) {
      write_small(dir + "/memory.swap.max", "0");  // absent without swap accounting
      write_small(dir + "/pids.max", procs);       // absent when pids is not enabled
      memory_dir_ = dir;
      procs_.push_back(dir + "/cgroup.procs");
      kind_ = has_word(read_small(dir + "/cgroup.controllers"), "pids") ? "cgroup v2 memory+pids" : "cgroup v2 memory";
    }
  } else {
    const std::string dir = make(l.v1_memory);
    bool ok = !dir.empty() && write_small(dir + "/memory.limit_in_bytes", mem);
    if (ok) {
      write_small(dir + "/memory.memsw.limit_in_bytes", mem);  // no swap either (when accounted)
      memory_dir_ = dir;
      procs_.push_back(dir + "/cgroup.procs");
      kind_ = "cgroup v1 memory";
      if (!l.v1_pids.empty()) {
        const std::string pdir = make(l.v1_pids);
        if (!pdir.empty() && write_small(pdir + "/pids.max", procs)) {
          procs_.push_back(pdir + "/cgroup.procs");
          kind_ += "+pids";
        }
      }
    }
  }
  if (procs_.empty()) why_ = "cannot set up a cgroup under " + (l.v2_parent.empty() ? l.v1_memory : l.v2_parent) +
                             ": " + std::strerror(errno);
}

bool SandboxCgroup::memory_cap_hit() const {
  if (memory_dir_.empty()) return false;
  if (v2_) {
    std::istringstream in(read_small(memory_dir_ + "/memory.events"));
    for (std::string k; in >> k;) {
      long long v = 0;
      in >> v;
      if ((k == "oom_kill" || k == "max" || k == "oom") && v > 0) return true;
    }
    return false;
  }
  std::istringstream in(read_small(memory_dir_ + "/memory.oom_control"));
  for (std::string k; in >> k;) {
    long long v = 0;
    in >> v;
    if (k == "oom_kill" && v > 0) return true;
  }
  return false;
}

SandboxCgroup::~SandboxCgroup() {
  // Kill whatever is left (a PID namespace normally already did), then remove the folders;
  // a cgroup with tasks cannot be removed, so retry while the last ones die.
  for (int attempt = 0; attempt < 200 && !dirs_.empty(); ++attempt) {
    for (const auto& d : dirs_) {
      if (v2_ && write_small(d + "/cgroup.kill", "1")) continue;
      std::istringstream in(read_small(d + "/cgroup.procs"));
      for (long pid; in >> pid;) kill(pid_t(pid), SIGKILL);
    }
    for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it)
      if (rmdir(it->c_str()) == 0 || errno == ENOENT) it->clear();
    std::vector<std::string> left;
    for (auto& d : dirs_)
      if (!d.empty()) left.push_back(d);
    dirs_.swap(left);
    if (!dirs_.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace temper
