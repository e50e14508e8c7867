// SFT through the temper executable with Ulysses sequence parallelism: 2 ranks with
// --parallel.sp=2 (kv_heads 1 < sp: replicated kv heads) give the per-step losses of
// 1 rank, 4 ranks (sp 2 x dp_replicate 2) those of 1 rank accumulating 2 micro-batches;
// an sp that does not divide n_heads is a clear deck error.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "unit/run_util.h"

using namespace temper_test;
namespace fs = std::filesystem;

namespace {

std::string sft_cmd(const fs::path& data, const fs::path& out, const std::string& extra, int np) {
  return (np > 1 ? mpirun(np) : std::string()) + temper_bin() + " " + std::string(TEMPER_SOURCE_DIR) +
         "/input/quickstart.deck --run.output_dir=" + out.string() +
         " --data.train_files=" + (data / "sft_train.jsonl").string() +
         " --data.eval_file= --model.d_model=32 --model.n_layers=2 --model.n_heads=2 --model.n_kv_heads=1"
         " --model.ffn_dim=64 --data.seq_len=96 --data.micro_batch=2 --sft.warmup_steps=2 --log.every=1"
         " --checkpoint.every=0 --checkpoint.keep_last=0 --checkpoint.resume=never " + extra;
}

// "loss" of every step line of a metrics file, in order.
std::vector<double> losses(const fs::path& metrics) {
  std::vector<double> out;
  std::istringstream in(read_file(metrics));
  std::string line;
  while (std::getline(in, line)) {
    const auto p = line.find("\"loss\":");
    if (p != std::string::npos && line.find("\"step\":") != std::string::npos)
      out.push_back(std::stod(line.substr(p + 7)));
  }
  return out;
}

}  // namespace

TEST(RunSftSp, SpRunsEqualOneRank) {
  auto data = fresh_dir("sftsp_data"), one = fresh_dir("sftsp_1"), two = fresh_dir("sftsp_2");
  auto r = run_cmd(temper_bin() + " generate-tasks --out " + data.string() + " --seed 5 --train 120 --eval 4");
  ASSERT_EQ(r.status, 0) << r.output;
  r = run_cmd(sft_cmd(data, one, "--sft.steps=4", 1));
  ASSERT_EQ(r.status, 0) << r.output;
  r = run_cmd(sft_cmd(data, two, "--sft.steps=4 --parallel.sp=2", 2));
  ASSERT_EQ(r.status, 0) << r.output;
  auto l1 = losses(one / "metrics.rank0.jsonl"), l2 = losses(two / "metrics.rank0.jsonl"),
       l2b = losses(two / "metrics.rank1.jsonl");
  ASSERT_EQ(l1.size(), 4u);
  ASSERT_EQ(l2.size(), 4u);
  for (size_t i = 0; i < l1.size(); ++i) {
    EXPECT_NEAR(l2[i], l1[i], 1e-5 * l1[i]) << "step " << i + 1;
    if (i < l2b.size()) EXPECT_EQ(l2b[i], l2[i]) << "the SP ranks report different losses";
  }
  // 4 ranks = 2 replicas x 2-way SP, one micro-batch each == 1 rank accumulating 2
  auto acc = fresh_dir("sftsp_acc"), four = fresh_dir("sftsp_4");
  r = run_cmd(sft_cmd(data, acc, "--sft.steps=3 --sft.grad_accum=2", 1));
  ASSERT_EQ(r.status, 0) << r.output;
  r = run_cmd(sft_cmd(data, four, "--sft.steps=3 --parallel.sp=2", 4));
  ASSERT_EQ(r.status, 0) << r.output;
  auto la = losses(acc / "metrics.rank0.jsonl"), l4 = losses(four / "metrics.rank0.jsonl");
  ASSERT_EQ(la.size(), 3u);
  ASSERT_EQ(l4.size(), 3u);
  for (size_t i = 0; i < la.size(); ++i) EXPECT_NEAR(l4[i], la[i], 1e-5 * la[i]) << "4 ranks, step " << i + 1;
  fs::remove_all(acc);
  fs::remove_all(four);
  // n_heads 3 over sp 2: refused before any work, naming both keys
  r = run_cmd(sft_cmd(data, two, "--sft.steps=1 --parallel.sp=2 --model.n_heads=3 --model.head_dim=8", 2));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("parallel.sp"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("model.n_heads"), std::string::npos) << r.output;
  fs::remove_all(data);
  fs::remove_all(one);
  fs::remove_all(two);
}

// Issue 9's mesh matrix on 4 ranks (2 emulated nodes of 2): every sp x dp_shard x
// dp_replicate that fits, each against 1 rank accumulating dp_shard x dp_replicate
// micro-batches (the same global batch). kv_heads 1 < sp in the sp 4 case, and
// documents cross the SP shard boundaries (packed rows of 96 tokens).
TEST(RunSftSp, EveryMeshOnFourRanksEqualsOneRank) {
  auto data = fresh_dir("sftmesh_data");
  auto r = run_cmd(temper_bin() + " generate-tasks --out " + data.string() + " --seed 6 --train 120 --eval 4");
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string model = "--sft.steps=3 --model.n_heads=4 --model.n_kv_heads=1 --model.head_dim=8 ";
  std::map<int, std::vector<double>> ref;  // by data-parallel degree
  for (int dp : {1, 2, 4}) {
    auto out = fresh_dir("sftmesh_ref" + std::to_string(dp));
    r = run_cmd(sft_cmd(data, out, model + "--sft.grad_accum=" + std::to_string(dp), 1));
    ASSERT_EQ(r.status, 0) << r.output;
    ref[dp] = losses(out / "metrics.rank0.jsonl");
    ASSERT_EQ(ref[dp].size(), 3u);
    fs::remove_all(out);
  }
  struct Mesh {
    int sp, shard, rep;
  } meshes[] = {{4, 1, 1}, {2, 2, 1}, {1, 4, 1}, {2, 1, 2}, {1, 2, 2}, {1, 1, 4}};
  for (const Mesh& m : meshes) {
    const std::string tag = "sp " + std::to_string(m.sp) + " x shard " + std::to_string(m.shard) + " x replicate " +
                            std::to_string(m.rep);
    auto out = fresh_dir("sftmesh_run");
    r = run_cmd(sft_cmd(data, out,
                        model + "--parallel.ranks_per_node=2 --parallel.allow_cross_node=true --parallel.sp=" +
                            std::to_string(m.sp) + " --parallel.dp_shard=" + std::to_string(m.shard) +
                            " --parallel.dp_replicate=" + std::to_string(m.rep),
                        4));
    ASSERT_EQ(r.status, 0) << tag << "\n" << r.output;
    auto l = losses(out / "metrics.rank0.jsonl");
    const auto& want = ref[m.shard * m.rep];
    ASSERT_EQ(l.size(), want.size()) << tag;
    for (size_t i = 0; i < l.size(); ++i) EXPECT_NEAR(l[i], want[i], 2e-5 * want[i]) << tag << ", step " << i + 1;
    fs::remove_all(out);
  }
  fs::remove_all(data);
}
