// The Motif-like reference deck (input/motif_small.deck: grouped differential
// attention + PolyNorm) through the temper executable, shrunk to a tiny model:
// it trains (loss falls over a few steps), its checkpoint holds the released
// layout's tensors and a resume is bit-exact; 2 ranks with Ulysses (sp 2) and
// QK-clip give the losses and max logits of 1 rank; bad GDA head counts are clear
// deck errors.
#include <gtest/gtest.h>

#include <cstring>
#include <sstream>

#include "io/checkpoint.h"
#include "unit/run_util.h"

using namespace temper_test;
namespace fs = std::filesystem;

namespace {

const fs::path& data_dir() {
  static fs::path dir = [] {
    fs::path d = fresh_dir("motif_data");
    auto r = run_cmd(temper_bin() + " generate-tasks --out " + d.string() + " --seed 4 --train 200 --eval 4");
    EXPECT_EQ(r.status, 0) << r.output;
    return d;
  }();
  return dir;
}

// The reference deck shrunk to a tiny model, without evaluation unless `extra` asks for it.
std::string motif_cmd(const fs::path& out, const std::string& extra) {
  return temper_bin() + " " + std::string(TEMPER_SOURCE_DIR) + "/input/motif_small.deck" +
         " --run.output_dir=" + out.string() + " --data.train_files=" + (data_dir() / "sft_train.jsonl").string() +
         " --data.eval_file= --sft.eval_samples=0" +
         " --model.d_model=32 --model.n_layers=2 --model.head_dim=8 --model.ffn_dim=64 --data.seq_len=128"
         " --data.micro_batch=2 --sft.warmup_steps=2 --sft.eval_max_new_tokens=8"
         " --log.every=1 --checkpoint.keep_last=0 " + extra;
}

}  // namespace

TEST(RunMotif, TrainsCheckpointsAndResumesBitExact) {
  auto a = fresh_dir("motif_a"), b = fresh_dir("motif_b");
  // run a also runs the greedy evaluation (KV-cached GDA inference) before and after training
  const std::string eval = " --sft.eval_samples=1 --data.eval_file=" + (data_dir() / "rl_eval.jsonl").string();
  auto r = run_cmd(motif_cmd(a, "--sft.steps=6 --checkpoint.every=3" + eval));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("heads 8 signal + 2 noise (kv 2 per path"), std::string::npos) << r.output;
  const auto la = step_losses(a / "metrics.rank0.jsonl");
  ASSERT_EQ(la.size(), 6u);
  EXPECT_NE(r.output.find("eval final at step 6"), std::string::npos) << r.output;
  EXPECT_LT(la.back(), la.front() - 0.15) << "the loss did not fall: " << la.front() << " -> " << la.back();
  auto st = temper::CheckpointStore::load((a / "checkpoints" / "ckpt_000000006.h5").string());
  for (const char* name : {"model/layers.1.attn.lambda", "model/layers.0.attn.q.weight", "model/layers.0.attn.v.weight",
                           "model/layers.1.attn.head_norm.weight", "model/layers.1.mlp.polynorm"})
    EXPECT_TRUE(st.tensors.count(name)) << name << " missing from the checkpoint";
  // the released layout: q holds the 8 signal and 2 noise heads, v the 2 value heads of 2 x head_dim
  EXPECT_EQ(st.tensors.at("model/layers.0.attn.q.weight").shape(), (temper::Shape{(8 + 2) * 8, 32}));
  EXPECT_EQ(st.tensors.at("model/layers.0.attn.v.weight").shape(), (temper::Shape{2 * 2 * 8, 32}));
  EXPECT_EQ(st.tensors.at("model/layers.0.attn.o.weight").shape(), (temper::Shape{32, 8 * 2 * 8}));
  EXPECT_FALSE(st.tensors.count("model/layers.0.attn.q2.weight"));

  r = run_cmd(motif_cmd(b, "--sft.steps=6 --checkpoint.every=3 --data.eval_file="));
  ASSERT_EQ(r.status, 0) << r.output;
  fs::remove(b / "checkpoints" / "ckpt_000000006.h5");
  r = run_cmd(motif_cmd(b, "--sft.steps=6 --checkpoint.every=3 --data.eval_file= --checkpoint.resume=auto"));
  EXPECT_NE(r.output.find("ckpt_000000003.h5"), std::string::npos) << r.output;
  ASSERT_EQ(r.status, 0) << r.output;
  auto sb = temper::CheckpointStore::load((b / "checkpoints" / "ckpt_000000006.h5").string());
  for (auto& [name, t] : st.tensors) {
    if (name.rfind("model/", 0) != 0 && name.rfind("optim/", 0) != 0) continue;
    ASSERT_TRUE(sb.tensors.count(name)) << name;
    const auto& u = sb.tensors.at(name);
    ASSERT_EQ(t.nbytes(), u.nbytes()) << name;
    EXPECT_EQ(std::memcmp(t.raw(), u.raw(), t.nbytes()), 0) << name << " differs after resume";
  }
  fs::remove_all(a);
  fs::remove_all(b);
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

TEST(RunMotif, UlyssesAndQkClipEqualOneRank) {
  auto one = fresh_dir("motif_sp1"), two = fresh_dir("motif_sp2");
  const std::string opts = "--sft.steps=4 --checkpoint.every=0 --data.eval_file= --sft.qk_clip_tau=0.06";
  auto r = run_cmd(motif_cmd(one, opts));
  ASSERT_EQ(r.status, 0) << r.output;
  r = run_cmd(mpirun(2) + motif_cmd(two, opts + " --parallel.sp=2"));
  ASSERT_EQ(r.status, 0) << r.output;
  const auto l1 = step_losses(one / "metrics.rank0.jsonl"), l2 = step_losses(two / "metrics.rank0.jsonl");
  const auto m1 = step_metric(one / "metrics.rank0.jsonl", "max_logit"),
             m2 = step_metric(two / "metrics.rank0.jsonl", "max_logit");
  const auto c1 = step_metric(one / "metrics.rank0.jsonl", "qk_clipped");
  ASSERT_EQ(l1.size(), 4u);
  ASSERT_EQ(l2.size(), 4u);
  ASSERT_EQ(m1.size(), 4u);
  ASSERT_EQ(m2.size(), 4u);
  double clipped = 0;
  for (size_t i = 0; i < l1.size(); ++i) {
    EXPECT_NEAR(l2[i], l1[i], 1e-5 * l1[i]) << "step " << i + 1;
    EXPECT_NEAR(m2[i], m1[i], 1e-5 * m1[i]) << "max logit, step " << i + 1;
    clipped += c1[i];
  }
  EXPECT_GT(clipped, 0) << "tau 0.06 clipped no head: the test has no teeth";
  fs::remove_all(one);
  fs::remove_all(two);
}

TEST(RunMotif, BadHeadCountsAreDeckErrors) {
  auto d = fresh_dir("motif_bad");
  auto r = run_cmd(motif_cmd(d, "--sft.steps=1 --model.gda_ratio=3"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("model.gda_ratio = 3"), std::string::npos) << r.output;
  r = run_cmd(motif_cmd(d, "--sft.steps=1 --model.gda_noise_heads=1"));  // not a multiple of 2 kv heads
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("not a multiple of model.n_kv_heads"), std::string::npos) << r.output;
  r = run_cmd(motif_cmd(d, "--sft.steps=1 --model.attention=gda"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("model.attention"), std::string::npos) << r.output;
  r = run_cmd(motif_cmd(d, "--sft.steps=1 --model.qk_norm=true"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("cannot be combined"), std::string::npos) << r.output;
  // Ulysses gives each SP rank whole groups (8 signal + 2 noise heads do not split 4 ways), and the
  // differential core is not recomputed
  r = run_cmd(motif_cmd(d, "--sft.steps=1 --parallel.sp=4"));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("parallel.sp = 4"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("does not divide the 8 signal heads and 2 noise-control heads"), std::string::npos)
      << r.output;
  r = run_cmd(motif_cmd(d, "--sft.steps=1 --model.activation_checkpointing=selective --model.recompute=attention"));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("may name mlp only"), std::string::npos) << r.output;
  fs::remove_all(d);
}
