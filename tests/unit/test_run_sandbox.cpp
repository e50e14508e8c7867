// The code sandbox at the start of a run (issue 17): where namespaces are unavailable, a
// run whose prompts hold code tasks refuses at start (exit 2, before any generation),
// unless the deck allows the unisolated mode (rl.code_unisolated = true), which then
// warns at start. "Namespaces unavailable" is made real, as in a container: temper runs
// under a seccomp filter that refuses unshare() and clone() with namespace flags.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>

#include "rl/rewards/code_sandbox.h"
#include "unit/run_util.h"

using namespace temper_test;
namespace fs = std::filesystem;

namespace {

constexpr int kNoFilter = 77;  // the child could not install the filter

// Runs temper with `args` (output to `log`), under the namespace-refusing seccomp filter
// when `filtered`; returns the exit status (128 + signal when killed).
int run_temper(const std::vector<std::string>& args, const fs::path& log, bool filtered) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) _exit(126);
    dup2(fd, 1);
    dup2(fd, 2);
    if (filtered) {
      const unsigned ns = CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;
      sock_filter filter[] = {
          BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
          BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_unshare, 4, 0),
          BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 4),
          BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[0])),
          BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, ns, 1, 2),
          BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),  // unshare
          BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),  // clone with namespaces
          BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      };
      sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
      if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
        _exit(kNoFilter);
    }
    std::vector<std::string> copy = args;
    std::string bin = temper_bin();
    std::vector<char*> argv{bin.data()};
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

class RunSandbox : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fresh_dir("run_sandbox");
    // One code item (stdin/stdout tests) and one math item: the code item alone decides.
    write_file(dir_ / "code.jsonl",
               "{\"messages\":[{\"role\":\"user\",\"content\":\"print 3\"}],\"task\":\"math\",\"answer\":\"3\"}\n"
               "{\"messages\":[{\"role\":\"user\",\"content\":\"print 3\"}],\"task\":\"code\","
               "\"tests\":[{\"input\":\"\",\"expected_output\":\"3\"}]}\n");
    write_file(dir_ / "math.jsonl",
               "{\"messages\":[{\"role\":\"user\",\"content\":\"1+2?\"}],\"task\":\"math\",\"answer\":\"3\"}\n");
  }
  void TearDown() override { fs::remove_all(dir_); }
  // An eval run of the quickstart model (random weights: nothing to load) on `file`.
  std::vector<std::string> eval_args(const std::string& file, const std::string& out) const {
    return {std::string(TEMPER_SOURCE_DIR) + "/input/quickstart.deck", "--run.phase=eval",
            "--run.output_dir=" + (dir_ / out).string(), "--eval.file=" + (dir_ / file).string(),
            "--eval.max_new_tokens=4", "--rl.code_command=sh"};
  }
  fs::path dir_;
};

const char* kStarted = "eval: 2 prompts";  // logged once the checks passed, before generation

TEST_F(RunSandbox, CodeTasksWithoutNamespacesAreRefusedAtStart) {
  const fs::path log = dir_ / "refused.log";
  const int st = run_temper(eval_args("code.jsonl", "refused"), log, true);
  if (st == kNoFilter) GTEST_SKIP() << "cannot install a seccomp filter here";
  const std::string out = read_file(log);
  EXPECT_EQ(st, 2) << out;
  EXPECT_NE(out.find("programs cannot be isolated here"), std::string::npos) << out;
  EXPECT_NE(out.find("rl.code_unisolated = true"), std::string::npos) << out;
  EXPECT_EQ(out.find(kStarted), std::string::npos) << "refused only after the run had started:\n" << out;
  EXPECT_FALSE(fs::exists(dir_ / "refused" / "eval_results.rank0.jsonl")) << out;

  // The RL phase refuses at start too (before the engine generates anything), for code in
  // the training prompts or in the held-out set.
  for (const auto& [prompts, eval] : {std::pair<std::string, std::string>{"code.jsonl", ""},
                                      std::pair<std::string, std::string>{"math.jsonl", "code.jsonl"}}) {
    const int rl = run_temper({std::string(TEMPER_SOURCE_DIR) + "/input/quickstart.deck", "--run.phase=rl",
                               "--run.output_dir=" + (dir_ / "rl").string(), "--model.init=random",
                               "--rl.prompts_file=" + (dir_ / prompts).string(),
                               "--rl.eval_file=" + (eval.empty() ? std::string() : (dir_ / eval).string()),
                               "--rl.steps=1", "--rl.max_new_tokens=4", "--rl.code_command=sh"},
                              log, true);
    const std::string rl_out = read_file(log);
    EXPECT_EQ(rl, 2) << prompts << " / " << eval << "\n" << rl_out;
    EXPECT_NE(rl_out.find("rl.code_unisolated = true"), std::string::npos) << rl_out;
    EXPECT_FALSE(fs::exists(dir_ / "rl" / "metrics.rank0.jsonl")) << "the RL run stepped:\n" << rl_out;
  }
}

TEST_F(RunSandbox, UnisolatedModeWarnsAtStartAndRuns) {
  const fs::path log = dir_ / "allowed.log";
  std::vector<std::string> args = eval_args("code.jsonl", "allowed");
  args.push_back("--rl.code_unisolated=true");
  const int st = run_temper(args, log, true);
  if (st == kNoFilter) GTEST_SKIP() << "cannot install a seccomp filter here";
  const std::string out = read_file(log);
  EXPECT_EQ(st, 0) << out;
  const size_t warned = out.find("programs run UNISOLATED"), started = out.find(kStarted);
  ASSERT_NE(warned, std::string::npos) << out;
  ASSERT_NE(started, std::string::npos) << out;
  EXPECT_LT(warned, started) << "the warning came after the run had started:\n" << out;
  EXPECT_TRUE(fs::exists(dir_ / "allowed" / "eval_summary.json")) << out;
}

// Where programs can be isolated, code tasks need no permission and get no warning;
// prompts without code tasks never need the sandbox, even where it cannot run.
TEST_F(RunSandbox, IsolatedRunsAndRunsWithoutCodeNeedNoPermission) {
  const fs::path log = dir_ / "plain.log";
  int st = run_temper(eval_args("math.jsonl", "math"), log, true);
  if (st == kNoFilter) GTEST_SKIP() << "cannot install a seccomp filter here";
  std::string out = read_file(log);
  EXPECT_EQ(st, 0) << out;
  EXPECT_EQ(out.find("UNISOLATED"), std::string::npos) << out;
  const std::string why = temper::sandbox_isolation_problem();
  if (!why.empty()) GTEST_SKIP() << "programs cannot be isolated on this machine: " << why;
  st = run_temper(eval_args("code.jsonl", "isolated"), log, false);
  out = read_file(log);
  EXPECT_EQ(st, 0) << out;
  EXPECT_EQ(out.find("UNISOLATED"), std::string::npos) << out;
  EXPECT_NE(out.find(kStarted), std::string::npos) << out;
}

}  // namespace
