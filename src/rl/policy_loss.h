// Shared types of the clipped policy-gradient losses (rl/grpo, rl/gspo): options,
// per-sample inputs (per-token log-probs of the response copied to the host),
// and the result (loss value, dL/dlogp per token for Decoder::backward, stats).
//
// Everything is host-side double arithmetic; nothing here names a device. The
// phase feeds `dlogp` to Decoder::backward, which backpropagates
// L = sum_t dlogp_t * logp_t, i.e. exactly the gradient of `loss` wrt cur_logp.
//
// Which ratio the eps apply to:
//   GRPO (grpo.h): the per-token ratio r_t = exp(cur_t - behaviour_t), clipped to
//     [1 - eps_low, 1 + eps_high]; DAPO's clip-higher uses eps_low 0.2 / eps_high 0.28.
//   GSPO (gspo.h): the sequence ratio s = exp(mean_t (cur_t - behaviour_t)), clipped
//     to [1 - eps_low, 1 + eps_high]. Because s is length-normalised it stays close
//     to 1: the GSPO paper uses eps_low 3e-4 / eps_high 4e-4; the Motif seeds use an
//     expanded range [0.28, 0.40] with no length penalty.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace temper {

enum class LossAgg {
  TokenMean,         // sum over every valid token of the batch / number of valid tokens
  SeqMeanTokenMean,  // mean over samples of (mean over the sample's valid tokens)
};
LossAgg loss_agg_from_name(const std::string& name);  // "token-mean" | "seq-mean-token-mean"
const char* loss_agg_name(LossAgg a);

enum class PolicyAlgorithm { GRPO, GSPO };
PolicyAlgorithm policy_algorithm_from_name(const std::string& name);  // "grpo" | "gspo"
const char* policy_algorithm_name(PolicyAlgorithm a);

struct PolicyLossOptions {
  double eps_low = 0.2;   // lower clip: ratio >= 1 - eps_low (see the header comment)
  double eps_high = 0.28; // upper clip: ratio <= 1 + eps_high
  LossAgg loss_agg = LossAgg::TokenMean;
  // Coefficient of the k3 KL estimator to the reference policy,
  // k3_t = exp(ref_t - cur_t) - (ref_t - cur_t) - 1, added per token to the loss
  // (aggregated like the tokens). 0 = off (then ref_logp is not needed).
  double kl_coef = 0.0;
  // Divisor of the aggregation. 0 = this call's own count (valid tokens for
  // TokenMean, non-discarded samples for SeqMeanTokenMean). When a minibatch is
  // split into micro-batches (or over ranks) and gradients are summed, pass the
  // whole minibatch's count (loss_denominator() of every part, summed) so the
  // sum of the parts equals the loss of the whole.
  double denominator = 0.0;
  // |log ratio| is clamped to this before exp (beyond it the gradient is 0),
  // so a stale behaviour log-prob cannot overflow the loss.
  double max_log_ratio = 20.0;
};

// One response. All per-token vectors cover the response tokens only and have
// the same length T (ref_logp may be empty when kl_coef == 0; mask may be empty
// = every token counts).
struct PolicySample {
  std::vector<double> cur_logp;        // log pi_theta(y_t | ...), the current policy
  std::vector<double> behaviour_logp;  // log pi_old(y_t | ...), recorded at generation
  std::vector<double> ref_logp;        // log pi_ref(y_t | ...), only for the KL term
  std::vector<uint8_t> mask;           // 1 = token takes part, 0 = ignored
  double advantage = 0.0;
  bool discarded = false;  // e.g. unparsable: contributes nothing, gradient zero
};

struct PolicyLossStats {
  int64_t samples = 0;    // non-discarded samples with at least one valid token
  int64_t discarded = 0;  // samples skipped (discarded flag)
  int64_t tokens = 0;     // valid tokens of the non-discarded samples
  // Fractions of the clipped units (tokens for GRPO, sequences for GSPO) whose
  // gradient the clip removed: ratio below 1-eps_low with A < 0 (low) or above
  // 1+eps_high with A > 0 (high).
  double clip_frac_low = 0.0;
  double clip_frac_high = 0.0;
  double ratio_mean = 0.0;   // mean token ratio (GRPO) or mean sequence ratio (GSPO)
  double ratio_min = 0.0;
  double ratio_max = 0.0;
  double approx_kl = 0.0;    // mean over tokens of k3(behaviour || current) = r - 1 - log r
  double ref_kl = 0.0;       // mean over tokens of the k3 reference KL (0 when kl_coef == 0)
  double pg_loss = 0.0;      // the clipped surrogate part of `loss` (loss = pg_loss + kl part)
};

struct PolicyLossResult {
  double loss = 0.0;
  // dL/dcur_logp, same shape as the inputs (zeros for discarded samples and masked tokens).
  std::vector<std::vector<double>> dlogp;
  PolicyLossStats stats;
};

// The aggregation's natural divisor for this batch (what denominator = 0 uses).
double loss_denominator(const std::vector<PolicySample>& batch, const PolicyLossOptions& opt);

// Dispatches to grpo_loss or gspo_loss.
PolicyLossResult policy_loss(PolicyAlgorithm algo, const std::vector<PolicySample>& batch,
                             const PolicyLossOptions& opt);

// ---- helpers shared by grpo.cpp and gspo.cpp --------------------------------
namespace policy_detail {
// Throws temper::Error naming the sample and the vector when shapes or values are bad.
void validate(const std::vector<PolicySample>& batch, const PolicyLossOptions& opt, const char* algo);
int64_t valid_tokens(const PolicySample& s);  // 0 for discarded samples
inline bool token_on(const PolicySample& s, size_t t) { return s.mask.empty() || s.mask[t] != 0; }
// The weight of one sample's token-mean in the aggregated loss: tokens_i / D for
// TokenMean, 1 / D for SeqMeanTokenMean (D = the denominator in use).
double sample_weight(const PolicySample& s, int64_t tokens, double denom, const PolicyLossOptions& opt);
double clamp_log_ratio(double d, double limit);
}  // namespace policy_detail

}  // namespace temper
