// Tests of the generation engine (model/inference, rl/generation) on the CPU
// backend: KV-cached logits and sampled log-probs equal full recomputation with
// Decoder::forward / logits_at (f64 to ~1e-10, f32 loosely), chunked prefill and
// copy_slot equal plain prefills, samples do not depend on max_batch or on the
// prompt order (per-uid streams), EOS / stop strings / length limits, groups of
// n differing samples, the prompt prefilled once per group, and greedy_decode.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "model/batch.h"
#include "model/decoder.h"
#include "model/inference.h"
#include "rl/generation.h"
#include "tokenizer/tokenizer.h"
#include "train/greedy_eval.h"

namespace temper {
namespace {

ModelConfig tiny_config(int vocab, bool fancy) {
  ModelConfig c;
  c.vocab_size = vocab;
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  c.ffn_dim = 24;
  c.rope_theta = 100.0f;
  c.init_std = 0.25f;  // spread-out logits: sampling matters, greedy is unambiguous
  c.qk_norm = fancy;
  c.qkv_bias = fancy;
  c.tie_embeddings = !fancy;
  return c;
}

std::vector<std::vector<int32_t>> random_prompts(const std::vector<int>& lens, int vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<std::vector<int32_t>> out;
  for (int len : lens) {
    std::vector<int32_t> p(static_cast<size_t>(len));
    for (auto& t : p) t = int32_t(rng.below(uint64_t(vocab)));
    out.push_back(p);
  }
  return out;
}

// log p(response token i) under full recomputation of prompt + response at temperature T.
std::vector<double> recomputed_logp(Kernels& k, Decoder& m, const std::vector<int32_t>& prompt,
                                    const std::vector<int32_t>& resp, double T) {
  std::vector<int32_t> doc = prompt;
  doc.insert(doc.end(), resp.begin(), resp.end());
  Batch b = make_lm_batch(k, {doc}, m.config().vocab_size);
  std::vector<int64_t> rows;
  for (size_t i = 0; i < resp.size(); ++i) rows.push_back(int64_t(prompt.size() + i) - 1);
  Tensor logits;
  m.logits_at(b, rows, logits);
  std::vector<double> h = to_host_f64(k, logits), out;
  const size_t V = size_t(m.config().vocab_size);
  for (size_t i = 0; i < resp.size(); ++i) {
    const double* r = h.data() + i * V;
    double mx = -INFINITY, s = 0;
    for (size_t j = 0; j < V; ++j) mx = std::max(mx, r[j] / T);
    for (size_t j = 0; j < V; ++j) s += std::exp(r[j] / T - mx);
    out.push_back(r[resp[i]] / T - mx - std::log(s));
  }
  return out;
}

class Generation : public ::testing::Test {
 protected:
  std::unique_ptr<Kernels> K = make_cpu_kernels();
};

void check_against_recomputation(Kernels& k, DType dt, bool fancy, double tol) {
  Decoder m(tiny_config(40, fancy), k, dt);
  m.init_random(7);
  Generator gen(m, k, 4);
  SamplingOptions o;
  o.n_samples = 3;
  o.max_new_tokens = 12;
  o.temperature = 1.0f;
  o.seed = 11;
  const auto prompts = random_prompts({5, 1, 9}, 40, 3);
  const auto out = gen.generate(prompts, o);
  ASSERT_EQ(out.size(), 9u);
  for (const auto& g : out) {
    ASSERT_EQ(g.tokens.size(), 12u);
    EXPECT_EQ(g.finish, FinishReason::Length);
    const auto ref = recomputed_logp(k, m, prompts[size_t(g.prompt_index)], g.tokens, 1.0);
    for (size_t i = 0; i < ref.size(); ++i)
      EXPECT_NEAR(g.logp[i], ref[i], tol) << "prompt " << g.prompt_index << " sample " << g.sample_index << " token " << i;
  }
}

TEST_F(Generation, CachedSamplingMatchesFullRecomputationF64) {
  check_against_recomputation(*K, DType::F64, false, 1e-10);
  check_against_recomputation(*K, DType::F64, true, 1e-10);  // qk_norm, qkv bias, untied head
}

TEST_F(Generation, CachedSamplingMatchesFullRecomputationF32) {
  check_against_recomputation(*K, DType::F32, true, 2e-4);
}

TEST_F(Generation, TemperatureScalesTheRecordedLogp) {
  Decoder m(tiny_config(40, true), *K, DType::F64);
  m.init_random(5);
  Generator gen(m, *K, 2);
  SamplingOptions o;
  o.max_new_tokens = 6;
  o.temperature = 0.6f;
  o.top_k = 7;
  o.top_p = 0.9f;
  const auto prompts = random_prompts({4, 6}, 40, 8);
  for (const auto& g : gen.generate(prompts, o)) {
    const auto ref = recomputed_logp(*K, m, prompts[size_t(g.prompt_index)], g.tokens, double(0.6f));
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(g.logp[i], ref[i], 1e-10);
  }
}

TEST_F(Generation, GreedyMatchesArgmaxOfRecomputation) {
  Decoder m(tiny_config(40, true), *K, DType::F64);
  m.init_random(9);
  Generator gen(m, *K, 3);
  SamplingOptions o;
  o.max_new_tokens = 10;
  o.temperature = 0.0f;
  const auto prompts = random_prompts({3, 8, 2, 5}, 40, 4);
  const auto out = gen.generate(prompts, o);
  for (const auto& g : out) {
    std::vector<int32_t> doc = prompts[size_t(g.prompt_index)];
    for (size_t i = 0; i < g.tokens.size(); ++i) {
      Batch b = make_lm_batch(*K, {doc}, 40);
      Tensor logits;
      m.logits_at(b, {int64_t(doc.size()) - 1}, logits);
      const auto h = to_host_f64(*K, logits);
      const int32_t best = int32_t(std::max_element(h.begin(), h.end()) - h.begin());
      ASSERT_EQ(g.tokens[i], best) << "prompt " << g.prompt_index << " token " << i;
      doc.push_back(best);
    }
  }
  // The public greedy_decode (held-out eval) gives the same continuations.
  const auto gd = greedy_decode(m, *K, prompts, /*end_id=*/-1, 10, 40);
  for (size_t p = 0; p < prompts.size(); ++p) EXPECT_EQ(gd[p], out[p].tokens);
}

// InferenceEngine::scratch_bytes (what the memory plan counts as "generation scratch") plus the
// KV caches and the logits is what an engine allocates, for every architecture variant, dtype and
// chunk size.
TEST_F(Generation, ScratchBytesMatchTheEngine) {
  struct Variant {
    const char* name;
    bool fancy;
    AttentionKind attention;
    MlpActivation mlp;
  };
  for (const Variant& v : {Variant{"plain", false, AttentionKind::Standard, MlpActivation::SwiGLU},
                           Variant{"qk norm + bias", true, AttentionKind::Standard, MlpActivation::SwiGLU},
                           Variant{"differential", false, AttentionKind::Differential, MlpActivation::PolyNorm},
                           Variant{"grouped differential", false, AttentionKind::GroupedDifferential,
                                   MlpActivation::SwiGLU}})
    for (DType dt : {DType::F32, DType::F64})
      for (int step_tokens : {0, 5}) {
        SCOPED_TRACE(std::string(v.name) + " " + dtype_name(dt) + " max_step_tokens " + std::to_string(step_tokens));
        ModelConfig c = tiny_config(40, v.fancy);
        c.attention = v.attention;
        c.mlp_activation = v.mlp;
        if (v.attention == AttentionKind::Differential) c.n_noise_heads = c.n_heads;
        if (v.attention == AttentionKind::GroupedDifferential) c.n_noise_heads = 2;
        Decoder m(c, *K, dt);
        const int slots = 3, len = 16;
        InferenceEngine e(m, *K, slots, len, step_tokens);
        const int64_t caches = (c.differential() ? 4 : 2) * int64_t(c.n_layers) * slots * len * c.n_kv_heads *
                               c.head_dim * int64_t(dtype_size(m.compute_dtype()));
        const int64_t logits = int64_t(slots) * c.vocab_size * int64_t(dtype_size(m.compute_dtype()));
        EXPECT_EQ(e.allocated_bytes(),
                  InferenceEngine::scratch_bytes(c, slots, step_tokens, m.compute_dtype(), m.stat_dtype()) + caches +
                      logits);
      }
}

TEST_F(Generation, ChunkedPrefillAndCopySlotMatchPlainPrefill) {
  Decoder m(tiny_config(40, true), *K, DType::F64);
  m.init_random(2);
  const auto prompts = random_prompts({7, 3, 9}, 40, 6);
  InferenceEngine big(m, *K, 3, 16), small(m, *K, 3, 16, /*max_step_tokens=*/4);
  const auto a = to_host_f64(*K, big.prefill({0, 1, 2}, prompts));
  const auto b = to_host_f64(*K, small.prefill({2, 0, 1}, prompts));
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-12);
  // Against the decoder on the packed prompts.
  Batch pb = make_lm_batch(*K, prompts, 40);
  Tensor ref;
  m.logits_at(pb, {6, 9, 18}, ref);
  const auto r = to_host_f64(*K, ref);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], r[i], 1e-10);
  EXPECT_EQ(small.slot_length(2), 7);

  // Prefill prompt 2 once into slot 0, share it with slots 1 and 2, then decode the
  // same continuation everywhere: identical logits to a fresh prefill of prompt + token.
  InferenceEngine e(m, *K, 3, 16);
  e.prefill({0}, {prompts[2]});
  e.copy_slot(1, 0, 9);
  e.copy_slot(2, 0, 9);
  EXPECT_EQ(e.slot_length(2), 9);
  const auto d = to_host_f64(*K, e.decode({2, 1, 0}, {5, 5, 5}, {9, 9, 9}));
  std::vector<int32_t> longer = prompts[2];
  longer.push_back(5);
  InferenceEngine f(m, *K, 1, 16);
  const auto want = to_host_f64(*K, f.prefill({0}, {longer}));
  for (size_t row = 0; row < 3; ++row)
    for (size_t j = 0; j < want.size(); ++j) EXPECT_NEAR(d[row * 40 + j], want[j], 1e-12);
  // Misuse is reported.
  EXPECT_THROW(e.decode({1}, {3}, {12}), Error);                 // gap after position 10
  EXPECT_THROW(e.copy_slot(1, 0, 11), Error);                    // slot 0 holds 10
  EXPECT_THROW(e.prefill({0, 0}, {prompts[0], prompts[1]}), Error);
  EXPECT_THROW(e.prefill({0}, {std::vector<int32_t>(17, 1)}), Error);  // longer than max_len
}

// Packed prefill (a chunk of whole prompts attends through attention_forward) against the
// engine with it off (attention_cached for every chunk) and the decoder: the same logits,
// and the same caches (a decode step in every slot), with chunks of two prompts, a prompt
// split over chunks, a chunk starting mid-prompt and a prompt filling a chunk.
TEST_F(Generation, PackedPrefillMatchesCachedPrefill) {
  for (bool fancy : {false, true}) {
    SCOPED_TRACE(fancy ? "qk norm + bias" : "plain");
    Decoder m(tiny_config(40, fancy), *K, DType::F64);
    m.init_random(8);
    // chunks of 10: [4 | 6] packed, [10 of 13] cached, [3 of 13 | 5 | 2] cached, [10] packed
    const auto prompts = random_prompts({4, 6, 13, 5, 2, 10}, 40, 9);
    const std::vector<int> slots{5, 0, 3, 1, 4, 2};
    InferenceEngine p(m, *K, 6, 16, 10), c(m, *K, 6, 16, 10);
    c.set_packed_prefill(false);
    EXPECT_TRUE(p.packed_prefill());
    EXPECT_FALSE(c.packed_prefill());
    const auto a = to_host_f64(*K, p.prefill(slots, prompts));
    const auto b = to_host_f64(*K, c.prefill(slots, prompts));
    EXPECT_TRUE(p.packed_prefill());  // the CPU backend ran attention_forward
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-12) << i;
    Batch pb = make_lm_batch(*K, prompts, 40);
    std::vector<int64_t> last;
    int64_t end = 0;
    for (const auto& pr : prompts) last.push_back((end += int64_t(pr.size())) - 1);
    Tensor ref;
    m.logits_at(pb, last, ref);
    const auto r = to_host_f64(*K, ref);
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], r[i], 1e-10) << i;
    std::vector<int32_t> toks, pos;
    for (size_t i = 0; i < prompts.size(); ++i) {
      toks.push_back(int32_t(7 * i + 3));
      pos.push_back(int32_t(prompts[i].size()));
    }
    const auto da = to_host_f64(*K, p.decode(slots, toks, pos));
    const auto db = to_host_f64(*K, c.decode(slots, toks, pos));
    for (size_t i = 0; i < da.size(); ++i) EXPECT_NEAR(da[i], db[i], 1e-12) << i;
  }
}

// A vocabulary limit below the model's (a padded vocabulary): the engine's logits of
// ids >= the limit are -inf and no sample draws them, at a temperature that would.
TEST_F(Generation, VocabLimitMasksPaddedIds) {
  Decoder m(tiny_config(40, false), *K, DType::F64);
  m.init_random(4);
  InferenceEngine e(m, *K, 2, 16);
  e.set_vocab_limit(30);
  const auto l = to_host_f64(*K, e.prefill({0, 1}, random_prompts({3, 5}, 40, 2)));
  for (size_t r = 0; r < 2; ++r)
    for (size_t j = 0; j < 40; ++j) {
      if (j < 30) EXPECT_TRUE(std::isfinite(l[r * 40 + j])) << r << " " << j;
      else EXPECT_EQ(l[r * 40 + j], -INFINITY) << r << " " << j;
    }
  Generator gen(m, *K, 4);
  SamplingOptions o;
  o.n_samples = 4;
  o.max_new_tokens = 30;
  o.temperature = 5.0f;
  gen.set_vocab_limit(30);
  int64_t n = 0;
  for (const auto& g : gen.generate(random_prompts({2, 4}, 40, 3), o))
    for (int32_t t : g.tokens) {
      EXPECT_LT(t, 30);
      ++n;
    }
  EXPECT_EQ(n, 2 * 4 * 30);
  gen.set_vocab_limit(0);  // off again: the high ids come back at this temperature
  bool high = false;
  for (const auto& g : gen.generate(random_prompts({2, 4}, 40, 3), o))
    for (int32_t t : g.tokens) high = high || t >= 30;
  EXPECT_TRUE(high);
}

TEST_F(Generation, SamplesDoNotDependOnBatchingOrPromptOrder) {
  Decoder m(tiny_config(40, false), *K, DType::F64);
  m.init_random(3);
  SamplingOptions o;
  o.n_samples = 4;
  o.max_new_tokens = 9;
  o.temperature = 1.2f;
  o.top_p = 0.95f;
  o.seed = 77;
  o.stop_ids = {0, 1};  // some samples stop early, so slots are refilled at different times
  const auto prompts = random_prompts({4, 7, 2}, 40, 12);
  const std::vector<uint64_t> uids = {100, 200, 300};
  Generator g1(m, *K, 1), g3(m, *K, 3), g16(m, *K, 16);
  const auto a = g1.generate(prompts, o, uids);
  const auto b = g3.generate(prompts, o, uids);
  const auto c = g16.generate(prompts, o, uids);
  // Reversed prompt order with the same uids: the same samples per uid.
  const std::vector<std::vector<int32_t>> rev = {prompts[2], prompts[1], prompts[0]};
  const auto d = g3.generate(rev, o, {300, 200, 100});
  ASSERT_EQ(a.size(), 12u);
  for (size_t s = 0; s < a.size(); ++s) {
    const size_t sr = (2 - s / 4) * 4 + s % 4;
    for (const auto* other : {&b[s], &c[s], &d[sr]}) {
      EXPECT_EQ(other->tokens, a[s].tokens) << "sample " << s;
      EXPECT_EQ(other->finish, a[s].finish);
      ASSERT_EQ(other->logp.size(), a[s].logp.size());
      for (size_t i = 0; i < a[s].logp.size(); ++i) EXPECT_NEAR(other->logp[i], a[s].logp[i], 1e-12);
    }
  }
  // A different seed changes the samples.
  o.seed = 78;
  const auto e = g3.generate(prompts, o, uids);
  int same = 0;
  for (size_t s = 0; s < a.size(); ++s) same += e[s].tokens == a[s].tokens;
  EXPECT_LT(same, 3);
}

TEST_F(Generation, GroupSamplesDifferAndPromptIsPrefilledOnce) {
  Decoder m(tiny_config(40, true), *K, DType::F64);
  m.init_random(4);
  SamplingOptions o;
  o.n_samples = 6;
  o.max_new_tokens = 10;
  const auto prompts = random_prompts({5, 8}, 40, 1);
  for (int batch : {1, 4, 12}) {
    Generator gen(m, *K, batch);
    const auto out = gen.generate(prompts, o);
    for (int p = 0; p < 2; ++p) {
      std::set<std::vector<int32_t>> distinct;
      for (int j = 0; j < 6; ++j) {
        const auto& g = out[size_t(p * 6 + j)];
        EXPECT_EQ(g.prompt_index, p);
        EXPECT_EQ(g.sample_index, j);
        distinct.insert(g.tokens);
      }
      EXPECT_GE(distinct.size(), 5u) << "prompt " << p;
    }
    const GenerationStats& st = gen.last_stats();
    EXPECT_EQ(st.prefill_tokens, 13) << "max_batch " << batch;  // each prompt once
    EXPECT_EQ(st.generated_tokens, 120);
    EXPECT_EQ(st.sequences, 12);
    EXPECT_GE(st.decode_steps, 9);  // the first token comes from the prefill
    EXPECT_NE(st.line().find("120 tok"), std::string::npos);
  }
}

TEST_F(Generation, EosStopStringsAndLengthLimits) {
  auto tok = make_byte_tokenizer();
  Decoder m(tiny_config(tok->vocab_size(), true), *K, DType::F64);
  m.init_random(21);
  Generator gen(m, *K, 2, tok.get());
  const auto prompts = random_prompts({6, 3}, 256, 5);
  SamplingOptions o;
  o.temperature = 0.0f;
  o.max_new_tokens = 12;
  const auto base = gen.generate(prompts, o);
  for (const auto& g : base) {
    EXPECT_EQ(g.finish, FinishReason::Length);
    EXPECT_EQ(g.tokens.size(), 12u);
    EXPECT_EQ(g.text, tok->decode(g.tokens));
  }
  // EOS: stop at the first occurrence of a token that greedy emits at step >= 2.
  const auto& t0 = base[0].tokens;
  size_t k = 2;
  while (std::find(t0.begin(), t0.begin() + long(k), t0[k]) != t0.begin() + long(k)) ++k;
  ASSERT_LT(k, t0.size());
  o.stop_ids = {t0[k]};
  auto eos = gen.generate({prompts[0]}, o);
  EXPECT_EQ(eos[0].finish, FinishReason::Eos);
  EXPECT_EQ(eos[0].tokens, std::vector<int32_t>(t0.begin(), t0.begin() + long(k) + 1));
  // Stop string: the text of two greedy tokens; generation ends where it first appears.
  o.stop_ids.clear();
  const std::string ss = tok->decode({base[1].tokens[4], base[1].tokens[5]});
  o.stop_strings = {ss, "never appears \x01\x02"};
  size_t m_end = 1;
  while (tok->decode(std::vector<int32_t>(base[1].tokens.begin(), base[1].tokens.begin() + long(m_end)))
             .find(ss) == std::string::npos)
    ++m_end;
  auto st = gen.generate({prompts[1]}, o);
  EXPECT_EQ(st[0].finish, FinishReason::StopString);
  EXPECT_EQ(st[0].tokens, std::vector<int32_t>(base[1].tokens.begin(), base[1].tokens.begin() + long(m_end)));
  // max_new_tokens 1: the prefill alone decides.
  o.stop_strings.clear();
  o.max_new_tokens = 1;
  auto one = gen.generate(prompts, o);
  EXPECT_EQ(one[1].tokens, std::vector<int32_t>{base[1].tokens[0]});
  EXPECT_EQ(one[1].finish, FinishReason::Length);
  // A fixed cache length cuts a sequence when the next position would not fit.
  Generator capped(m, *K, 2, tok.get(), /*max_len=*/8);
  o.max_new_tokens = 10;
  auto cut = capped.generate({prompts[0]}, o);  // prompt 6: positions 6, 7 -> 3 tokens
  EXPECT_EQ(cut[0].finish, FinishReason::Length);
  EXPECT_EQ(cut[0].tokens, std::vector<int32_t>(t0.begin(), t0.begin() + 3));
  // Errors a user can act on.
  Generator no_tok(m, *K, 2);
  o.stop_strings = {"x"};
  EXPECT_THROW(no_tok.generate(prompts, o), Error);
  o.stop_strings.clear();
  EXPECT_THROW(capped.generate({std::vector<int32_t>(9, 3)}, o), Error);
  EXPECT_THROW(gen.generate({{}}, o), Error);
}

}  // namespace
}  // namespace temper
