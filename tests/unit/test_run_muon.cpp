// SFT with sft.optimizer = muon and QK-clip through the temper executable:
// restart bit for bit (weights, Muon momenta, AdamW moments), QK-clip active
// and reported, and resuming with another optimizer is a clear error.
#include <gtest/gtest.h>

#include <cstring>

#include "io/checkpoint.h"
#include "unit/run_util.h"

using namespace temper_test;
namespace fs = std::filesystem;

namespace {

const fs::path& muon_data() {
  static fs::path dir = [] {
    fs::path d = fresh_dir("muon_data");
    auto r = run_cmd(temper_bin() + " generate-tasks --out " + d.string() + " --seed 5 --train 200 --eval 8");
    EXPECT_EQ(r.status, 0) << r.output;
    return d;
  }();
  return dir;
}

std::string muon_cmd(const fs::path& out, const std::string& extra) {
  return temper_bin() + " " + std::string(TEMPER_SOURCE_DIR) + "/input/quickstart.deck --run.output_dir=" +
         out.string() + " --data.train_files=" + (muon_data() / "sft_train.jsonl").string() +
         " --data.eval_file= --model.d_model=32 --model.n_layers=2 --model.n_heads=4 --model.n_kv_heads=2"
         " --model.ffn_dim=64 --data.seq_len=96 --data.micro_batch=2 --sft.warmup_steps=2 --log.every=1"
         " --checkpoint.keep_last=0 --sft.optimizer=muon --sft.lr=0.02 --sft.qk_clip_tau=0.06 " + extra;
}

// Every model/ and optim/ tensor, byte for byte; returns the names that differ.
std::vector<std::string> differing(const fs::path& a, const fs::path& b, size_t* muon_tensors) {
  auto sa = temper::CheckpointStore::load(a.string()), sb = temper::CheckpointStore::load(b.string());
  std::vector<std::string> out;
  *muon_tensors = 0;
  for (auto& [name, ta] : sa.tensors) {
    if (name.rfind("model/", 0) != 0 && name.rfind("optim/", 0) != 0) continue;
    if (name.rfind("optim/muon_m/", 0) == 0) ++*muon_tensors;
    auto it = sb.tensors.find(name);
    if (it == sb.tensors.end() || it->second.nbytes() != ta.nbytes() ||
        std::memcmp(it->second.raw(), ta.raw(), ta.nbytes()) != 0)
      out.push_back(name);
  }
  return out;
}

}  // namespace

TEST(RunMuon, SftWithMuonAndQkClipRestartsBitExact) {
  auto a = fresh_dir("muon_a"), b = fresh_dir("muon_b");
  auto r = run_cmd(muon_cmd(a, "--sft.steps=4 --checkpoint.every=2 --checkpoint.resume=never"));
  ASSERT_EQ(r.status, 0) << r.output;
  r = run_cmd(muon_cmd(b, "--sft.steps=4 --checkpoint.every=2 --checkpoint.resume=never"));
  ASSERT_EQ(r.status, 0) << r.output;
  fs::remove(b / "checkpoints" / "ckpt_000000004.h5");
  r = run_cmd(muon_cmd(b, "--sft.steps=4 --checkpoint.every=2 --checkpoint.resume=auto"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("ckpt_000000002.h5"), std::string::npos) << r.output;
  size_t muon_tensors = 0;
  auto diff = differing(a / "checkpoints" / "ckpt_000000004.h5", b / "checkpoints" / "ckpt_000000004.h5",
                        &muon_tensors);
  EXPECT_TRUE(diff.empty()) << "differ after resume: " << diff.front();
  EXPECT_EQ(muon_tensors, 2u * 6u) << "q, k, v, o, gate_up, down of 2 layers carry Muon momenta";
  // QK-clip ran and is reported: the metrics carry the max logit and the clipped head count
  const std::string metrics = read_file(a / "metrics.rank0.jsonl");
  EXPECT_NE(metrics.find("\"max_logit\""), std::string::npos) << metrics;
  size_t clipped_steps = 0;
  for (size_t p = metrics.find("\"qk_clipped\":"); p != std::string::npos; p = metrics.find("\"qk_clipped\":", p + 1))
    if (metrics[p + 13] != '0') ++clipped_steps;
  EXPECT_GT(clipped_steps, 0u) << "tau 0.06 is below the initial max logits (~0.08): heads must clip\n" << metrics;
  // an AdamW checkpoint cannot be resumed by Muon (no momenta): a clear error naming the key
  auto c = fresh_dir("muon_c");
  r = run_cmd(muon_cmd(c, "--sft.steps=2 --sft.optimizer=adamw --sft.qk_clip_tau=0 --checkpoint.resume=never"));
  ASSERT_EQ(r.status, 0) << r.output;
  r = run_cmd(muon_cmd(c, "--sft.steps=4 --checkpoint.resume=auto"));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("optim/muon_m/"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("sft.optimizer"), std::string::npos) << r.output;
  fs::remove_all(c);
  fs::remove_all(a);
  fs::remove_all(b);
}
