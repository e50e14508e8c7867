// GRPO token-level clipped surrogate loss and its exact gradient (see grpo.h).
#include "rl/grpo.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace temper {

PolicyLossResult grpo_loss(const std::vector<PolicySample>& batch, const PolicyLossOptions& opt) {
  using namespace policy_detail;
  validate(batch, opt, "grpo");
  const double denom = opt.denominator > 0 ? opt.denominator : loss_denominator(batch, opt);
  const double lo = 1.0 - opt.eps_low, hi = 1.0 + opt.eps_high;

  PolicyLossResult res;
  res.dlogp.resize(batch.size());
  PolicyLossStats& st = res.stats;
  double ratio_sum = 0, kl_old_sum = 0, kl_ref_sum = 0, kl_part = 0;
  int64_t clip_lo = 0, clip_hi = 0;
  double rmin = std::numeric_limits<double>::infinity(), rmax = -rmin;

  for (size_t i = 0; i < batch.size(); ++i) {
    const PolicySample& s = batch[i];
    std::vector<double>& g = res.dlogp[i];
    g.assign(s.cur_logp.size(), 0.0);
    if (s.discarded) {
      ++st.discarded;
      continue;
    }
    const int64_t T = valid_tokens(s);
    if (T == 0) continue;
    ++st.samples;
    st.tokens += T;
    const double c = sample_weight(s, T, denom, opt) / static_cast<double>(T);  // per-token weight
    const double A = s.advantage;
    for (size_t t = 0; t < s.cur_logp.size(); ++t) {
      if (!token_on(s, t)) continue;
      const double raw = s.cur_logp[t] - s.behaviour_logp[t];
      const double d = clamp_log_ratio(raw, opt.max_log_ratio);
      const double r = std::exp(d);
      const double unclipped = r * A;
      const double clipped = std::min(hi, std::max(lo, r)) * A;
      double lt, gt;
      if (unclipped <= clipped) {
        lt = -unclipped;
        gt = (d == raw) ? -A * r : 0.0;  // clamped log ratio: constant, no gradient
      } else {
        lt = -clipped;
        gt = 0.0;
        if (A < 0 && r < lo) ++clip_lo;
        if (A > 0 && r > hi) ++clip_hi;
      }
      res.loss += c * lt;
      st.pg_loss += c * lt;
      if (opt.kl_coef > 0) {
        const double u = s.ref_logp[t] - s.cur_logp[t];
        const double eu = std::exp(std::min(u, opt.max_log_ratio));
        const double k3 = eu - u - 1.0;
        kl_ref_sum += k3;
        kl_part += c * opt.kl_coef * k3;
        gt += opt.kl_coef * (1.0 - eu);
      }
      g[t] = c * gt;
      ratio_sum += r;
      rmin = std::min(rmin, r);
      rmax = std::max(rmax, r);
      kl_old_sum += r - 1.0 - d;
    }
  }
  res.loss += kl_part;
  if (st.tokens > 0) {
    const double n = static_cast<double>(st.tokens);
    st.ratio_mean = ratio_sum / n;
    st.ratio_min = rmin;
    st.ratio_max = rmax;
    st.clip_frac_low = clip_lo / n;
    st.clip_frac_high = clip_hi / n;
    st.approx_kl = kl_old_sum / n;
    st.ref_kl = kl_ref_sum / n;
  }
  return res;
}

}  // namespace temper
