// The Motif-like reference deck (input/motif_small.deck: grouped differential
// attention + PolyNorm) through the temper executable, shrunk to a tiny model:
// it trains (loss falls over a few steps), its checkpoint holds the new tensors
// and a resume is bit-exact, and bad GDA head counts are clear deck errors.
#include <gtest/gtest.h>

#include <cstring>

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

std::vector<double> losses(const fs::path& metrics) {
  std::vector<double> out;
  std::istringstream in(read_file(metrics));
  std::string line;
  while (std::getline(in, line)) {
    auto p = line.find("\"loss\":");
    if (p != std::string::npos && line.find("\"step\":") != std::string::npos)
      out.push_back(std::stod(line.substr(p + 7)));
  }
  return out;
}

}  // namespace

TEST(RunMotif, TrainsCheckpointsAndResumesBitExact) {
  auto a = fresh_dir("motif_a"), b = fresh_dir("motif_b");
  // run a also runs the greedy evaluation (KV-cached GDA inference) before and after training
  const std::string eval = " --sft.eval_samples=1 --data.eval_file=" + (data_dir() / "rl_eval.jsonl").string();
  auto r = run_cmd(motif_cmd(a, "--sft.steps=6 --checkpoint.every=3" + eval));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("grouped_differential attention (2 noise heads)"), std::string::npos) << r.output;
  const auto la = losses(a / "metrics.rank0.jsonl");
  ASSERT_EQ(la.size(), 6u);
  EXPECT_NE(r.output.find("eval final at step 6"), std::string::npos) << r.output;
  EXPECT_LT(la.back(), la.front() - 0.15) << "the loss did not fall: " << la.front() << " -> " << la.back();
  auto st = temper::CheckpointStore::load((a / "checkpoints" / "ckpt_000000006.h5").string());
  for (const char* name : {"model/layers.1.attn.lambda", "model/layers.0.attn.q2.weight", "model/layers.0.attn.k2.weight",
                           "model/layers.1.attn.head_norm.weight", "model/layers.1.mlp.polynorm"})
    EXPECT_TRUE(st.tensors.count(name)) << name << " missing from the checkpoint";
  EXPECT_EQ(st.tensors.at("model/layers.0.attn.q2.weight").shape(), (temper::Shape{2 * 8, 32}));

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
  fs::remove_all(d);
}
