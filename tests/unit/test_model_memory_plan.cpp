// MemoryPlan: the activation figure equals Decoder::activation_bytes (and the
// bytes the decoder really allocates after a step) for several shapes, with and
// without qk_norm, in f32 and f64; the items add up to the total; parameter
// items follow param_count and the dtypes; shard and sp divide what the header
// says they divide and nothing else; the KV cache and logits chunk formulas.
#include <gtest/gtest.h>

#include "model/batch.h"
#include "model/decoder.h"
#include "model/inference.h"
#include "model/memory_plan.h"

namespace temper {
namespace {

ModelConfig tiny(bool qk_norm, bool qkv_bias, bool tied) {
  ModelConfig c;
  c.vocab_size = 37;
  c.d_model = 24;
  c.n_layers = 3;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  c.ffn_dim = 40;
  c.qk_norm = qk_norm;
  c.qkv_bias = qkv_bias;
  c.tie_embeddings = tied;
  return c;
}

ModelConfig qwen2_1p5b() {
  ModelConfig c;
  c.vocab_size = 151936;
  c.d_model = 1536;
  c.n_layers = 28;
  c.n_heads = 12;
  c.n_kv_heads = 2;
  c.head_dim = 128;
  c.ffn_dim = 8960;
  c.qkv_bias = true;
  c.tie_embeddings = true;
  return c;
}

TEST(MemoryPlan, ActivationsEqualTheDecoder) {
  auto cpu = make_cpu_kernels();
  for (bool qk : {false, true})
    for (DType pd : {DType::F32, DType::F64}) {
      ModelConfig c = tiny(qk, !qk, qk);
      Decoder dec(c, *cpu, pd);
      for (int64_t n : {1, 7, 64}) {
        const int64_t want = dec.activation_bytes(n);
        EXPECT_EQ(MemoryPlan::activation_bytes(c, n, dec.compute_dtype(), dec.stat_dtype()), want)
            << "qk_norm " << qk << " " << dtype_name(pd) << " n=" << n;
        MemoryPlanOptions o;
        o.tokens = n;
        o.master_dtype = pd;
        o.compute_dtype = dec.compute_dtype();
        o.stat_dtype = dec.stat_dtype();
        EXPECT_EQ(MemoryPlan(c, o).bytes("activations"), want);
      }
      // and what a real forward/backward allocates
      std::vector<int32_t> doc = {1, 5, 9, 2, 30, 4, 4, 8, 11};
      Batch b = make_lm_batch(*cpu, {doc}, c.vocab_size);
      Tensor logp;
      dec.forward(b, logp);
      EXPECT_EQ(dec.allocated_activation_bytes(),
                MemoryPlan::activation_bytes(c, int64_t(doc.size()), dec.compute_dtype(), dec.stat_dtype()));
    }
}

TEST(MemoryPlan, ItemsAddUpAndFollowTheDtypes) {
  const ModelConfig c = qwen2_1p5b();
  const int64_t P = c.param_count();
  MemoryPlanOptions o;
  o.tokens = 4096;
  o.kv_slots = 8;
  o.kv_length = 1024;
  MemoryPlan plan(c, o);
  int64_t sum = 0;
  for (const auto& it : plan.items()) {
    EXPECT_GE(it.bytes, 0) << it.name;
    sum += it.bytes;
  }
  EXPECT_EQ(plan.total(), sum);
  EXPECT_EQ(plan.bytes("parameters (master)"), 4 * P);
  EXPECT_EQ(plan.bytes("parameters (compute copy)"), 2 * P);
  EXPECT_EQ(plan.bytes("gradients"), 4 * P);
  EXPECT_EQ(plan.bytes("AdamW moments"), 8 * P);
  EXPECT_EQ(plan.bytes("KV cache"), int64_t(8) * 1024 * 28 * 2 * 2 * 128 * 2);
  EXPECT_EQ(plan.bytes("generation scratch"), InferenceEngine::scratch_bytes(c, 8, 0, DType::BF16, DType::F32));
  EXPECT_GT(plan.bytes("generation scratch"), int64_t(28) * 2048 * 1536 * 2);  // at least the packed q/k/v copy
  // the cuda head rule: min(4096, 2.5 GiB / (4 V) = 4416) rows, f32 (gradient in place)
  EXPECT_EQ(plan.bytes("logits chunk"), int64_t(4096) * 151936 * 4);
  MemoryPlanOptions o16 = o;
  o16.tokens = 16384;  // 4 equal chunks of 4096
  EXPECT_EQ(MemoryPlan(c, o16).bytes("logits chunk"), int64_t(4096) * 151936 * 4);
  o16.tokens = 10000;  // 3 chunks of 3334 -> 3392 rows (a multiple of 64)
  EXPECT_EQ(MemoryPlan(c, o16).bytes("logits chunk"), int64_t(3392) * 151936 * 4);
  EXPECT_THROW(plan.bytes("no such item"), Error);
  // same dtype for master and compute (cpu f32): no compute copy
  o.compute_dtype = DType::F32;
  MemoryPlan cpu_plan(c, o);
  EXPECT_THROW(cpu_plan.bytes("parameters (compute copy)"), Error);
  EXPECT_EQ(cpu_plan.total(), plan.total() - 2 * P - plan.bytes("activations") - plan.bytes("KV cache") -
                                  plan.bytes("generation scratch") + cpu_plan.bytes("activations") +
                                  cpu_plan.bytes("KV cache") + cpu_plan.bytes("generation scratch"));
  const std::string t = plan.table(plan.total() + (int64_t(1) << 30));
  EXPECT_NE(t.find("activations"), std::string::npos);
  EXPECT_NE(t.find("measured peak"), std::string::npos);
  EXPECT_NE(t.find("+1.000 GiB"), std::string::npos) << t;
}

TEST(MemoryPlan, ShardAndSpDivideAsDocumented) {
  const ModelConfig c = qwen2_1p5b();
  MemoryPlanOptions o;
  o.tokens = 16384;
  o.logits_rows = 256;
  const MemoryPlan base(c, o);
  MemoryPlanOptions s = o;
  s.shard = 4;
  s.sp = 2;
  const MemoryPlan split(c, s);
  auto up = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  for (const char* name : {"parameters (master)", "gradients", "AdamW moments"})
    EXPECT_EQ(split.bytes(name), up(base.bytes(name), 4)) << name;
  EXPECT_EQ(split.bytes("parameters (compute copy)"), base.bytes("parameters (compute copy)"));
  EXPECT_EQ(split.bytes("activations"), base.bytes("activations") / 2);  // linear in tokens
  EXPECT_EQ(split.bytes("logits chunk"), base.bytes("logits chunk"));    // rows fixed by the option
  s.shard_compute = true;  // ZeRO-3: no resident compute copy, a gathered working set instead
  EXPECT_THROW(MemoryPlan(c, s).bytes("parameters (compute copy)"), Error);
  EXPECT_GT(MemoryPlan(c, s).bytes("gathered layers"), 0);
  s.shard = 0;
  EXPECT_THROW(MemoryPlan(c, s), Error);
}

TEST(MemoryPlan, EveryCheckpointingPolicyEqualsTheDecoder) {
  auto cpu = make_cpu_kernels();
  for (bool qk : {false, true}) {
    const ModelConfig c = tiny(qk, !qk, !qk);
    Decoder dec(c, *cpu, DType::F32);
    int64_t previous = -1;
    for (Checkpointing pol : {Checkpointing::None, Checkpointing::Selective, Checkpointing::Full}) {
      dec.set_checkpointing(pol);
      for (int64_t n : {1, 13}) {
        EXPECT_EQ(MemoryPlan::activation_bytes(c, n, dec.compute_dtype(), dec.stat_dtype(), pol), dec.activation_bytes(n))
            << checkpointing_name(pol) << " n=" << n;
      }
      // and what a step really allocates under the policy
      std::vector<int32_t> doc = {1, 5, 9, 2, 30, 4, 4, 8, 11};
      Batch b = make_lm_batch(*cpu, {doc}, c.vocab_size);
      Tensor logp;
      dec.forward(b, logp);
      const int64_t got = dec.allocated_activation_bytes();
      EXPECT_EQ(got, MemoryPlan::activation_bytes(c, 9, dec.compute_dtype(), dec.stat_dtype(), pol));
      if (previous >= 0) EXPECT_LT(got, previous) << checkpointing_name(pol) << " keeps less than the policy before";
      previous = got;
      MemoryPlanOptions o;
      o.tokens = 9;
      o.compute_dtype = DType::F32;
      o.checkpointing = pol;
      EXPECT_EQ(MemoryPlan(c, o).bytes("activations"), got);
      EXPECT_NE(MemoryPlan(c, o).table().find(checkpointing_name(pol)), std::string::npos);
    }
  }
}

TEST(MemoryPlan, PerRankBytesScaleWithShardAndSp) {
  const ModelConfig c = qwen2_1p5b();
  MemoryPlanOptions o;
  o.tokens = 32768;
  o.checkpointing = Checkpointing::Full;
  const MemoryPlan one(c, o);
  for (int shard : {2, 4, 8})
    for (int sp : {1, 2, 4}) {
      MemoryPlanOptions s = o;
      s.shard = shard;
      s.sp = sp;
      s.replicate = 3;
      s.shard_compute = true;  // ZeRO-3: parameters gathered per layer
      const MemoryPlan p(c, s);
      for (const char* name : {"parameters (master)", "gradients", "AdamW moments"})
        EXPECT_NEAR(double(p.bytes(name)), double(one.bytes(name)) / shard, 1.0) << name << " shard " << shard;
      EXPECT_EQ(p.bytes("activations"), MemoryPlan::activation_bytes(c, o.tokens / sp, DType::BF16, DType::F32,
                                                                      Checkpointing::Full));
      // the gathered working set: at least two blocks of bf16 weights, far below the whole model
      const int64_t layer = c.attention_params_per_layer() + c.mlp_params_per_layer();
      EXPECT_GE(p.bytes("gathered layers"), 2 * layer * 2);
      EXPECT_LT(p.bytes("gathered layers"), one.bytes("parameters (compute copy)") / 2);
      EXPECT_THROW(p.bytes("parameters (compute copy)"), Error);
      EXPECT_LT(p.total(), one.total());
      EXPECT_NE(p.header().find(cat("sp ", sp, " x dp_shard ", shard, " x dp_replicate 3")), std::string::npos)
          << p.header();
    }
  // replicate changes nothing per rank
  MemoryPlanOptions r = o;
  r.replicate = 16;
  EXPECT_EQ(MemoryPlan(c, r).total(), one.total());
  EXPECT_THROW(one.bytes("gathered layers"), Error);  // no sharding, no gathering
}

}  // namespace
}  // namespace temper
