// Selective activation checkpointing by part (model.recompute = attention, mlp):
// every combination gives logp and gradients bit-identical to keeping everything
// (also when backward is repeated), keeps fewer bytes than "none" (attention and
// mlp together fewer than either), and allocates exactly what the decoder and the
// memory plan predict; bad part names are refused.
#include <gtest/gtest.h>

#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "model/batch.h"
#include "model/decoder.h"
#include "model/memory_plan.h"
#include "unit/model_util.h"

namespace temper {
namespace {

ModelConfig config(bool qk_norm) {
  return temper_test::small_model({41, 16, 3, 4, 2, 4, 20}, qk_norm, !qk_norm, qk_norm, 0.3f);
}

TEST(ModelRecompute, EveryPartCombinationIsBitIdentical) {
  auto k = make_cpu_kernels();
  for (bool qk : {false, true}) {
    const ModelConfig cfg = config(qk);
    Rng rng(11);
    std::vector<std::vector<int32_t>> docs(3);
    for (auto& d : docs) {
      d.resize(size_t(4 + rng.below(6)));
      for (auto& t : d) t = int32_t(rng.below(uint64_t(cfg.vocab_size)));
    }
    Batch b = make_lm_batch(*k, docs, cfg.vocab_size);
    std::vector<double> coef(size_t(b.n_tokens));
    for (auto& c : coef) c = rng.normal();
    Tensor dlogp = to_device(*k, coef, DType::F64);
    auto run = [&](Checkpointing pol, RecomputeParts parts, std::vector<std::vector<double>>& grads,
                   std::vector<double>& logp_out) {
      Decoder m(cfg, *k, DType::F64);
      m.init_random(7);
      m.set_checkpointing(pol, parts);
      Tensor logp;
      m.forward(b, logp);
      m.backward(b, dlogp);
      m.backward(b, dlogp);  // repeatable: the recompute leaves the kept state intact
      logp_out = to_host_f64(*k, logp);
      grads.clear();
      for (auto& p : m.params()) grads.push_back(to_host_f64(*k, p.grad));
      EXPECT_EQ(m.allocated_activation_bytes(), m.activation_bytes(b.n_tokens));
      EXPECT_EQ(m.allocated_activation_bytes(),
                MemoryPlan::activation_bytes(cfg, b.n_tokens, m.compute_dtype(), m.stat_dtype(), pol, parts));
      return m.allocated_activation_bytes();
    };
    std::vector<std::vector<double>> ref, got;
    std::vector<double> ref_logp, logp;
    const int64_t none = run(Checkpointing::None, {}, ref, ref_logp);
    int64_t bytes[3];
    const RecomputeParts combos[3] = {{true, false}, {false, true}, {true, true}};
    for (int i = 0; i < 3; ++i) {
      bytes[i] = run(Checkpointing::Selective, combos[i], got, logp);
      const std::string what = recompute_parts_name(combos[i]) + (qk ? " qk_norm" : "");
      EXPECT_LT(bytes[i], none) << what;
      EXPECT_EQ(logp, ref_logp) << what;
      ASSERT_EQ(got.size(), ref.size());
      for (size_t j = 0; j < ref.size(); ++j) ASSERT_EQ(got[j], ref[j]) << what << " parameter " << j;
    }
    EXPECT_LT(bytes[2], bytes[0]);
    EXPECT_LT(bytes[2], bytes[1]);
    // the attention part saves (L - 1) layers of attn + lse per token
    const int64_t per_tok = int64_t(cfg.n_heads) * cfg.head_dim * 8 + int64_t(cfg.n_heads) * 8;
    EXPECT_EQ(none - bytes[0], b.n_tokens * (cfg.n_layers - 1) * per_tok);
  }
}

TEST(ModelRecompute, PartNames) {
  const RecomputeParts both = recompute_parts_from_names({"mlp", "attention"});
  EXPECT_TRUE(both.attention && both.mlp);
  EXPECT_EQ(recompute_parts_name(both), "attention,mlp");
  EXPECT_EQ(recompute_parts_name(recompute_parts_from_names({"attention"})), "attention");
  EXPECT_THROW(recompute_parts_from_names({}), Error);
  try {
    recompute_parts_from_names({"attention", "norms"});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'norms' is not one of attention, mlp"), std::string::npos) << e.what();
  }
  // the memory plan names the parts
  MemoryPlanOptions o;
  o.tokens = 8;
  o.checkpointing = Checkpointing::Selective;
  o.recompute = both;
  EXPECT_NE(MemoryPlan(config(false), o).table().find("selective (attention,mlp)"), std::string::npos);
}

}  // namespace
}  // namespace temper
