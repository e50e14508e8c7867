// Hostile programs against the code sandbox (issue 17, findings 1-6): each must gain
// no reward and leave nothing behind. /proc snooping for the run's prompts, sabotage
// of a concurrent sandbox, files in /tmp and /dev/shm, memory spread over children,
// an empty expected output, a double fork + execve escape; plus what a program sees
// (nothing of the run), a compile step, and Python. Tests that need namespaces or
// root skip, saying why, where the machine does not allow them.
#include <gtest/gtest.h>

#include <dirent.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/error.h"
#include "rl/rewards/code_sandbox.h"
#include "rl/rewards/reward.h"
#include "rl/rewards/sandbox_cgroup.h"

using namespace temper;
namespace fs = std::filesystem;

namespace {

// True while a live process has `marker` in its command line.
bool marker_alive(const std::string& marker) {
  bool found = false;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] < '0' || name[0] > '9') continue;
    std::ifstream f(e.path() / "cmdline", std::ios::binary);
    std::string cmd((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (cmd.find(marker) != std::string::npos) {
      std::ifstream st(e.path() / "stat");
      std::string pid, comm, state;
      st >> pid >> comm >> state;
      if (state != "Z") found = true;  // a zombie waiting for its parent is dead already
    }
  }
  return found;
}

bool eventually_dead(const std::string& marker) {
  for (int i = 0; i < 1000; ++i) {  // SIGKILL delivery is asynchronous: allow 10 s on a loaded machine
    if (!marker_alive(marker)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

class SandboxIsolation : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("temper_isolation_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "sbx");
    fs::permissions(dir_, fs::perms(0755));
    fs::permissions(dir_ / "sbx", fs::perms(0755));
    opt_.run_command = {"sh"};
    opt_.source_name = "main.sh";
    opt_.fence_tags = {"sh"};
    opt_.wall_timeout_s = 30;  // generous: a loaded CI machine must not turn a pass into a fail
    opt_.cpu_seconds = 20;
    opt_.memory_bytes = 512LL << 20;
    opt_.workers = 2;
    opt_.tmp_root = (dir_ / "sbx").string();
  }
  void TearDown() override {
    size_t left = 0;
    for (auto& e : fs::directory_iterator(dir_ / "sbx")) left += e.path().filename().string().rfind("temper-sbx-", 0) == 0;
    EXPECT_EQ(left, 0u) << "sandbox folders were left behind";
    // nor cgroups: each run's cgroup ("temper-sbx-<this pid>-N") is removed with the run
    const std::string cg = sandbox_cgroup_summary(), under = " under ";
    if (const size_t at = cg.find(under); at != std::string::npos) {
      const std::string mine = "temper-sbx-" + std::to_string(getpid()) + "-";
      std::error_code ec;
      for (auto& e : fs::directory_iterator(cg.substr(at + under.size()), ec))
        EXPECT_NE(e.path().filename().string().rfind(mine, 0), 0u) << e.path() << ": a cgroup was left behind";
    }
    fs::remove_all(dir_);
  }
  // Skips the test where programs cannot be isolated (no namespaces here).
  bool isolation_available() {
    const std::string why = sandbox_isolation_problem();
    if (!why.empty()) {
      skip_ = "programs cannot be isolated on this machine: " + why;
      return false;
    }
    return true;
  }
  RewardResult run1(const std::string& script, std::vector<CodeTest> tests) {
    return code_rewards({CodeJob{"```sh\n" + script + "\n```\n", tests}}, opt_).at(0);
  }
  fs::path dir_;
  SandboxOptions opt_;
  std::string skip_;
};

#define REQUIRE_ISOLATION() \
  if (!isolation_available()) GTEST_SKIP() << skip_

// Finding 1: a program that solved nothing read other processes' command lines under
// /proc, found the deck, opened the prompts file it names and printed the answer.
TEST_F(SandboxIsolation, ProcSnoopingFindsNothingOfTheRun) {
  REQUIRE_ISOLATION();
  const fs::path secret = dir_ / "secret_prompts.jsonl";
  std::ofstream(secret) << "the-expected-answer-17\n";
  fs::permissions(secret, fs::perms(0644));
  // A stand-in for the trainer: its command line names the file.
  pid_t decoy = fork();
  if (decoy == 0) {
    // Its own process group, killed whole at the end, and no hold on the test's output: an
    // orphaned `sleep` would otherwise outlive the test and keep ctest waiting for 30 s.
    setpgid(0, 0);
    if (FILE* null = freopen("/dev/null", "w", stdout)) (void)null;
    if (FILE* null = freopen("/dev/null", "w", stderr)) (void)null;
    // (not "sleep 30" alone: dash would exec it, and the command line would lose the file)
    execl("/bin/sh", "sh", "-c", "sleep 30; exit 0", "temper", secret.c_str(), nullptr);
    _exit(127);
  }
  ASSERT_GT(decoy, 0);
  // Wait (no fixed sleep) until the decoy's command line shows the file, as the trainer's would.
  const fs::path decoy_cmdline = fs::path("/proc") / std::to_string(decoy) / "cmdline";
  bool shown = false;
  for (int i = 0; i < 3000 && !shown; ++i) {
    std::ifstream f(decoy_cmdline, std::ios::binary);
    shown = std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>()).find("secret_prompts") !=
            std::string::npos;
    if (!shown) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(shown) << "the decoy did not start within 30 s";
  const std::string cheat =
      "{ for f in /proc/[0-9]*/cmdline; do tr '\\000' '\\n' < \"$f\"; done 2>/dev/null | grep secret_prompts |"
      " while read p; do cat \"$p\"; done 2>/dev/null\n"
      "cat " + secret.string() + " 2>/dev/null; } | head -n 1\n";
  RewardResult r = run1(cheat, {{"", "the-expected-answer-17\n"}});
  // The control: the same program without the isolation (as on the main of issue 17) does
  // find the answer, so the 0 above is the isolation's doing, not a broken cheat.
  opt_.allow_unisolated = opt_.force_unisolated = true;
  RewardResult bare = run1(cheat, {{"", "the-expected-answer-17\n"}});
  kill(-decoy, SIGKILL);
  kill(decoy, SIGKILL);
  waitpid(decoy, nullptr, 0);
  EXPECT_EQ(r.reward, 0.0) << "the program read the prompts of the run: " << r.detail;
  EXPECT_NE(r.detail.find("mnt+pid"), std::string::npos) << r.detail;
  EXPECT_EQ(bare.reward, 1.0) << "the cheat does not work even unisolated, so it proves nothing: " << bare.detail;
}

// What a program sees: nothing of the run (data, decks, other sandboxes' folders, host
// /tmp and /dev/shm, other processes), only its own processes in /proc.
TEST_F(SandboxIsolation, ProgramSeesNothingOfTheRun) {
  REQUIRE_ISOLATION();
  const std::string host_tmp = "/tmp/temper_isolation_marker_" + std::to_string(getpid());
  std::ofstream(host_tmp) << "x";
  const std::string script =
      "seen=''\n"
      "for p in '" + dir_.string() + "' '" + host_tmp + "' /root /home /work/wt /etc/shadow /sys/fs/cgroup; do\n"
      "  [ -e \"$p\" ] && seen=\"$seen $p\"\n"
      "done\n"
      "n=$(ls /proc | grep -c '^[0-9]')\n"
      "[ \"$n\" -le 4 ] || seen=\"$seen procs:$n\"\n"
      "[ \"$(id -u)\" -ne 0 ] || seen=\"$seen root\"\n"
      "echo hi > /usr/x 2>/dev/null && seen=\"$seen usr-writable\"\n"
      "echo hi > /x 2>/dev/null && seen=\"$seen root-writable\"\n"
      "env | grep -q TEMPER && seen=\"$seen env\"\n"
      "[ -z \"$seen\" ] && echo hidden || echo \"seen:$seen\"\n";
  RewardResult r = run1(script, {{"", "hidden\n"}});
  fs::remove(host_tmp);
  EXPECT_EQ(r.reward, 1.0) << r.detail;
}

// Finding 2: concurrent sandboxes ran as one user in /tmp; one overwrote another's
// program (and could kill it), turning a correct solution's 1.0 into 0.167.
TEST_F(SandboxIsolation, SabotageOfAConcurrentSandboxFails) {
  REQUIRE_ISOLATION();
  const std::string victim = "sleep 1\nread a b\necho $((a + b))";
  const std::string saboteur =
      "for d in /tmp/temper-sbx-* '" + opt_.tmp_root + "'/temper-sbx-*; do\n"
      "  for f in \"$d\"/w/* \"$d\"/root/work/*; do printf 'echo 0\\n' > \"$f\"; done\n"
      "done 2>/dev/null\n"
      "kill -9 -1 2>/dev/null\n"
      "echo done";
  auto r = code_rewards({CodeJob{"```sh\n" + victim + "\n```", {{"1 2\n", "3\n"}, {"2 2\n", "4\n"}}},
                         CodeJob{"```sh\n" + saboteur + "\n```", {{"", "done\n"}, {"", "done\n"}}}},
                        opt_);
  EXPECT_EQ(r[0].reward, 1.0) << "the saboteur reached the victim: " << r[0].detail;
}

// Finding 3: files written to /tmp and /dev/shm outlived the job (1 GB in /dev/shm).
TEST_F(SandboxIsolation, FilesInTmpAndDevShmVanishAndAreCapped) {
  REQUIRE_ISOLATION();
  const std::string tag = "temper_leak_" + std::to_string(getpid());
  const std::string script =
      "echo x > /tmp/" + tag + "\necho x > /dev/shm/" + tag + "\necho x > /work/" + tag + "\n"
      "i=0; while [ $i -lt 300 ]; do : > /tmp/" + tag + "_$i; i=$((i + 1)); done\n"
      "head -c 200000000 /dev/zero > /dev/shm/" + tag + "_big 2>/dev/null\n"
      "s=$(wc -c < /dev/shm/" + tag + "_big)\n"
      "[ \"$s\" -lt 100000000 ] && echo capped || echo \"not capped: $s\"";
  RewardResult r = run1(script, {{"", "capped\n"}});
  EXPECT_EQ(r.reward, 1.0) << r.detail;  // 200 MB did not fit the 64 MiB /dev/shm
  for (const std::string& p : {"/tmp/" + tag, "/dev/shm/" + tag, "/dev/shm/" + tag + "_big", "/tmp/" + tag + "_0"})
    EXPECT_FALSE(fs::exists(p)) << p << " outlived the sandbox";
}

// Finding 4: the memory limit was per process: four children held 1.5 GB together.
TEST_F(SandboxIsolation, MemoryCapCoversTheWholeTree) {
  REQUIRE_ISOLATION();
  if (sandbox_which("python3").empty()) GTEST_SKIP() << "python3 not found";
  opt_.run_command = {"python3"};
  opt_.source_name = "main.py";
  opt_.fence_tags = {"python"};
  opt_.memory_bytes = 400LL << 20;  // the tree; each child alone stays well below
  // The children hold their memory together: each reports when it has allocated (and lets go
  // of the report pipe), and only when all four have does the parent let them print. A child
  // killed first ends the reports early (end of file): no timing in the test.
  const std::string program =
      "import os\n"
      "r1, w1 = os.pipe()\n"
      "r2, w2 = os.pipe()\n"
      "for i in range(4):\n"
      "    if os.fork() == 0:\n"
      "        os.close(r1); os.close(w2)\n"
      "        b = b'x' * (150 << 20)\n"
      "        os.write(w1, b'.'); os.close(w1)\n"
      "        os.read(r2, 1)\n"
      "        os.write(1, b'held\\n')\n"
      "        os._exit(0)\n"
      "os.close(w1); os.close(r2)\n"
      "got = b''\n"
      "while len(got) < 4:\n"
      "    c = os.read(r1, 4)\n"
      "    if not c: break\n"
      "    got += c\n"
      "if len(got) == 4: os.close(w2)\n"
      "else: os.kill(0, 9)\n"
      "for i in range(4): os.wait()\n";
  auto r = code_rewards({CodeJob{"```python\n" + program + "```", {{"", "held\nheld\nheld\nheld\n"}}}}, opt_).at(0);
  EXPECT_EQ(r.reward, 0.0) << "600 MB were held under a 400 MB cap: " << r.detail;
  // One child of 150 MB fits (under a cgroup; the rlimit fallback divides the cap among max_processes).
  if (r.detail.find("cgroup") == std::string::npos) return;
  const std::string one = "b = b'x' * (150 << 20)\nprint('held')\n";
  auto ok = code_rewards({CodeJob{"```python\n" + one + "```", {{"", "held\n"}}}}, opt_).at(0);
  EXPECT_EQ(ok.reward, 1.0) << ok.detail;
}

// Finding 5: an empty expected output gave reward 1 to any program.
TEST_F(SandboxIsolation, EmptyExpectedOutputIsRefused) {
  for (const char* empty : {"", "\n", "  \n"})
    EXPECT_THROW(run1("exit 0", {{"", "3\n"}, {"", empty}}), Error) << "'" << empty << "'";
}

// A double fork + execve (clean environment, another folder, optionally a new session) of
// `sleep <marker>`; the program prints "started" once the escapee shows in its /proc (no
// fixed sleep: on a loaded machine the escapee may take long to start). The pattern is
// written so that grep's own command line does not match it.
std::string escape_script(const std::string& marker, bool setsid) {
  const std::string pattern = marker.substr(0, 1) + "[" + marker.substr(1, 1) + "]" + marker.substr(2);
  return "(cd / && (exec env -i " + std::string(setsid ? "setsid " : "") + "/bin/sleep " + marker +
         " </dev/null >/dev/null 2>&1 &) &)\n"
         "i=0\n"
         "until grep -q '" + pattern + "' /proc/[0-9]*/cmdline 2>/dev/null; do\n"
         "  i=$((i + 1)); [ $i -gt 2000 ] && exit 1; sleep 0.01\n"
         "done\n"
         "echo started";
}

// Finding 6: without namespaces, a double fork followed by execve (clean environment,
// another folder) escaped and ran after the sandbox ended.
TEST_F(SandboxIsolation, DoubleForkExecveEscapeDiesUnisolated) {
  if (geteuid() != 0) GTEST_SKIP() << "a uid of its own per job needs root; unprivileged unisolated runs are "
                                      "documented as unable to catch this";
  opt_.allow_unisolated = true;
  opt_.force_unisolated = true;
  const std::string marker = "48." + std::to_string(getpid());
  RewardResult r = run1(escape_script(marker, false), {{"", "started\n"}});
  EXPECT_NE(r.detail.find("unisolated"), std::string::npos) << r.detail;
  EXPECT_EQ(r.reward, 1.0) << "the escapee was not seen running, so this proves nothing: " << r.detail;
  EXPECT_TRUE(eventually_dead(marker)) << "an escaped process outlived the unisolated sandbox";
}

TEST_F(SandboxIsolation, DoubleForkExecveEscapeDiesIsolated) {
  REQUIRE_ISOLATION();
  const std::string marker = "49." + std::to_string(getpid());
  RewardResult r = run1(escape_script(marker, true), {{"", "started\n"}});
  EXPECT_EQ(r.reward, 1.0) << "the escapee was not seen running, so this proves nothing: " << r.detail;
  EXPECT_TRUE(eventually_dead(marker)) << "an escaped process outlived the sandbox: " << r.detail;
}

TEST_F(SandboxIsolation, UnisolatedRunsNeedPermission) {
  opt_.force_unisolated = true;
  try {
    run1("echo 3", {{"", "3\n"}});
    ADD_FAILURE() << "an unisolated run was not refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not allowed"), std::string::npos) << e.what();
  }
}

// Where namespaces are unavailable (here: a seccomp filter like a container's refuses
// them), code rewards refuse to run unless unisolated runs are allowed, and then run so.
// The check runs in a fresh process (this binary again, filtered), since the answer
// is found once per process.
TEST_F(SandboxIsolation, RefusedWhereNamespacesAreUnavailableUnlessAllowed) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
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
      _exit(77);
    setenv("TEMPER_TEST_NO_NAMESPACES", "1", 1);
    execl("/proc/self/exe", "test_sandbox_isolation", "--gtest_filter=SandboxIsolation.WithoutNamespaces", nullptr);
    _exit(78);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77) GTEST_SKIP() << "cannot install a seccomp filter here";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status << " (see the output above)";
}

// Runs only inside the filtered process above.
TEST_F(SandboxIsolation, WithoutNamespaces) {
  if (!getenv("TEMPER_TEST_NO_NAMESPACES")) GTEST_SKIP() << "runs inside RefusedWhereNamespacesAreUnavailableUnlessAllowed";
  EXPECT_FALSE(sandbox_isolation_problem().empty());
  try {
    run1("echo 3", {{"", "3\n"}});
    ADD_FAILURE() << "code was scored without isolation although that was not allowed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rl.code_unisolated = true"), std::string::npos) << e.what();
  }
  opt_.allow_unisolated = true;
  RewardResult r = run1("read a b\necho $((a + b))", {{"1 2\n", "3\n"}});
  EXPECT_EQ(r.reward, 1.0) << r.detail;
  EXPECT_NE(r.detail.find("unisolated"), std::string::npos) << r.detail;
}

// A compile step writes the job's folder; the runs see a copy of it in /work.
TEST_F(SandboxIsolation, CompileStepOutputReachesTheRuns) {
  REQUIRE_ISOLATION();
  opt_.compile_command = {"sh", "-c", "cp {src} prog && echo built > stamp"};
  opt_.run_command = {"sh", "prog"};
  RewardResult r = run1("read a b\necho $((a * b))$(cat stamp)", {{"3 4\n", "12built\n"}, {"2 5\n", "10built\n"}});
  EXPECT_EQ(r.reward, 1.0) << r.detail;
}

// Python 3 keeps working inside (the bench helper's HumanEval/MBPP tests run through here).
TEST_F(SandboxIsolation, PythonRunsInside) {
  REQUIRE_ISOLATION();
  if (sandbox_which("python3").empty()) GTEST_SKIP() << "python3 not found";
  opt_.run_command = {"python3"};
  opt_.source_name = "main.py";
  opt_.fence_tags = {"python"};
  const std::string program =
      "import json, re, math, collections, itertools, tempfile, os\n"
      "a, b = map(int, input().split())\n"
      "with tempfile.NamedTemporaryFile('w', delete=False) as f: f.write('x')\n"
      "print(math.gcd(a, b), os.getcwd())\n";
  auto r = code_rewards({CodeJob{"```python\n" + program + "```", {{"12 18\n", "6 /work\n"}}}}, opt_).at(0);
  EXPECT_EQ(r.reward, 1.0) << r.detail;
}

}  // namespace
