// RL policy update over micro-batches with trajectory reuse (see policy_update.h).
#include "rl/policy_update.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"
#include "rl/update_batches.h"

namespace temper {

namespace {

TokenBatch token_batch(const RlMicroBatch& mb) { return {mb.tokens, mb.targets, mb.positions, mb.cu_seqlens}; }

// log-probs of every response token of the packed samples under `m`
void response_logp(Engine& m, const std::vector<RlMicroBatch>& mbs, std::vector<std::vector<double>>& out) {
  for (const auto& mb : mbs) scatter_response_logp(mb, m.forward(token_batch(mb)), out);
}

}  // namespace

UpdateStats policy_update(Engine& policy, Engine* ref, std::vector<RlSample>& samples, const UpdateOptions& uo,
                          double lr) {
  const auto t0 = std::chrono::steady_clock::now();
  UpdateStats st;
  const size_t S = samples.size();
  std::vector<RlSequence> seqs(S);
  for (size_t i = 0; i < S; ++i) seqs[i] = {&samples[i].prompt, &samples[i].response};
  std::vector<RlMicroBatch> mbs = pack_rl_sequences(seqs, uo.micro_batch_tokens);
  // Ranks that run their layers together (DP-shard gathers) pass as many micro-batches:
  // the others get empty ones (one token, no target, no gradient).
  const int64_t n_mb = policy.lockstep_count(int64_t(mbs.size()));
  while (int64_t(mbs.size()) < n_mb) {
    RlMicroBatch e;
    e.tokens = {0};
    e.targets = {-1};
    e.positions = {0};
    e.cu_seqlens = {0, 1};
    e.max_seqlen = 1;
    mbs.push_back(std::move(e));
  }

  // Behaviour log-probs, fixed for all reuse steps: the sampler's, or recomputed by the policy as it
  // is before the update. Recomputed, they are what the first reuse step's forward gives (same
  // weights, same batches, deterministic kernels), so that forward provides them instead of a pass
  // of its own (one forward of every micro-batch less per RL step); only when nothing trains does a
  // separate pass compute them (for the dumps and the gap metric).
  std::vector<std::vector<double>> behaviour(S), current(S);
  for (size_t i = 0; i < S; ++i) behaviour[i] = samples[i].sampler_logp;
  if (uo.recompute_behaviour)  // the shapes the recomputation gives (values come with the first forward)
    for (const auto& mb : mbs)
      for (size_t d = 0; d < mb.samples.size(); ++d)
        behaviour[size_t(mb.samples[d])].assign(size_t(mb.resp_len[d]), 0.0);
  auto sampler_gap = [&]() {
    double gap = 0;
    int64_t n = 0;
    if (uo.recompute_behaviour)
      for (size_t i = 0; i < S; ++i)
        for (size_t t = 0; t < samples[i].sampler_logp.size() && t < behaviour[i].size(); ++t, ++n)
          gap += std::fabs(samples[i].sampler_logp[t] - behaviour[i][t]);
    return policy.dp_sum(gap) / std::max(1.0, policy.dp_sum(double(n)));
  };
  std::vector<std::vector<double>> ref_logp(S);
  if (uo.loss.kl_coef > 0) {
    TEMPER_CHECK(ref != nullptr, "policy_update: kl_coef > 0 needs a reference model");
    response_logp(*ref, mbs, ref_logp);
  }
  auto finish = [&]() {
    for (size_t i = 0; i < S; ++i) {
      samples[i].behaviour_logp = behaviour[i];
      samples[i].current_logp = current[i].size() == behaviour[i].size() ? current[i] : behaviour[i];
    }
    st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return st;
  };

  // The aggregation's denominator over the whole global batch.
  std::vector<PolicySample> all(S);
  for (size_t i = 0; i < S; ++i) {
    all[i].cur_logp = behaviour[i];  // shapes only
    all[i].behaviour_logp = behaviour[i];
    all[i].advantage = samples[i].advantage;
    all[i].discarded = samples[i].discarded;
  }
  PolicyLossOptions lo = uo.loss;
  const double local_den = S ? loss_denominator(all, lo) : 0.0;
  lo.denominator = policy.dp_sum(local_den);
  int64_t local_tokens = 0, local_samples = 0;
  for (const RlSample& s : samples)
    if (!s.discarded && !s.response.empty()) {
      local_tokens += int64_t(s.response.size());
      ++local_samples;
    }
  st.tokens = policy.dp_sum(local_tokens);
  st.samples = policy.dp_sum(local_samples);
  if (lo.denominator <= 0) {  // nothing carries a gradient anywhere: no optimizer step
    if (uo.recompute_behaviour) response_logp(policy, mbs, behaviour);
    st.sampler_logp_gap = sampler_gap();
    return finish();
  }

  const bool gspo = uo.algorithm == PolicyAlgorithm::GSPO;
  std::vector<std::vector<double>> dl(S);
  double clip_lo = 0, clip_hi = 0, ratio = 0, akl = 0, rkl = 0, units = 0, ktoks = 0;
  for (int r = 0; r < uo.reuse_steps; ++r) {
    policy.zero_grad();
    double loss = 0, pg = 0;
    const bool behaviour_here = r == 0 && uo.recompute_behaviour;
    for (const auto& mb : mbs) {
      scatter_response_logp(mb, policy.forward(token_batch(mb)), current);
      if (behaviour_here)
        for (int64_t i : mb.samples) behaviour[size_t(i)] = current[size_t(i)];
      if (mb.samples.empty()) {  // a filler micro-batch
        policy.backward(std::vector<double>(mb.tokens.size(), 0.0));
        continue;
      }
      std::vector<PolicySample> part(mb.samples.size());
      for (size_t d = 0; d < mb.samples.size(); ++d) {
        const size_t i = size_t(mb.samples[d]);
        part[d].cur_logp = current[i];
        part[d].behaviour_logp = behaviour[i];
        if (lo.kl_coef > 0) part[d].ref_logp = ref_logp[i];
        part[d].advantage = samples[i].advantage;
        part[d].discarded = samples[i].discarded;
      }
      PolicyLossResult res = policy_loss(uo.algorithm, part, lo);
      loss += res.loss;
      pg += res.stats.pg_loss;
      const double u = gspo ? double(res.stats.samples) : double(res.stats.tokens);
      clip_lo += res.stats.clip_frac_low * u;
      clip_hi += res.stats.clip_frac_high * u;
      ratio += res.stats.ratio_mean * u;
      units += u;
      akl += res.stats.approx_kl * double(res.stats.tokens);
      rkl += res.stats.ref_kl * double(res.stats.tokens);
      ktoks += double(res.stats.tokens);
      for (size_t d = 0; d < mb.samples.size(); ++d) dl[size_t(mb.samples[d])] = std::move(res.dlogp[d]);
      policy.backward(gather_response_coeffs(mb, dl));
    }
    if (behaviour_here) st.sampler_logp_gap = sampler_gap();
    st.loss = policy.dp_sum(loss);
    st.pg_loss = policy.dp_sum(pg);
    TEMPER_CHECK(std::isfinite(st.loss), "RL loss is not finite (", st.loss, "); lower rl.lr");
    EngineStepStats es = policy.step(lr);
    st.grad_norm = es.grad_norm;
    st.optimizer = std::move(es.metrics);
    ++st.optimizer_steps;
  }
  const double U = std::max(1.0, policy.dp_sum(units)), KT = std::max(1.0, policy.dp_sum(ktoks));
  st.clip_frac_low = policy.dp_sum(clip_lo) / U;
  st.clip_frac_high = policy.dp_sum(clip_hi) / U;
  st.ratio_mean = policy.dp_sum(ratio) / U;
  st.approx_kl = policy.dp_sum(akl) / KT;
  st.ref_kl = policy.dp_sum(rkl) / KT;
  return finish();
}

}  // namespace temper
