// The optimisation half of an RL step: the samples of a rollout batch are
// packed into micro-batches; behaviour (and reference) log-probs are fixed once
// (recomputed behaviour log-probs come from the first reuse step's forward, which
// runs on the weights before the update: no pass of their own);
// then reuse_steps times: forward the policy, the GRPO/GSPO loss on the host
// (rl/grpo, rl/gspo) gives dL/dlogp per response token, backward, and one
// engine step (gradients reduced over the mesh, clip, optimizer; train/engine).
// Ratios are always taken against the stored behaviour log-probs (mixed-policy
// trajectory reuse).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "rl/policy_loss.h"
#include "rl/rl_sample.h"
#include "train/engine.h"

namespace temper {

struct UpdateOptions {
  PolicyAlgorithm algorithm = PolicyAlgorithm::GRPO;
  PolicyLossOptions loss;
  int reuse_steps = 1;
  int64_t micro_batch_tokens = 8192;
  bool recompute_behaviour = true;  // false: the sampler's log-probs are the behaviour policy
};

struct UpdateStats {
  double loss = 0, pg_loss = 0;           // of the last reuse step
  double clip_frac_low = 0, clip_frac_high = 0, ratio_mean = 0, approx_kl = 0, ref_kl = 0;  // averaged over reuse steps
  double grad_norm = 0;                   // of the last reuse step (before clipping)
  double sampler_logp_gap = 0;            // mean |sampler - recomputed behaviour| per token
  int64_t tokens = 0;                     // trained response tokens (global)
  int64_t samples = 0;                    // trained samples (global)
  int64_t optimizer_steps = 0;
  std::map<std::string, double> optimizer;  // the optimizer's metrics after the last step (QK-clip: max_logit, qk_clipped)
  double seconds = 0;
};

// Collective over the policy's mesh: every rank calls it, possibly with no
// samples; the sp ranks of one data-parallel rank with the same samples in the
// same order. Sets every sample's behaviour_logp and current_logp. `ref` is the
// frozen reference policy for the KL term (nullptr when loss.kl_coef == 0).
// Every optimizer step uses the learning rate lr.
UpdateStats policy_update(Engine& policy, Engine* ref, std::vector<RlSample>& samples, const UpdateOptions& opt,
                          double lr);

}  // namespace temper
