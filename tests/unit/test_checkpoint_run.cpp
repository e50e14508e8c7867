// Checkpoints through the temper executable (toy phase, 2 and 4 ranks):
//  - asynchronous saves: a run killed with SIGKILL while a checkpoint is being
//    written in the background (at several moments of the write) leaves every
//    complete checkpoint valid and the one before in place; resumed, it ends
//    bit for bit where the uninterrupted run ends;
//  - a full disk during a collective write by 4 ranks: exit 2 with one message
//    naming the file, the earlier checkpoint intact, no partial file left
//    (skipped, saying why, where no tmpfs can be mounted).
// No timing is asserted: the moments only spread the kills over the write.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>

#include <chrono>
#include <cstring>
#include <sstream>
#include <thread>
#include <vector>

#include "io/checkpoint.h"
#include "unit/run_util.h"

using namespace temper_test;
namespace fs = std::filesystem;

namespace {

std::string toy(const fs::path& out, const std::string& extra, int np) {
  return "OMP_NUM_THREADS=1 " + (np > 0 ? mpirun(np) : std::string()) + temper_bin() + " " + TEMPER_SOURCE_DIR +
         "/input/toy.deck --run.output_dir=" + out.string() + " --log.every=100000 --log.metrics=false " + extra;
}

bool same_tensors(const fs::path& a, const fs::path& b) {
  auto sa = temper::CheckpointStore::load(a.string()), sb = temper::CheckpointStore::load(b.string());
  if (sa.tensors.size() != sb.tensors.size()) return false;
  for (const auto& [name, t] : sa.tensors) {
    auto it = sb.tensors.find(name);
    if (it == sb.tensors.end() || it->second.nbytes() != t.nbytes() ||
        std::memcmp(it->second.raw(), t.raw(), t.nbytes()) != 0)
      return false;
  }
  return sa.u64 == sb.u64;
}

// Waits (at most `limit`) until `p` exists.
bool wait_for(const fs::path& p, std::chrono::seconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!fs::exists(p)) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// SIGKILL to the ranks (mpirun puts each in a process group of its own) and to
// mpirun (`pid`, the leader of its group), then reaps mpirun and waits until no
// rank is left.
void kill_run(pid_t pid) {
  std::vector<pid_t> ranks = children_of(pid);
  for (pid_t r : ranks) ::kill(r, SIGKILL);
  ::kill(-pid, SIGKILL);
  int st = 0;
  ::waitpid(pid, &st, 0);
  for (pid_t r : ranks)
    for (int i = 0; i < 2000 && ::kill(r, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

// A tmpfs of `size` on a fresh folder, unmounted on destruction; reason() says why not.
class SmallDisk {
 public:
  SmallDisk(const std::string& name, const std::string& size) : dir_(fresh_dir(name)) {
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, ("size=" + size).c_str()) != 0)
      reason_ = std::string("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): ") + std::strerror(errno);
  }
  ~SmallDisk() {
    if (reason_.empty()) ::umount2(dir_.c_str(), MNT_DETACH);
    fs::remove_all(dir_);
  }
  const fs::path& dir() const { return dir_; }
  const std::string& reason() const { return reason_; }

 private:
  fs::path dir_;
  std::string reason_;
};

}  // namespace

TEST(CheckpointRun, KillDuringAsynchronousWriteKeepsThePreviousAndResumesExactly) {
  const std::string common = "--toy.steps=12 --toy.dim=3000 --checkpoint.every=3 --checkpoint.keep_last=0";
  const fs::path ref = fresh_dir("ckpt_async_ref");
  auto r = run_cmd(toy(ref, common + " --checkpoint.resume=never", 2));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("in the background"), std::string::npos) << r.output;
  const fs::path ref_last = ref / "checkpoints" / "ckpt_000000012.h5";
  ASSERT_TRUE(fs::exists(ref_last));

  // the write of step 6 stretched to about 4 x 150 ms; training sleeps 40 ms a step meanwhile
  for (int moment_ms : {0, 200, 450}) {
    SCOPED_TRACE("killed " + std::to_string(moment_ms) + " ms after the step-6 write began");
    const fs::path out = fresh_dir("ckpt_async_kill" + std::to_string(moment_ms));
    const fs::path ckpts = out / "checkpoints";
    pid_t pid = start_in_background("env TEMPER_CHECKPOINT_TEST_DELAY_MS=150 " +
                                        toy(out, common + " --toy.sleep_ms=40 --checkpoint.resume=never", 2),
                                    out.string() + ".log");
    const bool began = wait_for(ckpts / ".ckpt_000000006.h5.partial", std::chrono::seconds(120));
    std::this_thread::sleep_for(std::chrono::milliseconds(moment_ms));
    kill_run(pid);
    ASSERT_TRUE(began) << read_file(out.string() + ".log");

    // the step-3 checkpoint was complete before the step-6 write began; every complete file verifies
    temper::CheckpointStore store(ckpts.string(), 0);
    auto files = store.list();
    ASSERT_FALSE(files.empty());
    EXPECT_TRUE(fs::exists(ckpts / "ckpt_000000003.h5"));
    for (const auto& f : files) EXPECT_NO_THROW(temper::CheckpointStore::verify(f)) << f;

    r = run_cmd(toy(out, common + " --checkpoint.resume=auto", 2));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("resuming from"), std::string::npos) << r.output;
    EXPECT_TRUE(same_tensors(ckpts / "ckpt_000000012.h5", ref_last)) << "the resumed run ends elsewhere";
    fs::remove_all(out);
    fs::remove(out.string() + ".log");
  }
  fs::remove_all(ref);
}

TEST(CheckpointRun, DiskFullDuringACollectiveWriteIsExitTwoAndKeepsThePreviousCheckpoint) {
  // 3 x 20000 f32 = 240 kB a checkpoint: the first fits in 420 kB, the second does not
  SmallDisk disk("ckpt_disk_full", "420k");
  if (!disk.reason().empty()) GTEST_SKIP() << disk.reason();
  const fs::path out = disk.dir() / "out";
  auto r = run_cmd(toy(out, "--toy.steps=4 --toy.dim=20000 --checkpoint.every=2 --checkpoint.keep_last=2", 4));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find(".ckpt_000000004.h5.partial"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("No space left on device"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("Segmentation fault"), std::string::npos) << r.output;
  const fs::path ckpts = out / "checkpoints";
  EXPECT_FALSE(fs::exists(ckpts / ".ckpt_000000004.h5.partial"));
  EXPECT_FALSE(fs::exists(ckpts / "ckpt_000000004.h5"));
  ASSERT_TRUE(fs::exists(ckpts / "ckpt_000000002.h5")) << r.output;
  EXPECT_NO_THROW(temper::CheckpointStore::verify((ckpts / "ckpt_000000002.h5").string()));
}

TEST(CheckpointRun, InputsAreCheckedBeforeTheModelIsInitialised) {
  const fs::path out = fresh_dir("ckpt_inputs");
  const std::string base = "OMP_NUM_THREADS=1 " + temper_bin() + " " + TEMPER_SOURCE_DIR +
                           "/input/quickstart.deck --run.output_dir=" + out.string() + " --sft.steps=2";
  write_file(out / "train.jsonl", "{}\n");  // only opened by these runs
  const std::string data = base + " --data.eval_file= --data.train_files=" + (out / "train.jsonl").string();
  // The Qwen2-1.5B shape: 1.78B parameters, 28 GB of weights, gradients and moments on the
  // host, more than this machine holds; a run that allocated it first would fail otherwise
  // or take minutes. A missing data file is named at once instead.
  const std::string big = " --model.vocab_size=151936 --model.d_model=1536 --model.n_layers=28 --model.n_heads=12"
                          " --model.n_kv_heads=2 --model.head_dim=128 --model.ffn_dim=8960";
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run_cmd(base + big + " --data.train_files=" + (out / "missing.jsonl").string());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("data.train_files"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find((out / "missing.jsonl").string() + "' cannot be read"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("initial weights"), std::string::npos) << "checked only after initialisation\n" << r.output;
  std::printf("missing data file with the 1.5B shape: exit %d after %.2f s\n", r.status, seconds);
  EXPECT_LT(seconds, 30.0) << "(a generous bound for a loaded machine; it takes well under a second)";
  // the other inputs, each named by its key
  write_file(out / "blocker", "x");
  fs::create_directories(out / "no_config");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {" --data.eval_file=" + (out / "no_eval.jsonl").string(), "data.eval_file"},
      {" --data.tokenizer=hf:" + (out / "no_tokenizer").string(), "data.tokenizer"},
      {" --model.init=hf:" + (out / "no_config").string(), "config.json"},
      {" --model.init=" + (out / "no_ckpt.h5").string(), "model.init"},
      {" --checkpoint.resume=" + (out / "no_resume.h5").string(), "checkpoint.resume"},
      {" --checkpoint.dir=" + (out / "blocker" / "ckpt").string(), "checkpoint.dir"},
      {" --run.output_dir=" + (out / "blocker" / "run").string(), "run.output_dir"},
  };
  for (const auto& [arg, key] : cases) {
    r = run_cmd(data + arg);
    EXPECT_EQ(r.status, 2) << arg << "\n" << r.output;
    EXPECT_NE(r.output.find(key), std::string::npos) << arg << "\n" << r.output;
    EXPECT_EQ(r.output.find("initial weights"), std::string::npos) << arg << "\n" << r.output;
  }
  fs::remove_all(out);
}
