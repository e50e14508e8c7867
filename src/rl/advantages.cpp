// Group-normalised advantages over the non-discarded samples (see advantages.h).
#include "rl/advantages.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace temper {

GroupAdvantages group_advantages(const std::vector<double>& rewards, const std::vector<uint8_t>& discarded,
                                 const std::vector<int>& group_sizes, const AdvantageOptions& opt) {
  TEMPER_CHECK(discarded.empty() || discarded.size() == rewards.size(), "advantages: ", rewards.size(),
               " rewards but ", discarded.size(), " discarded flags");
  TEMPER_CHECK(std::isfinite(opt.eps) && opt.eps >= 0, "advantages: eps must be >= 0, got ", opt.eps);
  size_t total = 0;
  for (size_t g = 0; g < group_sizes.size(); ++g) {
    TEMPER_CHECK(group_sizes[g] > 0, "advantages: group ", g, " has size ", group_sizes[g], "; sizes must be > 0");
    total += static_cast<size_t>(group_sizes[g]);
  }
  TEMPER_CHECK(total == rewards.size(), "advantages: group sizes add up to ", total, " but there are ",
               rewards.size(), " rewards");

  GroupAdvantages out;
  out.advantages.assign(rewards.size(), 0.0);
  const size_t G = group_sizes.size();
  out.zero_variance.assign(G, 0);
  out.group_mean.assign(G, 0.0);
  out.group_std.assign(G, 0.0);
  out.group_kept.assign(G, 0);

  size_t begin = 0;
  for (size_t g = 0; g < G; ++g) {
    const size_t end = begin + static_cast<size_t>(group_sizes[g]);
    double sum = 0, lo = 0, hi = 0;
    int m = 0;
    for (size_t j = begin; j < end; ++j) {
      if (!discarded.empty() && discarded[j]) {
        ++out.discarded;
        continue;
      }
      TEMPER_CHECK(std::isfinite(rewards[j]), "advantages: reward of sample ", j, " (group ", g,
                   ") is not finite: ", rewards[j]);
      lo = m == 0 ? rewards[j] : std::min(lo, rewards[j]);
      hi = m == 0 ? rewards[j] : std::max(hi, rewards[j]);
      sum += rewards[j];
      ++m;
    }
    out.group_kept[g] = m;
    const double mean = m > 0 ? sum / m : 0.0;
    double ss = 0;
    for (size_t j = begin; j < end; ++j)
      if (discarded.empty() || !discarded[j]) ss += (rewards[j] - mean) * (rewards[j] - mean);
    const int dof = opt.unbiased_std ? m - 1 : m;
    const double sd = dof > 0 ? std::sqrt(ss / dof) : 0.0;
    out.group_mean[g] = mean;
    out.group_std[g] = sd;
    // Equal rewards (exactly) or < 2 kept samples: no signal.
    if (m < 2 || hi == lo) {
      out.zero_variance[g] = 1;
      ++out.zero_variance_groups;
    } else {
      for (size_t j = begin; j < end; ++j) {
        if (!discarded.empty() && discarded[j]) continue;
        const double c = rewards[j] - mean;
        out.advantages[j] = opt.normalize_std ? c / (sd + opt.eps) : c;
      }
    }
    begin = end;
  }
  return out;
}

GroupAdvantages group_advantages(const std::vector<double>& rewards, const std::vector<uint8_t>& discarded, int n,
                                 const AdvantageOptions& opt) {
  TEMPER_CHECK(n > 0, "advantages: group size must be > 0, got ", n);
  TEMPER_CHECK(rewards.size() % static_cast<size_t>(n) == 0, "advantages: ", rewards.size(),
               " rewards are not a whole number of groups of ", n);
  return group_advantages(rewards, discarded, std::vector<int>(rewards.size() / n, n), opt);
}

std::vector<uint8_t> discarded_from_verdicts(const std::vector<Verdict>& verdicts) {
  std::vector<uint8_t> d(verdicts.size());
  for (size_t j = 0; j < verdicts.size(); ++j) d[j] = verdicts[j] == Verdict::Unparsable ? 1 : 0;
  return d;
}

}  // namespace temper
