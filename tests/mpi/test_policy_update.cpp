// The RL policy update (rl/policy_update) with recomputed behaviour log-probs takes them from
// the first reuse step's forward instead of a pass of its own: they must be exactly the
// log-probs of the policy before the update (a fresh engine from the same weights), on one
// rank and on dp_shard over all ranks, with several micro-batches and trajectory reuse; the
// update still moves the policy, and the sampler gap is measured against them.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <memory>
#include <vector>

#include "core/rng.h"
#include "kernels/kernels.h"
#include "parallel/mesh.h"
#include "rl/policy_update.h"
#include "rl/update_batches.h"
#include "train/engine.h"
#include "unit/model_util.h"

using namespace temper;

namespace {

std::vector<RlSample> make_samples(uint64_t seed) {
  Rng rng(seed);
  std::vector<RlSample> out;
  for (int i = 0; i < 6; ++i) {
    RlSample s;
    s.group = i / 3;
    s.index = i % 3;
    s.prompt.resize(size_t(3 + i % 4));
    s.response.resize(size_t(4 + (5 * i) % 7));
    for (auto& t : s.prompt) t = int32_t(rng.below(40));
    for (auto& t : s.response) t = int32_t(rng.below(40));
    for (size_t t = 0; t < s.response.size(); ++t) s.sampler_logp.push_back(-1.0 - 0.1 * double(t));
    s.advantage = i % 2 ? 1.0 : -0.5;
    out.push_back(s);
  }
  return out;
}

// log-probs of each sample's response tokens under `e`, one sample per forward
std::vector<std::vector<double>> logp_of(Engine& e, const std::vector<RlSample>& samples) {
  std::vector<std::vector<double>> out(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) {
    std::vector<std::vector<double>> one(1);
    for (const RlMicroBatch& mb : pack_rl_sequences({{&samples[i].prompt, &samples[i].response}}, 1 << 20))
      scatter_response_logp(mb, e.forward({mb.tokens, mb.targets, mb.positions, mb.cu_seqlens}), one);
    out[i] = one[0];
  }
  return out;
}

void check_on(MPI_Comm comm, MeshShape shape) {
  Mesh mesh = Mesh::build(comm, shape);
  std::unique_ptr<Kernels> k = make_cpu_kernels();
  InitialWeights w;
  w.kind = "random";
  w.config = temper_test::small_model({40, 16, 2, 4, 2, 8, 24}, false, false, true, 0.25f);
  EngineOptions eo;
  eo.param_dtype = DType::F64;
  eo.section = "rl";
  Engine policy(w.config, *k, mesh, eo, w, 11);
  EngineOptions frozen = eo;
  frozen.trainable = false;
  Engine before(w.config, *k, mesh, frozen, w, 11);

  std::vector<RlSample> samples = make_samples(5);
  UpdateOptions uo;
  uo.reuse_steps = 2;
  uo.micro_batch_tokens = 24;  // several micro-batches
  uo.recompute_behaviour = true;
  const UpdateStats st = policy_update(policy, nullptr, samples, uo, 1e-2);
  EXPECT_EQ(st.optimizer_steps, 2);

  const auto want = logp_of(before, samples);
  double gap = 0;
  int64_t n = 0;
  bool moved = false;
  for (size_t i = 0; i < samples.size(); ++i) {
    ASSERT_EQ(samples[i].behaviour_logp.size(), samples[i].response.size()) << i;
    for (size_t t = 0; t < want[i].size(); ++t) {
      EXPECT_EQ(samples[i].behaviour_logp[t], want[i][t]) << "sample " << i << " token " << t;
      gap += std::fabs(samples[i].sampler_logp[t] - want[i][t]);
      ++n;
      moved = moved || samples[i].current_logp[t] != samples[i].behaviour_logp[t];
    }
  }
  EXPECT_TRUE(moved) << "the update did not change the policy";
  EXPECT_NEAR(st.sampler_logp_gap, gap / double(n), 1e-12);
  // the trained policy is not the one before the update
  const auto after = logp_of(policy, samples);
  EXPECT_NE(after[1], want[1]);
}

}  // namespace

TEST(PolicyUpdate, RecomputedBehaviourIsThePolicyBeforeTheUpdateOnOneRank) {
  check_on(MPI_COMM_SELF, MeshShape{1, 1, 1});
}

TEST(PolicyUpdate, RecomputedBehaviourIsThePolicyBeforeTheUpdateUnderDpShard) {
  int W = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &W);
  check_on(MPI_COMM_WORLD, MeshShape{1, W, 1});
}
