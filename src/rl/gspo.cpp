// GSPO sequence-level clipped surrogate loss and its exact gradient (see gspo.h).
#include "rl/gspo.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace temper {

PolicyLossResult gspo_loss(const std::vector<PolicySample>& batch, const PolicyLossOptions& opt) {
  using namespace policy_detail;
  validate(batch, opt, "gspo");
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
    const double inv_T = 1.0 / static_cast<double>(T);
    const double w = sample_weight(s, T, denom, opt);
    const double A = s.advantage;

    double sum_d = 0;
    for (size_t t = 0; t < s.cur_logp.size(); ++t) {
      if (!token_on(s, t)) continue;
      const double dt = s.cur_logp[t] - s.behaviour_logp[t];
      sum_d += dt;
      const double rt = std::exp(clamp_log_ratio(dt, opt.max_log_ratio));
      kl_old_sum += rt - 1.0 - clamp_log_ratio(dt, opt.max_log_ratio);  // token-level k3, for monitoring
    }
    const double raw = sum_d * inv_T;
    const double d = clamp_log_ratio(raw, opt.max_log_ratio);
    const double sr = std::exp(d);
    const double unclipped = sr * A;
    const double clipped = std::min(hi, std::max(lo, sr)) * A;
    double l_seq, dl_ds;
    if (unclipped <= clipped) {
      l_seq = -unclipped;
      dl_ds = (d == raw) ? -A : 0.0;
    } else {
      l_seq = -clipped;
      dl_ds = 0.0;
      if (A < 0 && sr < lo) ++clip_lo;
      if (A > 0 && sr > hi) ++clip_hi;
    }
    res.loss += w * l_seq;
    st.pg_loss += w * l_seq;
    const double g_pg = w * dl_ds * sr * inv_T;  // ds/dcur_t = s / |y|
    for (size_t t = 0; t < s.cur_logp.size(); ++t) {
      if (!token_on(s, t)) continue;
      double gt = g_pg;
      if (opt.kl_coef > 0) {
        const double u = s.ref_logp[t] - s.cur_logp[t];
        const double eu = std::exp(std::min(u, opt.max_log_ratio));
        const double k3 = eu - u - 1.0;
        kl_ref_sum += k3;
        kl_part += w * inv_T * opt.kl_coef * k3;
        gt += w * inv_T * opt.kl_coef * (1.0 - eu);
      }
      g[t] = gt;
    }
    ratio_sum += sr;
    rmin = std::min(rmin, sr);
    rmax = std::max(rmax, sr);
  }
  res.loss += kl_part;
  if (st.samples > 0) {
    const double n = static_cast<double>(st.samples);
    st.ratio_mean = ratio_sum / n;
    st.ratio_min = rmin;
    st.ratio_max = rmax;
    st.clip_frac_low = clip_lo / n;
    st.clip_frac_high = clip_hi / n;
  }
  if (st.tokens > 0) {
    st.approx_kl = kl_old_sum / static_cast<double>(st.tokens);
    st.ref_kl = kl_ref_sum / static_cast<double>(st.tokens);
  }
  return res;
}

}  // namespace temper
