// Tests of the code reward and its sandbox: scoring, extraction, concurrency, and
// containment of abusive programs (fork bomb, infinite loop, memory hog, SIGTERM
// ignorer, writes outside the work dir, huge output, a setsid daemon), each with a
// time bound. Programs are /bin/sh scripts so CI needs no Python.
#include <gtest/gtest.h>

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <random>

#include "core/error.h"
#include "rl/rewards/code_sandbox.h"
#include "rl/rewards/reward.h"

using namespace temper;
using nlohmann::json;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A private tmp_root per test so leftovers can be counted.
class RewardsCode : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/temper-rewards-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    chmod(root_.c_str(), 0755);
    opt_.run_command = {"sh"};
    opt_.source_name = "main.sh";
    opt_.fence_tags = {"sh", "bash"};
    opt_.wall_timeout_s = 30;  // generous: on a loaded machine a correct program must not time out
    opt_.cpu_seconds = 2;
    opt_.memory_bytes = 256LL << 20;
    opt_.output_cap_bytes = 64 << 10;
    opt_.workers = 2;
    opt_.tmp_root = root_;
  }
  void TearDown() override {
    EXPECT_EQ(entries(root_), 0u) << "sandbox directories were left behind in " << root_;
    std::string cmd = "rm -rf '" + root_ + "'";
    EXPECT_EQ(system(cmd.c_str()), 0);
  }
  static size_t entries(const std::string& dir) {
    size_t n = 0;
    if (DIR* d = opendir(dir.c_str())) {
      while (dirent* e = readdir(d))
        if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") ++n;
      closedir(d);
    }
    return n;
  }
  RewardResult run1(const std::string& script, std::vector<CodeTest> tests = {{"", "ok\n"}}) {
    return code_rewards({CodeJob{"Here:\n```sh\n" + script + "\n```\n", tests}}, opt_).at(0);
  }
  // Runs an abusive script under a 2 s deadline, asserts it scored 0 and was ended within
  // `bound` seconds (generous for a loaded machine: what is asserted is that it ends at all,
  // where it would otherwise run for ever).
  RewardResult contained(const std::string& script, double bound = 30) {
    const double wall = opt_.wall_timeout_s;
    opt_.wall_timeout_s = 2;
    double t0 = now_s();
    RewardResult r = run1(script);
    double dt = now_s() - t0;
    opt_.wall_timeout_s = wall;
    EXPECT_LT(dt, bound) << script << " -> " << r.detail;
    EXPECT_EQ(r.reward, 0.0) << r.detail;
    EXPECT_EQ(r.verdict, Verdict::Wrong) << r.detail;
    return r;
  }
  std::string root_;
  SandboxOptions opt_;
};

// True while a live process has `marker` in its command line.
bool marker_alive(const std::string& marker) {
  DIR* d = opendir("/proc");
  bool found = false;
  while (dirent* e = d ? readdir(d) : nullptr) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/cmdline", std::ios::binary);
    std::string cmd((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (cmd.find(marker) != std::string::npos) found = true;
  }
  if (d) closedir(d);
  return found;
}

const std::vector<CodeTest> kAddTests = {{"1 2\n", "3\n"}, {"10 -4\n", "6"}, {"0 0", "0  \n\n"}};

TEST_F(RewardsCode, ScoresFractionAndAllOrNothing) {
  RewardResult good = run1("read a b\necho $((a + b))", kAddTests);
  EXPECT_EQ(good.verdict, Verdict::Correct) << good.detail;
  EXPECT_DOUBLE_EQ(good.reward, 1.0);
  // Wrong on negative numbers: 2 of 3 pass.
  const std::string partial = "read a b\nif [ $b -lt 0 ]; then echo 0; else echo $((a + b)); fi";
  RewardResult part = run1(partial, kAddTests);
  EXPECT_EQ(part.verdict, Verdict::Wrong);
  EXPECT_NEAR(part.reward, 2.0 / 3.0, 1e-12) << part.detail;
  opt_.all_or_nothing = true;
  EXPECT_EQ(run1(partial, kAddTests).reward, 0.0);
  EXPECT_EQ(run1("exit 3", kAddTests).reward, 0.0);  // non-zero exit fails even with no output expected
}

TEST_F(RewardsCode, ExtractionAndUnparsable) {
  EXPECT_EQ(extract_code_block("```python\na\n```\ntext\n```\nb\n```\n```py\nc\n```", {"python", "py"}).value(), "c\n");
  EXPECT_EQ(extract_code_block("```python\na\n```\n```\nb\n```", {"python"}).value(), "a\n");  // tagged preferred
  EXPECT_EQ(extract_code_block("```\nonly\n```", {"python"}).value(), "only\n");
  EXPECT_FALSE(extract_code_block("```cpp\nint x;\n```", {"python"}).has_value());
  EXPECT_FALSE(extract_code_block("```python\nnever closed", {"python"}).has_value());
  auto r = code_rewards({CodeJob{"no code here", kAddTests}, CodeJob{"<think>```sh\necho 3\n```", kAddTests},
                         CodeJob{"<think>x</think>```sh\nread a b; echo $((a+b))\n```", kAddTests}},
                        opt_);
  EXPECT_EQ(r[0].verdict, Verdict::Unparsable);
  EXPECT_EQ(r[1].verdict, Verdict::Unparsable);
  EXPECT_EQ(r[2].verdict, Verdict::Correct) << r[2].detail;
}

TEST_F(RewardsCode, TestsFromJson) {
  auto t = code_tests_from_json(json::parse(R"({"tests":[{"input":"1","expected_output":"2"},{"output":"x"}]})"));
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].expected_output, "2");
  EXPECT_EQ(t[1].input, "");
  EXPECT_THROW(code_tests_from_json(json::parse(R"({"tests":[{"input":"1"}]})")), Error);
  EXPECT_THROW(code_tests_from_json(json::parse(R"({"tests":"nope"})")), Error);
}

TEST_F(RewardsCode, ConfigurationErrorsThrow) {
  opt_.run_command = {"temper-no-such-interpreter"};
  EXPECT_THROW(run1("echo ok"), Error);
}

TEST_F(RewardsCode, ConcurrentJobsAllScoredRight) {
  std::vector<CodeJob> jobs;
  for (int i = 0; i < 8; ++i) {
    // Every job prints its own number after a short sleep; odd jobs are wrong.
    std::string script = "sleep 0.3\necho " + std::to_string(i % 2 ? i + 100 : i);
    jobs.push_back({"```sh\n" + script + "\n```", {{"", std::to_string(i) + "\n"}}});
  }
  auto res = code_rewards(jobs, opt_);
  ASSERT_EQ(res.size(), 8u);  // (no timing asserted: that 2 workers overlap is no claim for a loaded machine)
  for (int i = 0; i < 8; ++i) EXPECT_EQ(res[i].reward, i % 2 ? 0.0 : 1.0) << i << ": " << res[i].detail;
}

TEST_F(RewardsCode, InfiniteLoopIsKilledAtTheDeadline) {
  RewardResult r = contained("while :; do :; done");
  EXPECT_NE(r.detail.find("timeout"), std::string::npos) << r.detail;
}

TEST_F(RewardsCode, IgnoringSigtermDoesNotHelp) {
  contained("trap '' TERM INT HUP\n(trap '' TERM; while :; do sleep 1; done) &\nwhile :; do sleep 1; done");
}

TEST_F(RewardsCode, ForkBombIsContained) {
  // The bomb grows while the main shell stays alive until the deadline.
  // It ends at the deadline, or earlier when the main shell itself cannot fork.
  contained("b() { b | b & }\nb\nwhile :; do sleep 1; done");
  bool alive = true;  // every bomb process runs "sh <root_>/.../main.sh"
  for (int i = 0; i < 1000 && alive; ++i) {  // SIGKILL delivery is asynchronous: allow 10 s
    alive = marker_alive(root_);
    if (alive) usleep(10000);
  }
  EXPECT_FALSE(alive) << "fork bomb processes survived the run";
}

TEST_F(RewardsCode, MemoryHogFails) {
  contained("x=0123456789abcdef\nwhile :; do x=\"$x$x\"; done");
}

TEST_F(RewardsCode, HugeOutputIsCappedAndFails) {
  SandboxDir job(root_);
  ExecResult r = sandbox_exec({"sh", "-c", "while :; do echo aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; done"}, "", job, [] {
    SandboxLimits l;
    l.output_cap_bytes = 10000;
    l.wall_timeout_s = 300;  // never reached: the cap ends it (no timing asserted)
    return l;
  }());
  EXPECT_TRUE(r.output_truncated);
  EXPECT_FALSE(r.timed_out) << "it ran to the deadline instead of being stopped at the output cap";
  EXPECT_EQ(r.out.size(), 10000u);
  contained("while :; do echo aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; done");
}

TEST_F(RewardsCode, CannotLeaveFilesOutsideItsDirectory) {
  char cwd[4096];
  ASSERT_NE(getcwd(cwd, sizeof cwd), nullptr);
  const std::string leak = "temper_sandbox_leak_" + std::to_string(getpid());
  std::string script = "touch " + leak + "\n" + "echo x > ../" + leak + "\n" + "(cd .. && touch " + leak + "2)\n";
  script += "touch '" + std::string(cwd) + "/" + leak + "3'\n";  // absolute path: not in the program's view
  contained(script + "echo not-ok");
  for (const std::string& name : {leak, leak + "2", leak + "3"}) {
    struct stat st {};
    EXPECT_NE(stat((std::string(cwd) + "/" + name).c_str(), &st), 0) << "leaked into the trainer's CWD: " << name;
    EXPECT_NE(stat((root_ + "/" + name).c_str(), &st), 0) << "leaked next to the work dir: " << name;
  }
}

TEST_F(RewardsCode, DaemonisedChildIsKilled) {
  const std::string marker = "47." + std::to_string(getpid());  // sleep's argument, unique per run
  ASSERT_FALSE(marker_alive(marker));
  // setsid(1) may be missing in minimal images; a subshell + '&' still escapes the wait.
  std::string script = "if command -v setsid >/dev/null; then setsid sleep " + marker + " </dev/null >/dev/null 2>&1 &\n" +
                       "else (sleep " + marker + " </dev/null >/dev/null 2>&1 &) ; fi\necho started";
  contained(script);
  bool alive = true;
  for (int i = 0; i < 1000 && alive; ++i) {  // SIGKILL delivery is asynchronous: allow 10 s on a loaded machine
    alive = marker_alive(marker);
    if (alive) usleep(10000);
  }
  EXPECT_FALSE(alive) << "a daemonised child outlived the sandbox";
}

TEST_F(RewardsCode, NetworkNamespaceWhenPermitted) {
  RewardResult r = run1("n=$(grep -c : /proc/net/dev)\necho $n", {{"", "1\n"}});  // only "lo" in a new netns
  if (r.detail.find("net") == std::string::npos || r.detail.find("refused") != std::string::npos)
    GTEST_SKIP() << "network namespace not permitted here: " << r.detail;
  EXPECT_EQ(r.reward, 1.0) << r.detail;
}

TEST_F(RewardsCode, PythonWhenAvailable) {
  if (sandbox_which("python3").empty()) GTEST_SKIP() << "python3 not found";
  opt_.run_command = {"python3"};
  opt_.source_name = "main.py";
  opt_.fence_tags = {"python", "py"};
  opt_.memory_bytes = 512LL << 20;
  auto r = code_rewards({CodeJob{"```python\na, b = map(int, input().split())\nprint(a * b)\n```", {{"3 4", "12"}}},
                         CodeJob{"```python\nx = bytearray(10**10)\nprint('ok')\n```", {{"", "ok"}}}},
                        opt_);
  EXPECT_EQ(r[0].reward, 1.0) << r[0].detail;
  EXPECT_EQ(r[1].reward, 0.0) << r[1].detail;
}

TEST_F(RewardsCode, RandomBytesNeverThrow) {
  std::mt19937 rng(5);
  std::vector<CodeJob> jobs;
  for (int i = 0; i < 6; ++i) {
    std::string s(rng() % 200, '\0');
    for (auto& c : s) c = static_cast<char>(rng() & 0xff);
    if (i % 2) s = "```sh\n" + s + "\n```";  // random bytes executed as a script
    jobs.push_back({s, {{s, "x"}}});
  }
  std::vector<RewardResult> r;
  ASSERT_NO_THROW(r = code_rewards(jobs, opt_));
  for (const auto& x : r) EXPECT_EQ(x.reward, 0.0) << x.detail;
}

}  // namespace
