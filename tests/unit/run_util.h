// Helpers for tests that run the temper executable as a user would: a fresh
// temporary directory, a command runner that captures output and exit status.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace temper_test {

struct CmdResult {
  int status = -1;  // exit status, or 128+signal
  std::string output;
};

// Runs `cmd` through /bin/sh with stderr merged into stdout.
inline CmdResult run_cmd(const std::string& cmd) {
  CmdResult r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

inline std::string mpirun(int np) {
  return std::string(TEMPER_MPIEXEC) + " --allow-run-as-root --oversubscribe --bind-to none -np " +
         std::to_string(np) + " ";
}

inline std::string temper_bin() { return TEMPER_BIN; }

inline std::filesystem::path fresh_dir(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / ("temper_test_" + name + "_" + std::to_string(getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

inline void write_file(const std::filesystem::path& p, const std::string& text) {
  std::ofstream(p) << text;
}

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Starts `cmd` through /bin/sh in a process group of its own, output to `log`; returns its pid.
inline pid_t start_in_background(const std::string& cmd, const std::filesystem::path& log) {
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", ("exec " + cmd + " > " + log.string() + " 2>&1").c_str(), nullptr);
    _exit(127);
  }
  return pid;
}

// The processes whose parent is `parent` (from /proc/<pid>/stat: the field after the
// closing parenthesis of the command name is the state, then the parent pid).
inline std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string stat = read_file(e.path() / "stat");
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent) out.push_back(pid_t(std::stol(name)));
  }
  return out;
}

// True once the metrics file of every one of `np` ranks under `dir` holds a step line: all
// ranks are past start-up (their signal handlers are installed before the phase starts).
inline bool all_ranks_stepping(const std::filesystem::path& dir, int np) {
  for (int rank = 0; rank < np; ++rank)
    if (read_file(dir / ("metrics.rank" + std::to_string(rank) + ".jsonl")).find("\"step\":") == std::string::npos)
      return false;
  return true;
}

// The "loss" of every step line of a metrics JSONL file, in order.
inline std::vector<double> step_losses(const std::filesystem::path& metrics) {
  std::vector<double> out;
  std::istringstream in(read_file(metrics));
  std::string line;
  while (std::getline(in, line)) {
    const auto p = line.find("\"loss\":");
    if (p != std::string::npos && line.find("\"step\":") != std::string::npos)
      out.push_back(std::stod(line.substr(p + 7)));
  }
  return out;
}

}  // namespace temper_test
