// RL on every mesh, through the temper executable on a tiny model SFT-trained for
// a few steps (4 heads, so sp = 4 gives every rank one):
//  - on 4 ranks every mesh sp x dp_shard x dp_replicate = (4,1,1) (2,2,1) (1,4,1)
//    (2,1,2) (1,2,2) (1,1,4) runs 3 RL steps (difficulty filter calibrated on the
//    mesh, task mix, zero-variance groups dropped and refilled, trajectory reuse 2)
//    equal to 1 rank: the same rollouts
//    (response tokens), rewards and advantages bit for bit (sampling is seeded per
//    prompt and sample, group statistics are computed from every rank's rewards);
//    per-step loss and final weights equal up to f32 summation order;
//  - an RL checkpoint written on a 2 x 2 mesh (sp 2 x dp_shard 2) resumes on the
//    same mesh bit for bit, and on 4 ranks of another mesh and on 1 rank within
//    that tolerance, with the same rollouts after the resume;
//  - grouped differential attention (Motif GDA: 8 signal + 2 noise-control heads) on
//    sp 2 x dp_shard 2 and differential attention (8 + 8 heads) on sp 4, each with
//    QK-clip (both query/key paths measured, max logits reduced over the sp group),
//    equal 1 rank the same way, with the same max logits and clipped heads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iostream>
#include <algorithm>
#include <map>
#include <sstream>

#include "io/checkpoint.h"
#include "rl/trajectory_dump.h"
#include "unit/rl_run_fixture.h"
#include "unit/run_util.h"

using namespace temper_test;
namespace fs = std::filesystem;

namespace {

// Agreement with one rank, f32 on the CPU: reductions in another order.
constexpr double kLossTol = 1e-5;    // relative, per-step loss
constexpr double kWeightTol = 1e-4;  // relative (|a - b| / (|b| + 1e-3)), model and optimizer state

const fs::path& work_dir() {
  static const fs::path dir = small_rl_fixture("rl_mesh");
  return dir;
}

// A differential-attention model (input/motif_small.deck shrunk: 8 signal heads, 2 key heads per
// path) SFT-trained like work_dir()'s, once per attention kind ("grouped_differential" with 2
// noise-control heads, "differential" with 8); returns its checkpoint folder.
fs::path differential_init(const std::string& attention) {
  static std::map<std::string, fs::path> done;
  auto it = done.find(attention);
  if (it != done.end()) return it->second;
  const fs::path out = work_dir() / ("sft_" + attention);
  auto r = run_cmd("OMP_NUM_THREADS=1 " + temper_bin() + " " + std::string(TEMPER_SOURCE_DIR) +
                   "/input/motif_small.deck --run.output_dir=" + out.string() +
                   " --data.train_files=" + (work_dir() / "data" / "sft_train.jsonl").string() +
                   " --data.eval_file= --sft.eval_samples=0 --model.attention=" + attention +
                   " --model.d_model=32 --model.n_layers=2 --model.head_dim=8 --model.ffn_dim=64 --data.seq_len=256"
                   " --data.micro_batch=2 --sft.steps=40 --sft.lr=3e-3 --sft.warmup_steps=2 --checkpoint.every=0");
  EXPECT_EQ(r.status, 0) << r.output;
  return done[attention] = out / "checkpoints";
}

std::string rl_cmd(const fs::path& out, int np, const std::string& extra, const fs::path& init = {}) {
  return "OMP_NUM_THREADS=1 " + (np > 1 ? mpirun(np) : std::string()) + temper_bin() + " " +
         std::string(TEMPER_SOURCE_DIR) + "/input/quickstart_rl.deck --run.output_dir=" + out.string() +
         " --model.init=" + (init.empty() ? work_dir() / "sft" / "checkpoints" : init).string() +
         " --rl.prompts_file=" + (work_dir() / "prompts.jsonl").string() +
         " --rl.eval_file= --rl.prompts_per_step=8 --rl.group_size=4 --rl.max_new_tokens=48 --rl.filter=true"
         " --rl.filter_rollouts=2 --rl.filter_low=0 --rl.filter_high=1 --rl.task_mix=if:0.75,count:0.25"
         " --rl.drop_zero_variance=true --rl.refill_rounds=1 --rl.reuse_steps=2 --rl.dump_every=1 --log.every=1"
         " --checkpoint.keep_last=0 " + extra;
}

std::string mesh_flags(int sp, int shard, int rep) {
  return "--parallel.sp=" + std::to_string(sp) + " --parallel.dp_shard=" + std::to_string(shard) +
         " --parallel.dp_replicate=" + std::to_string(rep) + " ";
}

struct Rollout {
  std::vector<int32_t> response;
  double reward = 0, advantage = 0;
  std::vector<float> behaviour;
};

// Every sample of a step's dumps (all ranks), keyed by (group, position in the group).
std::map<std::pair<int, int>, Rollout> step_rollouts(const fs::path& out, int step) {
  std::map<std::pair<int, int>, Rollout> all;
  char name[32];
  std::snprintf(name, sizeof name, "traj_%09d.h5", step);
  for (const auto& dir : fs::directory_iterator(out / "trajectories")) {
    if (!fs::exists(dir.path() / name)) continue;
    const temper::TrajectoryBatch b = temper::read_trajectory_dump((dir.path() / name).string());
    std::map<int, int> seen;
    for (size_t i = 0; i < b.size(); ++i) {
      const auto key = std::make_pair(int(b.group[i]), seen[b.group[i]]++);
      EXPECT_EQ(all.count(key), 0u) << "sample dumped twice: group " << key.first << " at " << out;
      all[key] = {b.response_tokens[i], b.reward[i], b.advantage[i], b.behaviour_logp[i]};
    }
  }
  return all;
}

// Rollouts, rewards, advantages of `got` equal `want`'s; behaviour log-probs close.
void expect_same_rollouts(const fs::path& want, const fs::path& got, int first, int last, const std::string& what) {
  for (int step = first; step <= last; ++step) {
    const auto a = step_rollouts(want, step), b = step_rollouts(got, step);
    ASSERT_GE(a.size(), 4u) << what << " step " << step;  // at least one group kept
    ASSERT_EQ(b.size(), a.size()) << what << " step " << step;
    for (const auto& [key, x] : a) {
      auto it = b.find(key);
      ASSERT_NE(it, b.end()) << what << " step " << step << " group " << key.first;
      EXPECT_EQ(it->second.response, x.response) << what << " step " << step << " group " << key.first;
      EXPECT_EQ(it->second.reward, x.reward) << what << " step " << step;
      EXPECT_EQ(it->second.advantage, x.advantage) << what << " step " << step;
      ASSERT_EQ(it->second.behaviour.size(), x.behaviour.size());
      for (size_t t = 0; t < x.behaviour.size(); ++t)
        EXPECT_NEAR(it->second.behaviour[t], x.behaviour[t], 1e-4) << what << " step " << step;
    }
  }
}

// Largest relative difference of the model and optimizer tensors of two checkpoints.
double max_rel_diff(const fs::path& a, const fs::path& b, bool* bitwise = nullptr) {
  auto sa = temper::CheckpointStore::load(a.string()), sb = temper::CheckpointStore::load(b.string());
  double worst = 0;
  size_t n = 0;
  bool same = true;
  for (auto& [name, ta] : sa.tensors) {
    if (name.rfind("model/", 0) != 0 && name.rfind("optim/", 0) != 0) continue;
    ++n;
    auto it = sb.tensors.find(name);
    EXPECT_NE(it, sb.tensors.end()) << name;
    if (it == sb.tensors.end()) continue;
    EXPECT_EQ(ta.shape(), it->second.shape()) << name;
    same = same && std::memcmp(ta.raw(), it->second.raw(), ta.nbytes()) == 0;
    for (int64_t i = 0; i < ta.numel(); ++i) {
      const float x = ta.data<float>()[i], y = it->second.data<float>()[i];
      worst = std::max(worst, double(std::fabs(x - y)) / (std::fabs(y) + 1e-3));
    }
  }
  EXPECT_GT(n, 20u);
  EXPECT_EQ(sa.u64.at("optim/steps"), sb.u64.at("optim/steps"));
  if (bitwise) *bitwise = same;
  return worst;
}

// The metric `key` of every step line of a metrics JSONL file, in order.
std::vector<double> step_metric(const fs::path& metrics, const std::string& key) {
  std::vector<double> out;
  std::istringstream in(read_file(metrics));
  std::string line;
  while (std::getline(in, line)) {
    const auto p = line.find("\"" + key + "\":");
    if (p != std::string::npos && line.find("\"step\":") != std::string::npos)
      out.push_back(std::stod(line.substr(p + key.size() + 3)));
  }
  return out;
}

double max_loss_diff(const fs::path& want, const fs::path& got, size_t steps) {
  const auto a = step_losses(want / "metrics.rank0.jsonl"), b = step_losses(got / "metrics.rank0.jsonl");
  EXPECT_EQ(a.size(), steps);
  EXPECT_EQ(b.size(), steps);
  double worst = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    worst = std::max(worst, std::fabs(a[i] - b[i]) / std::max(std::fabs(a[i]), 1e-6));
  return worst;
}

}  // namespace

TEST(RunRlMesh, EveryMeshOnFourRanksEqualsOneRank) {
  const fs::path one = work_dir() / "one";
  auto r = run_cmd(rl_cmd(one, 1, "--rl.steps=3 --checkpoint.every=0"));
  ASSERT_EQ(r.status, 0) << r.output;
  const auto losses = step_losses(one / "metrics.rank0.jsonl");
  ASSERT_EQ(losses.size(), 3u);
  int moved = 0;
  for (double l : losses) moved += l != 0;
  ASSERT_GE(moved, 2) << "the reference run trains on too little signal to compare anything";
  const int meshes[6][3] = {{4, 1, 1}, {2, 2, 1}, {1, 4, 1}, {2, 1, 2}, {1, 2, 2}, {1, 1, 4}};
  for (const auto& m : meshes) {
    const std::string what = "mesh (" + std::to_string(m[0]) + "," + std::to_string(m[1]) + "," +
                             std::to_string(m[2]) + ")";
    const fs::path out = work_dir() / ("mesh_" + std::to_string(m[0]) + std::to_string(m[1]) + std::to_string(m[2]));
    r = run_cmd(rl_cmd(out, 4, mesh_flags(m[0], m[1], m[2]) + "--rl.steps=3 --checkpoint.every=0"));
    ASSERT_EQ(r.status, 0) << what << "\n" << r.output;
    expect_same_rollouts(one, out, 1, 3, what);
    const double dl = max_loss_diff(one, out, 3);
    const double dw = max_rel_diff(one / "checkpoints" / "ckpt_000000003.h5", out / "checkpoints" / "ckpt_000000003.h5");
    std::cout << "[ rl mesh ] " << what << " vs 1 rank over 3 steps: rollouts, rewards, advantages identical; "
              << "max relative loss difference " << dl << ", max relative weight/optimizer difference " << dw << "\n";
    EXPECT_LT(dl, kLossTol) << what;
    EXPECT_LT(dw, kWeightTol) << what;
    fs::remove_all(out);
  }
}

TEST(RunRlMesh, CheckpointOfTwoByTwoResumesOnAnyMeshAndBitForBitOnItself) {
  const std::string mesh22 = mesh_flags(2, 2, 1);
  const fs::path straight = work_dir() / "straight22";
  auto r = run_cmd(rl_cmd(straight, 4, mesh22 + "--rl.steps=4 --checkpoint.every=2"));
  ASSERT_EQ(r.status, 0) << r.output;
  const fs::path ckpt2 = straight / "checkpoints" / "ckpt_000000002.h5", ckpt4 = straight / "checkpoints" / "ckpt_000000004.h5";
  auto st = temper::CheckpointStore::load(ckpt2.string());
  EXPECT_EQ(st.mesh, (std::vector<int>{2, 2, 1}));
  EXPECT_EQ(st.tensors.at("model/embed").shape(), (temper::Shape{264, 32}));  // whole tensors

  struct Resume {
    std::string name;
    int np;
    std::string flags;
  };
  for (const Resume& x : {Resume{"same mesh 2x2", 4, mesh22}, Resume{"4 ranks, mesh (1,4,1)", 4, mesh_flags(1, 4, 1)},
                          Resume{"1 rank", 1, mesh_flags(1, 1, 1)}}) {
    const fs::path out = work_dir() / ("resume_" + std::to_string(x.np) + "_" + std::to_string(x.flags.size()) +
                                       (x.flags == mesh22 ? "same" : "other"));
    fs::create_directories(out / "checkpoints");
    fs::copy_file(ckpt2, out / "checkpoints" / "ckpt_000000002.h5");
    r = run_cmd(rl_cmd(out, x.np, x.flags + "--rl.steps=4 --checkpoint.every=2 --checkpoint.resume=auto"));
    ASSERT_EQ(r.status, 0) << x.name << "\n" << r.output;
    EXPECT_NE(r.output.find("resuming from"), std::string::npos) << r.output;
    expect_same_rollouts(straight, out, 3, 4, "resumed on " + x.name);
    bool bitwise = false;
    const double dw = max_rel_diff(ckpt4, out / "checkpoints" / "ckpt_000000004.h5", &bitwise);
    std::cout << "[ rl resume ] 2x2 checkpoint of step 2 resumed on " << x.name << ", step 4 vs the straight 2x2 run: "
              << (bitwise ? "bit for bit" : "max relative weight/optimizer difference ");
    if (!bitwise) std::cout << dw;
    std::cout << "\n";
    if (x.flags == mesh22) EXPECT_TRUE(bitwise) << "same-mesh RL resume is not bit for bit (max rel diff " << dw << ")";
    EXPECT_LT(dw, kWeightTol) << x.name;
    fs::remove_all(out);
  }
}

TEST(RunRlMesh, DifferentialAttentionWithQkClipOnSpMeshesEqualsOneRank) {
  struct Case {
    std::string attention;
    int sp, shard;
  };
  for (const Case& c : {Case{"grouped_differential", 2, 2}, Case{"differential", 4, 1}}) {
    const fs::path init = differential_init(c.attention);
    const std::string what = c.attention + " on mesh (" + std::to_string(c.sp) + "," + std::to_string(c.shard) + ",1)";
    // tau below the tiny model's max logits (about 0.5), so heads get clipped every step
    const std::string opts = "--rl.steps=2 --checkpoint.every=2 --rl.qk_clip_tau=0.3";
    const fs::path one = work_dir() / ("one_" + c.attention), four = work_dir() / ("four_" + c.attention);
    auto r = run_cmd(rl_cmd(one, 1, opts, init));
    ASSERT_EQ(r.status, 0) << what << "\n" << r.output;
    r = run_cmd(rl_cmd(four, 4, mesh_flags(c.sp, c.shard, 1) + opts, init));
    ASSERT_EQ(r.status, 0) << what << "\n" << r.output;
    EXPECT_NE(r.output.find(", " + c.attention + " attention"), std::string::npos) << what << "\n" << r.output;
    const auto losses = step_losses(one / "metrics.rank0.jsonl");
    ASSERT_EQ(losses.size(), 2u);
    EXPECT_TRUE(losses[0] != 0 || losses[1] != 0) << what << ": the reference run trains on nothing";
    expect_same_rollouts(one, four, 1, 2, what);
    const double dl = max_loss_diff(one, four, 2);
    const double dw = max_rel_diff(one / "checkpoints" / "ckpt_000000002.h5", four / "checkpoints" / "ckpt_000000002.h5");
    const auto m1 = step_metric(one / "metrics.rank0.jsonl", "max_logit"),
               m4 = step_metric(four / "metrics.rank0.jsonl", "max_logit");
    const auto c1 = step_metric(one / "metrics.rank0.jsonl", "qk_clipped"),
               c4 = step_metric(four / "metrics.rank0.jsonl", "qk_clipped");
    ASSERT_EQ(m1.size(), 2u) << what;
    ASSERT_EQ(m4.size(), 2u) << what;
    ASSERT_EQ(c4.size(), c1.size()) << what;
    double clipped = 0;
    for (size_t i = 0; i < m1.size(); ++i) {
      EXPECT_NEAR(m4[i], m1[i], 1e-5 * m1[i]) << what << ": max logit, step " << i + 1;
      EXPECT_EQ(c4[i], c1[i]) << what << ": heads clipped, step " << i + 1;
      clipped += c1[i];
    }
    EXPECT_GT(clipped, 0) << what << ": tau 0.3 clipped no head, the test has no teeth";
    std::cout << "[ rl mesh ] " << what << " with QK-clip vs 1 rank over 2 steps: rollouts, rewards, advantages "
              << "identical; heads clipped " << clipped << " (same); max relative loss difference " << dl
              << ", max relative weight/optimizer difference " << dw << "\n";
    EXPECT_LT(dl, kLossTol) << what;
    EXPECT_LT(dw, kWeightTol) << what;
    fs::remove_all(one);
    fs::remove_all(four);
  }
}
