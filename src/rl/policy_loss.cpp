// Shared parts of the policy losses: names, input validation, aggregation weights.
#include "rl/policy_loss.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "rl/grpo.h"
#include "rl/gspo.h"

namespace temper {

LossAgg loss_agg_from_name(const std::string& name) {
  if (name == "token-mean") return LossAgg::TokenMean;
  if (name == "seq-mean-token-mean") return LossAgg::SeqMeanTokenMean;
  fail("unknown loss aggregation '", name, "': use token-mean or seq-mean-token-mean");
}

const char* loss_agg_name(LossAgg a) {
  return a == LossAgg::TokenMean ? "token-mean" : "seq-mean-token-mean";
}

PolicyAlgorithm policy_algorithm_from_name(const std::string& name) {
  if (name == "grpo") return PolicyAlgorithm::GRPO;
  if (name == "gspo") return PolicyAlgorithm::GSPO;
  fail("unknown policy-loss algorithm '", name, "': use grpo or gspo");
}

const char* policy_algorithm_name(PolicyAlgorithm a) { return a == PolicyAlgorithm::GRPO ? "grpo" : "gspo"; }

namespace policy_detail {

void validate(const std::vector<PolicySample>& batch, const PolicyLossOptions& opt, const char* algo) {
  TEMPER_CHECK(std::isfinite(opt.eps_low) && opt.eps_low >= 0 && opt.eps_low < 1, algo, ": eps_low must be in [0, 1), got ",
               opt.eps_low);
  TEMPER_CHECK(std::isfinite(opt.eps_high) && opt.eps_high >= 0, algo, ": eps_high must be >= 0, got ", opt.eps_high);
  TEMPER_CHECK(std::isfinite(opt.kl_coef) && opt.kl_coef >= 0, algo, ": kl_coef must be >= 0, got ", opt.kl_coef);
  TEMPER_CHECK(std::isfinite(opt.denominator) && opt.denominator >= 0, algo,
               ": denominator must be >= 0 (0 = this batch's own count), got ", opt.denominator);
  TEMPER_CHECK(opt.max_log_ratio > 0, algo, ": max_log_ratio must be > 0, got ", opt.max_log_ratio);
  for (size_t i = 0; i < batch.size(); ++i) {
    const PolicySample& s = batch[i];
    const size_t T = s.cur_logp.size();
    TEMPER_CHECK(s.behaviour_logp.size() == T, algo, ": sample ", i, " has ", T, " current log-probs but ",
                 s.behaviour_logp.size(), " behaviour log-probs");
    TEMPER_CHECK(s.mask.empty() || s.mask.size() == T, algo, ": sample ", i, " has a mask of ", s.mask.size(),
                 " entries for ", T, " tokens");
    if (s.discarded) continue;
    TEMPER_CHECK(std::isfinite(s.advantage), algo, ": sample ", i, " has a non-finite advantage");
    if (opt.kl_coef > 0)
      TEMPER_CHECK(s.ref_logp.size() == T, algo, ": kl_coef > 0 needs reference log-probs, but sample ", i, " has ",
                   s.ref_logp.size(), " for ", T, " tokens");
    for (size_t t = 0; t < T; ++t) {
      if (!token_on(s, t)) continue;
      TEMPER_CHECK(std::isfinite(s.cur_logp[t]) && std::isfinite(s.behaviour_logp[t]), algo, ": sample ", i,
                   " token ", t, " has a non-finite log-prob (current ", s.cur_logp[t], ", behaviour ",
                   s.behaviour_logp[t], ")");
      if (opt.kl_coef > 0)
        TEMPER_CHECK(std::isfinite(s.ref_logp[t]), algo, ": sample ", i, " token ", t,
                     " has a non-finite reference log-prob");
    }
  }
}

int64_t valid_tokens(const PolicySample& s) {
  if (s.discarded) return 0;
  if (s.mask.empty()) return static_cast<int64_t>(s.cur_logp.size());
  return std::count_if(s.mask.begin(), s.mask.end(), [](uint8_t m) { return m != 0; });
}

double sample_weight(const PolicySample& s, int64_t tokens, double denom, const PolicyLossOptions& opt) {
  if (s.discarded || tokens == 0 || denom <= 0) return 0.0;
  return opt.loss_agg == LossAgg::TokenMean ? static_cast<double>(tokens) / denom : 1.0 / denom;
}

double clamp_log_ratio(double d, double limit) { return std::max(-limit, std::min(limit, d)); }

}  // namespace policy_detail

double loss_denominator(const std::vector<PolicySample>& batch, const PolicyLossOptions& opt) {
  double d = 0;
  for (const auto& s : batch) {
    int64_t n = policy_detail::valid_tokens(s);
    if (n == 0) continue;
    d += opt.loss_agg == LossAgg::TokenMean ? static_cast<double>(n) : 1.0;
  }
  return d;
}

PolicyLossResult policy_loss(PolicyAlgorithm algo, const std::vector<PolicySample>& batch,
                             const PolicyLossOptions& opt) {
  return algo == PolicyAlgorithm::GRPO ? grpo_loss(batch, opt) : gspo_loss(batch, opt);
}

}  // namespace temper
