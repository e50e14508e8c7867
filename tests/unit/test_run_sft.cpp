// End-to-end SFT tests through the temper executable on a tiny model:
// restart bit for bit (1 and 2 ranks), data parallelism equals gradient
// accumulation, and bad data / mismatched checkpoints give clear errors.
#include <gtest/gtest.h>

#include <cmath>

#include "io/checkpoint.h"
#include "unit/run_util.h"

using namespace temper_test;
namespace fs = std::filesystem;

namespace {

// A tiny model on a small synthetic data set, created once per test binary.
const fs::path& data_dir() {
  static fs::path dir = [] {
    fs::path d = fresh_dir("sft_data");
    auto r = run_cmd(temper_bin() + " generate-tasks --out " + d.string() + " --seed 3 --train 300 --eval 8");
    EXPECT_EQ(r.status, 0) << r.output;
    return d;
  }();
  return dir;
}

std::string sft_cmd(const fs::path& out, const std::string& extra, int np = 0) {
  std::string launcher = np > 0 ? mpirun(np) : "";
  return launcher + temper_bin() + " " + std::string(TEMPER_SOURCE_DIR) + "/input/quickstart.deck" +
         " --run.output_dir=" + out.string() + " --data.train_files=" + (data_dir() / "sft_train.jsonl").string() +
         " --data.eval_file= --model.d_model=32 --model.n_layers=2 --model.n_heads=2 --model.n_kv_heads=1"
         " --model.ffn_dim=64 --data.seq_len=128 --data.micro_batch=2 --sft.warmup_steps=2 --log.every=1 "
         "--checkpoint.keep_last=0 " + extra;
}

std::map<std::string, temper::Tensor> model_tensors(const fs::path& ckpt) {
  auto st = temper::CheckpointStore::load(ckpt.string());
  std::map<std::string, temper::Tensor> out;
  for (auto& [name, t] : st.tensors)
    if (name.rfind("model/", 0) == 0 || name.rfind("optim/", 0) == 0) out[name] = t;
  return out;
}

// Largest |a-b| / (|b| + 1e-3) over all tensors (0 = bit-identical for equal inputs).
double max_rel_diff(const std::map<std::string, temper::Tensor>& a, const std::map<std::string, temper::Tensor>& b,
                    bool* identical) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  *identical = true;
  for (auto& [name, ta] : a) {
    auto it = b.find(name);
    EXPECT_NE(it, b.end()) << name;
    if (it == b.end()) continue;
    const auto& tb = it->second;
    EXPECT_EQ(ta.shape(), tb.shape()) << name;
    const float* pa = ta.data<float>();
    const float* pb = tb.data<float>();
    for (int64_t i = 0; i < ta.numel(); ++i) {
      if (pa[i] != pb[i]) *identical = false;
      worst = std::max(worst, double(std::fabs(pa[i] - pb[i])) / (std::fabs(pb[i]) + 1e-3));
    }
  }
  return worst;
}

std::vector<std::string> loss_lines(const fs::path& metrics) {
  std::vector<std::string> out;
  std::istringstream in(read_file(metrics));
  std::string line;
  while (std::getline(in, line)) {
    auto p = line.find("\"loss\":");
    if (p != std::string::npos && line.find("\"step\":") != std::string::npos)
      out.push_back(line.substr(line.find("\"step\":"), 12) + line.substr(p, line.find(',', p) - p));
  }
  return out;
}

}  // namespace

TEST(RunSft, RestartIsBitExact) {
  for (int np : {1, 2}) {
    auto a = fresh_dir("sft_a" + std::to_string(np)), b = fresh_dir("sft_b" + std::to_string(np));
    auto r = run_cmd(sft_cmd(a, "--sft.steps=8 --checkpoint.every=4 --checkpoint.resume=never", np));
    ASSERT_EQ(r.status, 0) << r.output;
    r = run_cmd(sft_cmd(b, "--sft.steps=8 --checkpoint.every=4 --checkpoint.resume=never", np));
    ASSERT_EQ(r.status, 0) << r.output;
    // b: throw away the final checkpoint, resume from step 4 and finish again
    fs::remove(b / "checkpoints" / "ckpt_000000008.h5");
    fs::remove(b / "metrics.rank0.jsonl");
    r = run_cmd(sft_cmd(b, "--sft.steps=8 --checkpoint.every=4 --checkpoint.resume=auto", np));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("ckpt_000000004.h5"), std::string::npos) << r.output;
    bool identical = false;
    max_rel_diff(model_tensors(a / "checkpoints" / "ckpt_000000008.h5"),
                 model_tensors(b / "checkpoints" / "ckpt_000000008.h5"), &identical);
    EXPECT_TRUE(identical) << "np=" << np << ": weights or optimizer moments differ after resume";
    auto la = loss_lines(a / "metrics.rank0.jsonl"), lb = loss_lines(b / "metrics.rank0.jsonl");
    ASSERT_EQ(la.size(), 8u);
    ASSERT_EQ(lb.size(), 4u);
    for (size_t i = 0; i < 4; ++i) EXPECT_EQ(la[4 + i], lb[i]) << "np=" << np;
    fs::remove_all(a);
    fs::remove_all(b);
  }
}

// 2 ranks × 1 micro-batch each == 1 rank × 2 accumulated micro-batches (same global batch).
TEST(RunSft, DataParallelEqualsGradientAccumulation) {
  auto one = fresh_dir("sft_dp1"), two = fresh_dir("sft_dp2");
  auto r = run_cmd(sft_cmd(one, "--sft.steps=5 --sft.grad_accum=2 --checkpoint.resume=never"));
  ASSERT_EQ(r.status, 0) << r.output;
  r = run_cmd(sft_cmd(two, "--sft.steps=5 --sft.grad_accum=1 --checkpoint.resume=never", 2));
  ASSERT_EQ(r.status, 0) << r.output;
  bool identical = false;
  double diff = max_rel_diff(model_tensors(one / "checkpoints" / "ckpt_000000005.h5"),
                             model_tensors(two / "checkpoints" / "ckpt_000000005.h5"), &identical);
  EXPECT_LT(diff, 1e-3) << "weights of 1 rank × accumulation and 2 ranks differ";
  // and the loss curves agree
  auto l1 = loss_lines(one / "metrics.rank0.jsonl"), l2 = loss_lines(two / "metrics.rank0.jsonl");
  ASSERT_EQ(l1.size(), 5u);
  ASSERT_EQ(l2.size(), 5u);
  auto value = [](const std::string& s) { return std::stod(s.substr(s.find(':', s.find("loss")) + 1)); };
  for (size_t i = 0; i < 5; ++i) EXPECT_NEAR(value(l1[i]), value(l2[i]), 1e-4 * value(l1[i]));
  fs::remove_all(one);
  fs::remove_all(two);
}

TEST(RunSft, BadDataAndMismatchedCheckpointAreClearErrors) {
  auto dir = fresh_dir("sft_bad");
  write_file(dir / "bad.jsonl",
             "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}\n"
             "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}\n");
  auto r = run_cmd(sft_cmd(dir / "o", "--sft.steps=2 --data.train_files=" + (dir / "bad.jsonl").string()));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("bad.jsonl:2"), std::string::npos) << r.output;
  write_file(dir / "role.jsonl", "{\"messages\":[{\"role\":\"wizard\",\"content\":\"hi\"}]}\n");
  r = run_cmd(sft_cmd(dir / "o", "--sft.steps=2 --data.train_files=" + (dir / "role.jsonl").string()));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("role.jsonl:1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("wizard"), std::string::npos) << r.output;
  r = run_cmd(sft_cmd(dir / "o", "--sft.steps=2 --data.train_files=" + (dir / "nothere.jsonl").string()));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("nothere.jsonl"), std::string::npos) << r.output;

  // a checkpoint of one vocabulary, resumed with another: refused, checkpoint untouched
  r = run_cmd(sft_cmd(dir / "v", "--sft.steps=2 --checkpoint.resume=never"));
  ASSERT_EQ(r.status, 0) << r.output;
  fs::path ck = dir / "v" / "checkpoints" / "ckpt_000000002.h5";
  auto before = fs::file_size(ck);
  r = run_cmd(sft_cmd(dir / "v", "--sft.steps=4 --model.vocab_size=300 --checkpoint.resume=auto"));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("model/embed"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(ck));
  EXPECT_EQ(fs::file_size(ck), before);
  // sequences longer than seq_len are truncated and counted, not a crash
  r = run_cmd(sft_cmd(dir / "t", "--sft.steps=2 --data.seq_len=32 --checkpoint.resume=never"));
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("truncated"), std::string::npos) << r.output;
  fs::remove_all(dir);
}
