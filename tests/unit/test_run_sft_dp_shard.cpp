// SFT through the temper executable with dp_shard > 1 (ZeRO-3 sharding,
// parallel/dp_shard): dp_shard 2 trains the same model as dp_replicate 2 (f32:
// equal up to summation order); a checkpoint written with dp_shard 2 holds
// full tensors, resumes on 1 rank (resharding) and ends where the sharded run
// ends (the MPI test reshards across three meshes); a dp_shard that does not divide the world is a clear error.
#include <gtest/gtest.h>

#include <cmath>

#include "io/checkpoint.h"
#include "unit/run_util.h"

using namespace temper_test;
namespace fs = std::filesystem;

namespace {

const fs::path& data_dir() {
  static fs::path dir = [] {
    fs::path d = fresh_dir("sft_shard_data");
    auto r = run_cmd(temper_bin() + " generate-tasks --out " + d.string() + " --seed 5 --train 200 --eval 8");
    EXPECT_EQ(r.status, 0) << r.output;
    return d;
  }();
  return dir;
}

std::string sft_cmd(const fs::path& out, const std::string& extra, int np) {
  // one OpenMP thread per rank: the tiny model gains nothing from more, and CI has 2 cores
  return "OMP_NUM_THREADS=1 " + (np > 0 ? mpirun(np) : std::string()) + temper_bin() + " " + std::string(TEMPER_SOURCE_DIR) +
         "/input/quickstart.deck --run.output_dir=" + out.string() +
         " --data.train_files=" + (data_dir() / "sft_train.jsonl").string() +
         " --data.eval_file= --model.d_model=24 --model.n_layers=2 --model.n_heads=2 --model.n_kv_heads=1"
         " --model.ffn_dim=40 --data.seq_len=64 --data.micro_batch=2 --sft.warmup_steps=2 --log.every=1"
         " --checkpoint.keep_last=0 --sft.grad_clip=0.5 " + extra;
}

// Largest |a - b| / (|b| + 1e-3) over the model and optimizer tensors of two checkpoints.
double max_rel_diff(const fs::path& a, const fs::path& b) {
  auto sa = temper::CheckpointStore::load(a.string()), sb = temper::CheckpointStore::load(b.string());
  double worst = 0;
  size_t n = 0;
  for (auto& [name, ta] : sa.tensors) {
    if (name.rfind("model/", 0) != 0 && name.rfind("optim/", 0) != 0) continue;
    ++n;
    auto it = sb.tensors.find(name);
    EXPECT_NE(it, sb.tensors.end()) << name;
    if (it == sb.tensors.end()) continue;
    EXPECT_EQ(ta.shape(), it->second.shape()) << name;
    for (int64_t i = 0; i < ta.numel(); ++i) {
      const float x = ta.data<float>()[i], y = it->second.data<float>()[i];
      worst = std::max(worst, double(std::fabs(x - y)) / (std::fabs(y) + 1e-3));
    }
  }
  EXPECT_GT(n, 10u);
  return worst;
}

}  // namespace

TEST(RunSftDpShard, ShardedEqualsReplicatedAndReshardsOntoOneRank) {
  auto shard = fresh_dir("sft_shard2"), rep = fresh_dir("sft_rep2"), one = fresh_dir("sft_one");
  auto r = run_cmd(sft_cmd(shard, "--sft.steps=4 --checkpoint.every=2 --parallel.dp_shard=2", 2));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("ZeRO-3"), std::string::npos) << "the startup memory plan names the sharding\n" << r.output;
  r = run_cmd(sft_cmd(rep, "--sft.steps=4 --checkpoint.every=2 --parallel.dp_replicate=2", 2));
  ASSERT_EQ(r.status, 0) << r.output;
  // f32, different summation order (reduce-scatter vs all-reduce): equal to rounding
  EXPECT_LT(max_rel_diff(shard / "checkpoints" / "ckpt_000000004.h5", rep / "checkpoints" / "ckpt_000000004.h5"), 1e-3);

  // the sharded run's step-2 checkpoint: full tensors, mesh recorded
  auto st = temper::CheckpointStore::load((shard / "checkpoints" / "ckpt_000000002.h5").string());
  EXPECT_EQ(st.mesh, (std::vector<int>{1, 2, 1}));
  EXPECT_EQ(st.tensors.at("model/embed").shape(), (temper::Shape{264, 24}));
  EXPECT_EQ(st.tensors.at("optim/v/layers.1.mlp.down.weight").shape(), (temper::Shape{24, 40}));
  // resume it on one rank (grad_accum 2 keeps the global batch) and finish
  fs::create_directories(one / "checkpoints");
  fs::copy_file(shard / "checkpoints" / "ckpt_000000002.h5", one / "checkpoints" / "ckpt_000000002.h5");
  r = run_cmd(sft_cmd(one, "--sft.steps=4 --checkpoint.every=2 --sft.grad_accum=2 --checkpoint.resume=auto", 0));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("resuming from"), std::string::npos) << r.output;
  EXPECT_LT(max_rel_diff(one / "checkpoints" / "ckpt_000000004.h5", shard / "checkpoints" / "ckpt_000000004.h5"), 1e-3);
  for (const auto& d : {shard, rep, one}) fs::remove_all(d);
}

TEST(RunSftDpShard, ShardThatDoesNotDivideIsAClearError) {
  auto dir = fresh_dir("sft_shard_bad");
  auto r = run_cmd(sft_cmd(dir, "--sft.steps=1 --parallel.dp_shard=3", 2));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("world size 2 is not a multiple of sp 1 × dp_shard 3"), std::string::npos) << r.output;
  fs::remove_all(dir);
}
