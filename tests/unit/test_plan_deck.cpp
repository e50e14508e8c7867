// temper plan: the deck's memory plan (app/plan_command). The Motif-2-12.7B 64K deck has
// the released model's parameter count, explained term by term, and fits 80 GiB per rank;
// the same model without sharding or checkpointing, or on a smaller device, warns; the
// policy and mesh keys reach the plan; the subcommand prints the table and the warning.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "deck/deck.h"
#include "train/model_setup.h"
#include "app/plan_command.h"

namespace temper {
namespace {

const std::string kDeck = std::string(TEMPER_SOURCE_DIR) + "/input/motif_12b_64k.deck";

DeckPlan plan_of(const std::vector<std::string>& overrides = {}) {
  const Deck d = Deck::load(kDeck, overrides);
  const ModelConfig cfg = model_config_from_deck(d, 300);
  return plan_from_deck(d, cfg);
}

TEST(PlanDeck, TwelveBillionDeckFitsAnH100) {
  const Deck d = Deck::load(kDeck);
  const ModelConfig cfg = model_config_from_deck(d, 300);
  // Motif-2-12.7B (docs/motif.md): 12.7 B to the rounding of the name, every term by hand
  const int64_t V = 219520, C = 4096, L = 40, D = 128, F = 16384;
  const int64_t attention = (40 * D * C) + 2 * (16 * D * C) + C * (2 * 32 * D) + 4 * D + 2 * D;
  const int64_t mlp = 3 * F * C + 4;
  EXPECT_EQ(cfg.param_count(), 2 * V * C + L * (attention + mlp) + (2 * L + 1) * C);
  EXPECT_EQ(cfg.param_count(), 12703860896);
  EXPECT_EQ(cfg.attention, AttentionKind::GroupedDifferential);
  EXPECT_EQ(cfg.q_heads(), 40);
  EXPECT_EQ(cfg.attn_out_dim(), 8192);
  const DeckPlan p = plan_from_deck(d, cfg);
  EXPECT_TRUE(p.fits) << p.text;
  EXPECT_LE(double(p.total_bytes), 80.0 * double(int64_t(1) << 30));
  EXPECT_EQ(p.options.sp, 1);
  EXPECT_EQ(p.options.shard, 8);
  EXPECT_EQ(p.options.tokens, 65536);
  EXPECT_EQ(p.options.compute_dtype, DType::BF16);
  EXPECT_NE(p.text.find("fits:"), std::string::npos) << p.text;
  EXPECT_NE(p.text.find("sp 1 x dp_shard 8"), std::string::npos) << p.text;
  // Ulysses inside the node instead: its buffers are planned too
  const DeckPlan sp2 = plan_of({"--parallel.sp=2", "--parallel.dp_shard=4"});
  EXPECT_NE(sp2.text.find("Ulysses buffers"), std::string::npos) << sp2.text;
  EXPECT_NE(p.text.find("gathered layers"), std::string::npos) << p.text;
  EXPECT_NE(p.text.find("q 40 heads (32 signal + 8 noise) x 128 x 4096"), std::string::npos) << p.text;
  EXPECT_NE(p.text.find("12703860896"), std::string::npos) << p.text;
}

// The RL reference deck: 12.7B, responses of 32K, sp 2 x dp_shard 8 (two nodes of 8). Generation (the whole
// policy gathered in bf16 + the KV cache of rl.max_batch x (prompt + response)) and
// training (gathered layers + activations at the longest sample) never coexist.
TEST(PlanDeck, RlDeckOfTwelveBillionWithLongResponsesFits) {
  const Deck d = Deck::load(std::string(TEMPER_SOURCE_DIR) + "/input/motif_12b_rl.deck");
  const ModelConfig cfg = model_config_from_deck(d, 300);
  EXPECT_EQ(cfg.param_count(), 12703860896);  // Motif-2-12.7B as released, as input/motif_12b_64k.deck
  EXPECT_EQ(d.get_string("model.attention"), "grouped_differential");
  EXPECT_EQ(d.get_string("model.mlp_activation"), "polynorm");
  EXPECT_GE(d.get_int("rl.max_new_tokens"), 32768);
  EXPECT_EQ(d.get_int("rl.filter_rollouts"), 5);
  const DeckPlan p = plan_from_deck(d, cfg);
  EXPECT_TRUE(p.fits) << p.text;
  const int64_t seq = d.get_int("rl.plan_prompt_tokens") + d.get_int("rl.max_new_tokens");
  EXPECT_EQ(p.options.kv_length, seq);
  EXPECT_EQ(p.options.kv_slots, d.get_int("rl.max_batch"));
  EXPECT_EQ(p.options.tokens, seq);  // the longest sample is one micro-batch
  EXPECT_TRUE(p.options.generation_apart);
  const MemoryPlan plan(cfg, p.options);
  using When = MemoryItem::When;
  EXPECT_EQ(plan.bytes("gathered policy"), 2 * cfg.param_count());
  EXPECT_EQ(plan.total(), plan.total(When::Always) + std::max(plan.total(When::Training), plan.total(When::Generation)));
  EXPECT_GT(plan.total(When::Generation), 0);
  EXPECT_GT(plan.total(When::Training), 0);
  for (const char* item : {"gathered policy", "KV cache", "activations", "AdamW moments", "peak of the phases"})
    EXPECT_NE(p.text.find(item), std::string::npos) << item << "\n" << p.text;
  // a KL term adds the frozen reference policy; without dp_shard the plan does not fit
  EXPECT_GT(plan_from_deck(Deck::load(d.source(), {"--rl.kl_coef=0.01"}), cfg).total_bytes, p.total_bytes);
  EXPECT_FALSE(plan_from_deck(Deck::load(d.source(), {"--parallel.dp_shard=1"}), cfg).fits);
  // SP x DP-shard: sp 2 halves the training activations; inside one node of 8 (dp_shard 4) it does not fit
  EXPECT_EQ(p.options.sp, 2);
  EXPECT_EQ(p.options.shard, 8);
  EXPECT_TRUE(d.get_bool("parallel.allow_cross_node"));
  EXPECT_FALSE(plan_from_deck(Deck::load(d.source(), {"--parallel.dp_shard=4"}), cfg).fits);
  const DeckPlan sp1 = plan_from_deck(Deck::load(d.source(), {"--parallel.sp=1"}), cfg);
  EXPECT_TRUE(sp1.fits) << sp1.text;
  EXPECT_LT(plan.total(When::Training), MemoryPlan(cfg, sp1.options).total(When::Training));
  // and the subcommand accepts the deck as it is: exit 0, the table, "fits"
  FILE* f = popen((std::string(TEMPER_BIN) + " plan " + d.source() + " 2>&1").c_str(), "r");
  ASSERT_NE(f, nullptr);
  std::string out;
  char buf[512];
  while (size_t n = fread(buf, 1, sizeof buf, f)) out.append(buf, n);
  EXPECT_EQ(pclose(f), 0) << out;
  for (const char* want : {"sp 2 x dp_shard 8", "Ulysses buffers", "gathered policy", "fits: "})
    EXPECT_NE(out.find(want), std::string::npos) << want << "\n" << out;
  EXPECT_EQ(out.find("does not fit"), std::string::npos) << out;
}

TEST(PlanDeck, TooBigWarns) {
  for (auto ov : std::vector<std::vector<std::string>>{{"--parallel.dp_shard=1", "--parallel.sp=2"},
                                                       {"--model.activation_checkpointing=none"},
                                                       {"--parallel.device_memory_gib=40"}}) {
    const DeckPlan p = plan_of(ov);
    EXPECT_FALSE(p.fits) << ov[0];
    EXPECT_NE(p.text.find("warning: the estimate"), std::string::npos) << p.text;
  }
}

TEST(PlanDeck, KeysReachThePlan) {
  const DeckPlan full = plan_of(), sel = plan_of({"--model.activation_checkpointing=selective"});
  EXPECT_GT(sel.total_bytes, full.total_bytes);
  const DeckPlan sp4 = plan_of({"--parallel.sp=4", "--parallel.dp_shard=2"});
  EXPECT_EQ(sp4.options.sp, 4);
  const DeckPlan cpu = plan_of({"--run.backend=cpu"});
  EXPECT_EQ(cpu.options.compute_dtype, DType::F32);
  const DeckPlan rl = plan_of({"--run.phase=rl", "--rl.micro_batch_tokens=4096", "--rl.max_batch=8"});
  EXPECT_EQ(rl.options.tokens, 4096);
  EXPECT_EQ(rl.options.kv_slots, 8);
  EXPECT_NE(rl.text.find("KV cache"), std::string::npos);
}

TEST(PlanDeck, RecomputePartsReachThePlanAndBadPartsAreRefused) {
  // (standard attention: differential attention keeps its core, so only mlp can be recomputed there)
  const DeckPlan mlp = plan_of({"--model.activation_checkpointing=selective", "--model.attention=standard"});
  const DeckPlan both = plan_of({"--model.activation_checkpointing=selective", "--model.recompute=attention,mlp",
                                 "--model.attention=standard"});
  EXPECT_TRUE(both.options.recompute.attention && both.options.recompute.mlp);
  EXPECT_LT(both.total_bytes, mlp.total_bytes);
  try {
    Deck::load(kDeck, {"--model.recompute=attention,norms"});
    FAIL() << "a bad part was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'norms' is not a part that can be recomputed"), std::string::npos)
        << e.what();
  }
}

TEST(PlanDeck, SubcommandPrintsTheTable) {
  const std::string cmd = std::string(TEMPER_BIN) + " plan " + kDeck + " --parallel.dp_shard=1 2>&1";
  FILE* f = popen(cmd.c_str(), "r");
  ASSERT_NE(f, nullptr);
  std::string out;
  char buf[512];
  while (size_t n = fread(buf, 1, sizeof buf, f)) out.append(buf, n);
  EXPECT_EQ(pclose(f), 0) << out;
  for (const char* want : {"parameters (master)", "gradients", "AdamW moments", "activations", "logits chunk",
                           "total (planned)", "does not fit the device memory"})
    EXPECT_NE(out.find(want), std::string::npos) << want << "\n" << out;
  FILE* g = popen((std::string(TEMPER_BIN) + " plan 2>&1").c_str(), "r");
  out.clear();
  while (size_t n = fread(buf, 1, sizeof buf, g)) out.append(buf, n);
  EXPECT_NE(pclose(g), 0);
  EXPECT_NE(out.find("plan: name a deck file"), std::string::npos) << out;
}

}  // namespace
}  // namespace temper
