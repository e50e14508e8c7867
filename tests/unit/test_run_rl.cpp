// End-to-end RL and eval tests through the temper executable on a tiny model
// SFT-trained for a few steps: trajectory dumps and filter outputs, restart bit
// for bit, the eval phase with postproc scoring, and clear errors on bad input.
#include <gtest/gtest.h>

#include <cmath>

#include "io/checkpoint.h"
#include "rl/trajectory_dump.h"
#include "unit/run_util.h"

using namespace temper_test;
namespace fs = std::filesystem;

namespace {

const fs::path& data_dir() {
  static fs::path dir = [] {
    fs::path d = fresh_dir("rl_data");
    auto r = run_cmd(temper_bin() + " generate-tasks --out " + d.string() + " --seed 5 --train 200 --eval 8");
    EXPECT_EQ(r.status, 0) << r.output;
    return d;
  }();
  return dir;
}

// A tiny SFT checkpoint directory, trained once per test binary.
const fs::path& sft_dir() {
  static fs::path dir = [] {
    fs::path out = fresh_dir("rl_sft");
    auto r = run_cmd(temper_bin() + " " + std::string(TEMPER_SOURCE_DIR) + "/input/quickstart.deck" +
                     " --run.output_dir=" + out.string() +
                     " --data.train_files=" + (data_dir() / "sft_train.jsonl").string() +
                     " --data.eval_file= --model.d_model=32 --model.n_layers=2 --model.n_heads=2"
                     " --model.n_kv_heads=1 --model.ffn_dim=64 --data.seq_len=256 --data.micro_batch=2"
                     " --sft.steps=20 --sft.warmup_steps=2 --checkpoint.every=0");
    EXPECT_EQ(r.status, 0) << r.output;
    return out / "checkpoints";
  }();
  return dir;
}

std::string rl_cmd(const fs::path& out, const std::string& extra, int np = 0) {
  std::string launcher = np > 0 ? mpirun(np) : "";
  return launcher + temper_bin() + " " + std::string(TEMPER_SOURCE_DIR) + "/input/quickstart_rl.deck" +
         " --run.output_dir=" + out.string() + " --model.init=" + sft_dir().string() +
         " --rl.prompts_file=" + (data_dir() / "rl_prompts.jsonl").string() +
         " --rl.eval_file=" + (data_dir() / "rl_eval.jsonl").string() +
         " --rl.prompts_per_step=4 --rl.group_size=4 --rl.max_new_tokens=24 --rl.filter_prompts=12"
         " --rl.filter_rollouts=2 --rl.filter_low=0 --rl.filter_high=1 --rl.eval_samples=4 --rl.eval_every=0"
         " --rl.drop_zero_variance=false --log.every=1 --checkpoint.keep_last=0 " + extra;
}

std::map<std::string, temper::Tensor> model_tensors(const fs::path& ckpt) {
  auto st = temper::CheckpointStore::load(ckpt.string());
  std::map<std::string, temper::Tensor> out;
  for (auto& [name, t] : st.tensors)
    if (name.rfind("model/", 0) == 0 || name.rfind("optim/", 0) == 0) out[name] = t;
  return out;
}

bool identical(const std::map<std::string, temper::Tensor>& a, const std::map<std::string, temper::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (auto& [name, ta] : a) {
    auto it = b.find(name);
    if (it == b.end() || ta.numel() != it->second.numel()) return false;
    if (std::memcmp(ta.raw(), it->second.raw(), size_t(ta.numel()) * 4) != 0) return false;
  }
  return true;
}

}  // namespace

TEST(RunRl, GspoTwoRanksWritesDumpsFilterAndMetrics) {
  fs::path out = fresh_dir("rl_e2e");
  auto r = run_cmd(rl_cmd(out, "--rl.algorithm=gspo --rl.loss_agg=seq-mean-token-mean --rl.eps_low=0.28 "
                               "--rl.eps_high=0.40 --rl.steps=3 --rl.dump_every=1 --checkpoint.every=0", 2));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("difficulty filter: kept 12 of 12 prompts"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("eval before: accuracy"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("eval final: accuracy"), std::string::npos) << r.output;
  // kept set: one line per kept prompt
  std::string kept = read_file(out / "difficulty_filter" / "kept.jsonl");
  EXPECT_EQ(std::count(kept.begin(), kept.end(), '\n'), 12);
  EXPECT_TRUE(fs::exists(out / "difficulty_filter" / "histogram.txt"));
  // dumps of every step from both ranks; rank shares add up to prompts x group
  size_t total = 0;
  for (int rank = 0; rank < 2; ++rank) {
    for (int step = 1; step <= 3; ++step) {
      char name[32];
      std::snprintf(name, sizeof name, "traj_%09d.h5", step);
      temper::TrajectoryBatch b = temper::read_trajectory_dump((out / "trajectories" / ("rank" + std::to_string(rank)) / name).string());
      EXPECT_EQ(b.step, step);
      EXPECT_EQ(b.algorithm, "gspo");
      ASSERT_EQ(b.size() % 4, 0u);
      if (step == 3) total += b.size();
      for (size_t i = 0; i < b.size(); ++i) {
        EXPECT_EQ(b.behaviour_logp[i].size(), b.response_tokens[i].size());
        EXPECT_EQ(b.current_logp[i].size(), b.response_tokens[i].size());
        for (float lp : b.behaviour_logp[i]) EXPECT_LE(lp, 0.0f);
        if (b.discarded[i]) EXPECT_EQ(b.advantage[i], 0.0);
      }
      // group-normalised advantages sum to ~0 over the kept samples of each group
      for (size_t g = 0; g < b.size(); g += 4) {
        double s = 0;
        for (size_t i = g; i < g + 4; ++i) s += b.advantage[i];
        EXPECT_NEAR(s, 0.0, 1e-6);
      }
    }
  }
  EXPECT_EQ(total, 16u);  // 4 prompts x 4 samples per step over the two ranks
  std::string metrics = read_file(out / "metrics.rank0.jsonl");
  for (const char* key : {"\"reward\"", "\"clip_frac_high\"", "\"gen_tok_per_s\"", "\"eval_final\""})
    EXPECT_NE(metrics.find(key), std::string::npos) << key;
  auto st = temper::CheckpointStore(out / "checkpoints", 0).load_latest_valid();
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->phase, "rl");
  EXPECT_EQ(st->step, 3);
}

TEST(RunRl, RestartIsBitExact) {
  fs::path a = fresh_dir("rl_straight"), b = fresh_dir("rl_split");
  // Instruction-following prompts a barely trained model passes about half the time
  // (letter counts of its output), so groups carry signal and the model moves.
  fs::path prompts = fresh_dir("rl_if") / "if.jsonl";
  std::string lines;
  for (int i = 0; i < 12; ++i)
    lines += "{\"messages\":[{\"role\":\"user\",\"content\":\"Write about " + std::to_string(i) +
             "\"}],\"task\":\"if\",\"constraints\":{\"type\":\"letter_frequency\",\"letter\":\"" +
             std::string(1, "aeiou"[i % 5]) + "\",\"n\":2}}\n";
  write_file(prompts, lines);
  const std::string common = "--rl.reuse_steps=2 --rl.drop_zero_variance=true --rl.refill_rounds=1 --rl.prompts_file=" +
                             prompts.string() + " --rl.eval_file= --rl.max_new_tokens=40 ";
  auto r1 = run_cmd(rl_cmd(a, common + "--rl.steps=4 --checkpoint.every=2"));
  ASSERT_EQ(r1.status, 0) << r1.output;
  auto r2 = run_cmd(rl_cmd(b, common + "--rl.steps=2 --checkpoint.every=2"));
  ASSERT_EQ(r2.status, 0) << r2.output;
  auto r3 = run_cmd(rl_cmd(b, common + "--rl.steps=4 --checkpoint.every=2 --checkpoint.resume=auto"));
  ASSERT_EQ(r3.status, 0) << r3.output;
  EXPECT_NE(r3.output.find("resum"), std::string::npos) << r3.output;
  EXPECT_EQ(r3.output.find("difficulty filter: 12 prompts"), std::string::npos) << "calibrated again on resume";
  auto ta = model_tensors(a / "checkpoints" / "ckpt_000000004.h5");
  auto tb = model_tensors(b / "checkpoints" / "ckpt_000000004.h5");
  EXPECT_TRUE(identical(ta, tb)) << "RL restart changed the model or optimizer state";
  // and the run did change the model relative to step 2
  EXPECT_FALSE(identical(ta, model_tensors(a / "checkpoints" / "ckpt_000000002.h5")));
}

TEST(RunRl, EvalPhaseScoresAndPostprocReadsIt) {
  fs::path out = fresh_dir("rl_eval");
  auto r = run_cmd(temper_bin() + " " + std::string(TEMPER_SOURCE_DIR) + "/input/quickstart_rl.deck" +
                   " --run.phase=eval --run.output_dir=" + out.string() + " --model.init=" + sft_dir().string() +
                   " --eval.file=" + (data_dir() / "rl_eval.jsonl").string() +
                   " --eval.samples=3 --eval.temperature=1.0 --eval.max_new_tokens=24");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("| all |"), std::string::npos) << r.output;
  std::string res = read_file(out / "eval_results.rank0.jsonl");
  EXPECT_EQ(std::count(res.begin(), res.end(), '\n'), 8 * 3);
  EXPECT_TRUE(fs::exists(out / "eval_summary.json"));
  auto p = run_cmd("/usr/bin/python3 " + std::string(TEMPER_SOURCE_DIR) + "/postproc/score_eval.py " +
                   (out / "eval_results.rank0.jsonl").string());
  ASSERT_EQ(p.status, 0) << p.output;
  EXPECT_NE(p.output.find("pass@1"), std::string::npos) << p.output;
}

TEST(RunRl, BadInputsGiveOneClearMessage) {
  fs::path out = fresh_dir("rl_bad");
  auto r = run_cmd(rl_cmd(out, "--rl.prompts_file=" + (out / "missing.jsonl").string()));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("missing.jsonl"), std::string::npos) << r.output;

  write_file(out / "bad_task.jsonl",
             "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"task\":\"math\",\"answer\":\"1\"}\n"
             "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"task\":\"poetry\",\"answer\":\"1\"}\n");
  r = run_cmd(rl_cmd(out, "--rl.prompts_file=" + (out / "bad_task.jsonl").string()));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("bad_task.jsonl:2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("unknown task 'poetry'"), std::string::npos) << r.output;

  r = run_cmd(rl_cmd(out, "--model.init=" + (out / "no_such_ckpt").string()));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("model.init"), std::string::npos) << r.output;

  r = run_cmd(rl_cmd(out, "--rl.filter_bands=math:0.9-0.1"));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("rl.filter_bands"), std::string::npos) << r.output;
}
