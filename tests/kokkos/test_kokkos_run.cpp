// The quickstart decks end to end with --run.backend=kokkos on a tiny model: SFT
// steps against the same steps on the CPU backend (losses agree to f32 rounding),
// then RL steps from the kokkos SFT checkpoint (they run and their losses are finite);
// and two ranks (dp_shard 2, sp 2), whose collectives the kokkos backend stages through
// host memory, against the same two-rank runs on the CPU backend.
#include <gtest/gtest.h>

#include <cmath>

#include "unit/run_util.h"

using namespace temper_test;
namespace fs = std::filesystem;

namespace {

const fs::path& data_dir() {
  static fs::path dir = [] {
    fs::path d = fresh_dir("kokkos_run_data");
    auto r = run_cmd(temper_bin() + " generate-tasks --out " + d.string() + " --seed 5 --train 200 --eval 8");
    EXPECT_EQ(r.status, 0) << r.output;
    return d;
  }();
  return dir;
}

CmdResult sft(const fs::path& out, const std::string& backend, const std::string& launch = "",
              const std::string& extra = "") {
  return run_cmd("OMP_NUM_THREADS=1 " + launch + temper_bin() + " " + std::string(TEMPER_SOURCE_DIR) +
                 "/input/quickstart.deck" + extra +
                 " --run.backend=" + backend + " --run.output_dir=" + out.string() +
                 " --data.train_files=" + (data_dir() / "sft_train.jsonl").string() +
                 " --data.eval_file= --model.d_model=32 --model.n_layers=2 --model.n_heads=2"
                 " --model.n_kv_heads=1 --model.ffn_dim=64 --data.seq_len=128 --data.micro_batch=2"
                 " --sft.steps=6 --sft.warmup_steps=2 --log.every=1 --checkpoint.every=0 --checkpoint.keep_last=0");
}

TEST(KokkosRun, QuickstartSftMatchesCpuThenRl) {
  const fs::path cpu = fresh_dir("kokkos_run_sft_cpu"), kk = fresh_dir("kokkos_run_sft_kokkos");
  auto rc = sft(cpu, "cpu");
  ASSERT_EQ(rc.status, 0) << rc.output;
  auto rk = sft(kk, "kokkos");
  ASSERT_EQ(rk.status, 0) << rk.output;
  const auto lc = step_losses(cpu / "metrics.rank0.jsonl"), lk = step_losses(kk / "metrics.rank0.jsonl");
  ASSERT_EQ(lc.size(), 6u);
  ASSERT_EQ(lk.size(), lc.size());
  for (size_t i = 0; i < lc.size(); ++i) EXPECT_NEAR(lk[i], lc[i], 1e-4 * std::fabs(lc[i])) << "step " << i + 1;

  const fs::path rl = fresh_dir("kokkos_run_rl");
  auto r = run_cmd(temper_bin() + " " + std::string(TEMPER_SOURCE_DIR) + "/input/quickstart_rl.deck" +
                   " --run.backend=kokkos --run.output_dir=" + rl.string() +
                   " --model.init=" + (kk / "checkpoints").string() +
                   " --rl.prompts_file=" + (data_dir() / "rl_prompts.jsonl").string() +
                   " --rl.eval_file=" + (data_dir() / "rl_eval.jsonl").string() +
                   " --rl.steps=2 --rl.prompts_per_step=4 --rl.group_size=4 --rl.max_new_tokens=24"
                   " --rl.filter_prompts=12 --rl.filter_rollouts=2 --rl.filter_low=0 --rl.filter_high=1"
                   " --rl.eval_samples=4 --rl.eval_every=0 --rl.drop_zero_variance=false"
                   " --log.every=1 --checkpoint.every=0 --checkpoint.keep_last=0");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto lr = step_losses(rl / "metrics.rank0.jsonl");
  ASSERT_EQ(lr.size(), 2u) << r.output;
  for (double x : lr) EXPECT_TRUE(std::isfinite(x));
}

// Two ranks: FSDP-style sharding (reduce-scatter / all-gather) and Ulysses SP
// (all-to-all) move kokkos tensors through host buffers; the losses equal the CPU
// backend's on the same mesh.
TEST(KokkosRun, TwoRanksStagedCollectivesMatchCpu) {
  for (const std::string mesh : {"--parallel.dp_shard=2", "--parallel.sp=2"}) {
    const std::string tag = mesh.substr(mesh.find('.') + 1, mesh.find('=') - mesh.find('.') - 1);
    const fs::path cpu = fresh_dir("kokkos_run_np2_cpu_" + tag), kk = fresh_dir("kokkos_run_np2_kokkos_" + tag);
    auto rc = sft(cpu, "cpu", mpirun(2), " " + mesh);
    ASSERT_EQ(rc.status, 0) << rc.output;
    auto rk = sft(kk, "kokkos", mpirun(2), " " + mesh);
    ASSERT_EQ(rk.status, 0) << rk.output;
    for (const char* rank : {"metrics.rank0.jsonl", "metrics.rank1.jsonl"}) {
      const auto lc = step_losses(cpu / rank), lk = step_losses(kk / rank);
      ASSERT_EQ(lc.size(), 6u) << mesh << " " << rank;
      ASSERT_EQ(lk.size(), lc.size()) << mesh << " " << rank;
      for (size_t i = 0; i < lc.size(); ++i)
        EXPECT_NEAR(lk[i], lc[i], 1e-4 * std::fabs(lc[i])) << mesh << " " << rank << " step " << i + 1;
    }
  }
}

}  // namespace
