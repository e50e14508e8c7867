// End-to-end tests of the temper executable on the toy phase: bad input gives
// one clear message and exit 2; checkpoints resume bit for bit; SIGUSR1 writes
// a checkpoint and exits with the requeue status 3; rerunning resumes.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <thread>

#include "unit/run_util.h"

using namespace temper_test;
namespace fs = std::filesystem;

namespace {

std::string toy_cmd(const fs::path& dir, const std::string& extra, int np = 0) {
  std::string launcher = np > 0 ? mpirun(np) : "";
  return launcher + temper_bin() + " " + std::string(TEMPER_SOURCE_DIR) + "/input/toy.deck --run.output_dir=" +
         dir.string() + " --log.every=1000 " + extra;
}

}  // namespace

TEST(RunToy, HelpListsEveryKeyAndExitsZero) {
  auto r = run_cmd(temper_bin() + " --help");
  EXPECT_EQ(r.status, 0);
  for (const char* key : {"--run.phase", "--model.n_kv_heads", "--parallel.dp_shard", "--data.seq_len", "--sft.lr",
                          "--rl.eps_high", "--checkpoint.keep_last", "--log.level", "--toy.sleep_ms"})
    EXPECT_NE(r.output.find(key), std::string::npos) << key;
}

TEST(RunToy, PrintDeckShowsResolvedValuesAndTheirOrigin) {
  std::string deck = std::string(TEMPER_SOURCE_DIR) + "/input/toy.deck";
  auto r = run_cmd(temper_bin() + " print-deck " + deck + " --toy.dim=5");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("dim = 5"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("override --toy.dim=5"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("toy.deck:8"), std::string::npos) << r.output;  // steps comes from the file
  r = run_cmd(temper_bin() + " print-deck " + deck + " --toy.dimm=5");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("did you mean 'toy.dim'?"), std::string::npos) << r.output;
}

TEST(RunToy, BadInputGivesOneMessageAndExit2) {
  auto dir = fresh_dir("bad");
  struct Case {
    std::string deck, expect;
  } cases[] = {
      {"[run]\nphase = toy\n[toy]\nstep = 3\n", "bad.deck:4: unknown key 'toy.step' (did you mean 'toy.steps'?)"},
      {"[run]\nphase = toy\n[toy]\nsteps = many\n", "toy.steps"},
      {"[run]\nphase = toy\n[toy]\ndim = -4\n", "toy.dim"},
      {"[run]\nphase = toy\n[nosuch]\nx = 1\n", "nosuch"},
      {"[run]\nphase = toy\nphase = sft\n", "duplicate"},
      {"", "empty"},
  };
  for (const auto& c : cases) {
    write_file(dir / "bad.deck", c.deck);
    auto r = run_cmd(temper_bin() + " " + (dir / "bad.deck").string());
    EXPECT_EQ(r.status, 2) << c.deck << "\n" << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << "expected '" << c.expect << "' in:\n" << r.output;
    EXPECT_EQ(r.output.find("terminate called"), std::string::npos) << r.output;
  }
  auto r = run_cmd(temper_bin() + " " + (dir / "missing.deck").string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("missing.deck"), std::string::npos) << r.output;
  r = run_cmd(toy_cmd(dir / "o", "--toy.lr=abc"));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("toy.lr"), std::string::npos) << r.output;
  r = run_cmd(toy_cmd(dir / "o", "--parallel.sp=2"));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("mesh"), std::string::npos) << r.output;
  r = run_cmd(toy_cmd(dir / "o", "--parallel.device_comm=nccl"));  // NCCL asked for on the cpu backend
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("parallel.device_comm = nccl needs run.backend = cuda"), std::string::npos) << r.output;
  r = run_cmd(toy_cmd(dir / "o", "--parallel.device_comm=gloo"));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("parallel.device_comm"), std::string::npos) << r.output;
  fs::remove_all(dir);
}

TEST(RunToy, ImpossibleMeshOnFourRanksIsOneCleanError) {
  auto dir = fresh_dir("mesh4");
  auto r = run_cmd(toy_cmd(dir, "--parallel.sp=3", 4));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("mesh: world size 4"), std::string::npos) << r.output;
  fs::remove_all(dir);
}

// Checkpoint at step 100, resume to 200 == straight 200 steps, on 1 and 2 ranks.
TEST(RunToy, RestartIsBitExact) {
  for (int np : {1, 2}) {
    auto a = fresh_dir("straight" + std::to_string(np)), b = fresh_dir("resumed" + std::to_string(np));
    auto r = run_cmd(toy_cmd(a, "--toy.steps=200 --checkpoint.resume=never", np));
    ASSERT_EQ(r.status, 0) << r.output;
    r = run_cmd(toy_cmd(b, "--toy.steps=100 --checkpoint.resume=never", np));
    ASSERT_EQ(r.status, 0) << r.output;
    r = run_cmd(toy_cmd(b, "--toy.steps=200 --checkpoint.resume=auto", np));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("resuming from"), std::string::npos) << r.output;
    std::string xa = read_file(a / "toy_result.txt"), xb = read_file(b / "toy_result.txt");
    ASSERT_FALSE(xa.empty());
    EXPECT_EQ(xa, xb) << "np=" << np;
    fs::remove_all(a);
    fs::remove_all(b);
  }
}

TEST(RunToy, CorruptNewestCheckpointFallsBackToPrevious) {
  auto a = fresh_dir("corrupt");
  auto r = run_cmd(toy_cmd(a, "--toy.steps=100 --checkpoint.every=50 --checkpoint.resume=never"));
  ASSERT_EQ(r.status, 0) << r.output;
  fs::path newest = a / "checkpoints" / "ckpt_000000100.h5";
  ASSERT_TRUE(fs::exists(newest));
  fs::resize_file(newest, fs::file_size(newest) / 2);  // truncated, as by a crash during a copy
  r = run_cmd(toy_cmd(a, "--toy.steps=120 --checkpoint.resume=auto"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("ckpt_000000050.h5"), std::string::npos) << r.output;
  fs::remove_all(a);
}

// SIGUSR1 to mpirun (forwarded to the ranks, as Slurm's --signal=B:USR1 does
// through the batch script) → checkpoint + exit 3; the rerun resumes and ends
// with exactly the parameters of an uninterrupted run. The signal is sent once
// every rank is stepping (a fixed sleep raced with a slow start on a loaded
// machine: mpirun had no rank to forward it to yet); the run is long enough
// (400 steps of 50 ms) that it cannot end before the signal arrives.
TEST(RunToy, SignalCheckpointsRequeuesAndResumes) {
  for (int np : {1, 2}) {
    auto a = fresh_dir("sig_straight"), b = fresh_dir("sig_run");
    auto r = run_cmd(toy_cmd(a, "--toy.steps=400 --checkpoint.resume=never", np));
    ASSERT_EQ(r.status, 0) << r.output;
    std::string cmd = toy_cmd(b, "--toy.steps=400 --toy.sleep_ms=50 --checkpoint.every=0 --checkpoint.resume=never", np);
    pid_t pid = start_in_background(cmd, b / "log.txt");
    ASSERT_GE(pid, 0);
    bool started = false;
    for (int i = 0; i < 12000 && !started; ++i) {  // up to 2 minutes of start-up on a loaded machine
      started = all_ranks_stepping(b, np);
      if (started) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      int early = 0;
      if (waitpid(pid, &early, WNOHANG) == pid) {  // it ended before stepping: say how
        FAIL() << "the run ended (status " << early << ") before it started stepping:\n" << read_file(b / "log.txt");
      }
    }
    if (!started) kill(-pid, SIGKILL);
    ASSERT_TRUE(started) << "the run did not start stepping within 2 minutes:\n" << read_file(b / "log.txt");
    kill(pid, SIGUSR1);
    int st = 0;
    waitpid(pid, &st, 0);
    std::string log = read_file(b / "log.txt");
    ASSERT_TRUE(WIFEXITED(st)) << log;
    EXPECT_EQ(WEXITSTATUS(st), 3) << log;
    EXPECT_NE(log.find("signal received"), std::string::npos) << log;
    bool found = false;
    for (auto& e : fs::directory_iterator(b / "checkpoints")) found |= e.path().extension() == ".h5";
    EXPECT_TRUE(found);
    r = run_cmd(toy_cmd(b, "--toy.steps=400 --checkpoint.resume=auto", np));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(read_file(a / "toy_result.txt"), read_file(b / "toy_result.txt")) << "np=" << np;
    fs::remove_all(a);
    fs::remove_all(b);
  }
}
