// Tests of test-code rewards (HumanEval/MBPP style, code_harness.h): per-test
// pass/fail, the program/setup/tests order, and the ways a program could pass
// without passing its tests (exiting early, printing result lines, reading the
// tests, a hanging test, a lingering thread). Needs /usr/bin/python3.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "rl/rewards/code_harness.h"
#include "rl/rewards/reward.h"

using namespace temper;
using nlohmann::json;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// True while a process has `marker` in its command line.
bool process_alive(const std::string& marker) {
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::ifstream f(e.path() / "cmdline", std::ios::binary);
    std::string cmd((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (cmd.find(marker) != std::string::npos) return true;
  }
  return false;
}

class CodeHarness : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "/usr/bin/python3 not found";
    char tmpl[] = "/tmp/temper-harness-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    chmod(root_.c_str(), 0755);
    opt_.run_command = {"python3"};
    opt_.wall_timeout_s = 20;
    opt_.cpu_seconds = 10;
    opt_.workers = 2;
    opt_.tmp_root = root_;
  }
  void TearDown() override {
    if (root_.empty()) return;
    EXPECT_TRUE(std::filesystem::is_empty(root_)) << "sandbox directories left behind in " << root_;
    std::filesystem::remove_all(root_);
  }
  RewardResult run1(const std::string& code, const CodeTestCode& tc) {
    return code_rewards({CodeJob{"```python\n" + code + "\n```", {}, tc}}, opt_).at(0);
  }
  std::string root_;
  SandboxOptions opt_;
};

const CodeTestCode kAdd = {"", "", {"assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4"}};

TEST_F(CodeHarness, PerTestResultsAndAllOrNothing) {
  RewardResult good = run1("def add(a, b):\n    return a + b", kAdd);
  EXPECT_EQ(good.verdict, Verdict::Correct) << good.detail;
  EXPECT_DOUBLE_EQ(good.reward, 1.0);
  RewardResult part = run1("def add(a, b):\n    return a + b if a >= 0 else 7", kAdd);  // test 1 fails
  EXPECT_EQ(part.verdict, Verdict::Wrong);
  EXPECT_NEAR(part.reward, 2.0 / 3.0, 1e-12) << part.detail;
  EXPECT_NE(part.detail.find("passed 2/3; test 1: AssertionError"), std::string::npos) << part.detail;
  opt_.all_or_nothing = true;
  EXPECT_EQ(run1("def add(a, b):\n    return a + b if a >= 0 else 7", kAdd).reward, 0.0);
  EXPECT_EQ(run1("def add(a, b):\n    return a + b", kAdd).reward, 1.0);
}

TEST_F(CodeHarness, ProgramErrorsFailEveryTest) {
  for (const char* code : {"def add(a, b) return a + b", "raise ValueError('boom')", "x = input()"}) {
    RewardResult r = run1(code, kAdd);
    EXPECT_EQ(r.verdict, Verdict::Wrong) << code;
    EXPECT_EQ(r.reward, 0.0) << code;
    EXPECT_NE(r.detail.find("program raised"), std::string::npos) << code << " -> " << r.detail;
  }
}

TEST_F(CodeHarness, PrefixSetupAndTestsRunInOrderInOneNamespace) {
  // HumanEval: the prompt is the prefix and the completion continues it.
  CodeTestCode he{"def double(x):\n    \"\"\"Twice x.\"\"\"\n", "", {"def check(f):\n    assert f(4) == 8\n\ncheck(double)\n"}};
  EXPECT_EQ(run1("    return 2 * x", he).verdict, Verdict::Correct);
  EXPECT_EQ(run1("def double(x):\n    return x + x", he).verdict, Verdict::Correct);  // whole function again
  EXPECT_EQ(run1("    pass", he).verdict, Verdict::Wrong);
  // MBPP: the setup uses a class the program defines, so it runs after the program.
  CodeTestCode mb{"", "box = Box(3)", {"assert size(box) == 3"}};
  RewardResult r = run1("class Box:\n    def __init__(self, n):\n        self.n = n\ndef size(b):\n    return b.n", mb);
  EXPECT_EQ(r.verdict, Verdict::Correct) << r.detail;
  // A __main__ block does not run (it would block on input or print noise).
  RewardResult m = run1("def add(a, b):\n    return a + b\nif __name__ == '__main__':\n    input()\n    raise SystemExit(1)",
                        kAdd);
  EXPECT_EQ(m.verdict, Verdict::Correct) << m.detail;
}

TEST_F(CodeHarness, EndingTheRunEarlyOrForgingResultsFails) {
  const std::string add = "def add(a, b):\n    return a - b\n";
  for (const std::string tail :
       {"import sys\nsys.exit(0)", "exit(0)", "import os\nos._exit(0)", "raise SystemExit(0)",
        "import sys, atexit\natexit.register(lambda: None)\nsys.stdout.write('ok\\ntest 0 ok\\ntest 1 ok\\ntest 2 ok\\ndone\\n')\n"
        "import os\nos._exit(0)",
        "import os\nos.kill(os.getpid(), 9)"}) {
    RewardResult r = run1(add + tail, kAdd);
    EXPECT_EQ(r.verdict, Verdict::Wrong) << tail << " -> " << r.detail;
    EXPECT_EQ(r.reward, 0.0) << tail << " -> " << r.detail;
  }
  // A test that ends the run: the tests before it count, the rest fail.
  CodeTestCode t{"", "", {"assert f() == 1", "import os\nos._exit(0)", "assert f() == 1"}};
  RewardResult r = run1("def f():\n    return 1", t);
  EXPECT_NEAR(r.reward, 1.0 / 3.0, 1e-12) << r.detail;
  EXPECT_NE(r.detail.find("test 1: no result"), std::string::npos) << r.detail;
}

TEST_F(CodeHarness, TestsAreHiddenFromTheProgram) {
  // By the time the program runs, tests.json and harness.py are gone from its work dir.
  RewardResult r = run1("import os\nassert not os.path.exists('tests.json')\nassert not os.path.exists('harness.py')\n"
                        "def add(a, b):\n    return a + b",
                        kAdd);
  EXPECT_EQ(r.verdict, Verdict::Correct) << r.detail;
}

TEST_F(CodeHarness, HangingTestAndLingeringThreadAreBounded) {
  opt_.wall_timeout_s = 2;
  CodeTestCode t{"", "", {"assert f() == 1", "while True: pass", "assert f() == 1"}};
  double t0 = now_s();
  RewardResult r = run1("def f():\n    return 1", t);
  EXPECT_LT(now_s() - t0, 30.0);  // generous for a loaded machine; the hang alone would hold it for ever
  EXPECT_NEAR(r.reward, 1.0 / 3.0, 1e-12) << r.detail;
  EXPECT_NE(r.detail.find("test 1: timeout"), std::string::npos) << r.detail;
  // A non-daemon thread that never ends does not hold the run past its results.
  t0 = now_s();
  RewardResult th = run1("import threading, time\nthreading.Thread(target=lambda: time.sleep(60)).start()\n"
                         "def add(a, b):\n    return a + b",
                         kAdd);
  EXPECT_EQ(th.verdict, Verdict::Correct) << th.detail;
  EXPECT_LT(now_s() - t0, 30.0);  // generous for a loaded machine, well below the 60 s it would otherwise hold
}

TEST_F(CodeHarness, BatchedJobsAreIsolatedFromEachOther) {
  opt_.test_code_batch = 8;
  opt_.wall_timeout_s = 2;
  const std::string add = "def add(a, b):\n    return a + b\n";
  // Each job in its own process: patched builtins, a hang, an early exit, forged
  // output, a setsid daemon in one job change nothing for the next ones.
  std::vector<std::string> codes = {
      add + "import builtins\nbuiltins.abs = lambda x: 42\nbuiltins.add = lambda a, b: 3",
      add + "assert abs(-1) == 1",
      "def add(a, b):\n    while True: pass",
      add + "import os\nos.write(1, b'job 4 test 0 ok\\n')\nprint('job 5 test 0 ok')\nos._exit(0)",
      "def add(a, b):\n    return 0",
      "import os, time\nif os.fork() == 0:\n    os.setsid()\n    os.execv('/bin/sleep', ['sleep', '30.4711'])\n"
      "time.sleep(0.3)\n" + add,
      add + "import os\nfor p in os.listdir('/proc'):\n    try:\n        c = open('/proc/%s/cmdline' % p).read()\n"
            "    except OSError:\n        continue\n    assert '30.4711' not in c, 'the daemon of the job before is alive'\n",
      add};
  std::vector<CodeJob> jobs;
  for (auto& c : codes) jobs.push_back(CodeJob{"```python\n" + c + "\n```", {}, kAdd});
  jobs.insert(jobs.begin() + 2, CodeJob{"no code block", {}, kAdd});  // Unparsable, not sent
  double t0 = now_s();
  auto r = code_rewards(jobs, opt_);
  EXPECT_LT(now_s() - t0, 20.0);
  const std::vector<Verdict> want = {Verdict::Correct, Verdict::Correct, Verdict::Unparsable, Verdict::Wrong,
                                     Verdict::Wrong,   Verdict::Wrong,   Verdict::Correct,    Verdict::Correct,
                                     Verdict::Correct};
  // Without a PID namespace the daemon lives until the end of the run (the sandbox
  // then finds it by its marker), so job 7 sees it.
  const bool pid_ns = r[7].detail.find("pid") != std::string::npos;
  for (size_t i = 0; i < want.size(); ++i)
    if (i != 7 || pid_ns) EXPECT_EQ(r[i].verdict, want[i]) << i << ": " << r[i].detail;
  EXPECT_FALSE(process_alive("30.4711"));
  EXPECT_NE(r[3].detail.find("timeout after 2 s"), std::string::npos) << r[3].detail;
  EXPECT_NE(r[4].detail.find("no result (the program ended: exit 0)"), std::string::npos) << r[4].detail;
  EXPECT_NE(r[0].detail.find("(batch of 8)"), std::string::npos) << r[0].detail;
}

TEST(CodeHarnessParse, OnlyLinesWithTheNonceCount) {
  const std::string out = "noise job 0 test 0 ok\nabc job 0 test 1 ok\n\nabc job 0 test 0 fail AssertionError: x\n"
                          "abc job 0 test 9 ok\nabc job 7 test 0 ok\nxabc job 0 test 2 ok\nabc job 0 done\n"
                          "abc job 1 program NameError: y\nabc job 1 ended exit 0\n";
  auto h = parse_code_harness_output(out, "abc", {3, 2});
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0].passed, (std::vector<bool>{false, true, false}));
  EXPECT_EQ(h[0].failure[0], "AssertionError: x");
  EXPECT_TRUE(h[0].done);
  EXPECT_FALSE(h[1].done);
  EXPECT_EQ(h[1].program_error, "NameError: y");
  EXPECT_EQ(h[1].ended, "exit 0");
  EXPECT_FALSE(parse_code_harness_output(out, "", {3, 2})[0].done);
  EXPECT_EQ(code_harness_nonce().size(), 32u);
  EXPECT_NE(code_harness_nonce(), code_harness_nonce());
  EXPECT_EQ(code_harness_program({"def f():\n    \"\"\"doc\"\"\"", "", {}}, "    return 1\n"),
            "def f():\n    \"\"\"doc\"\"\"\n    return 1\n");
}

TEST(CodeHarnessParse, TestCodeFromJson) {
  auto tc = code_test_code_from_json(json::parse(R"({"test_code":{"prefix":"p","setup":"s","tests":["a","b"]}})"));
  EXPECT_EQ(tc.prefix, "p");
  EXPECT_EQ(tc.setup, "s");
  EXPECT_EQ(tc.tests.size(), 2u);
  EXPECT_EQ(code_test_code_from_json(json::parse(R"({"test_code":{"tests":["a"]}})")).prefix, "");
  for (const char* bad : {R"({"test_code":{"tests":[]}})", R"({"test_code":{"tests":[1]}})", R"({"test_code":[]})",
                          R"({"test_code":{"tests":["a"],"setup":3}})", R"({"tests":[]})"})
    EXPECT_THROW(code_test_code_from_json(json::parse(bad)), Error) << bad;
}

}  // namespace
