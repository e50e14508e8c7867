// Group-normalised advantages (GRPO family). A group is the n responses sampled
// for one prompt. Statistics use only the samples that are NOT discarded
// (unparsable responses are dropped from the gradient and counted):
//   A_j = (r_j - mean) / (std + eps)      (normalize_std = true)
//   A_j =  r_j - mean                      (normalize_std = false, Dr. GRPO style)
// A group whose kept rewards are all equal (or that has fewer than two kept
// samples) carries no signal: it is flagged zero_variance and all its
// advantages are 0 (the dynamic-sampling rule in difficulty_filter.h drops it).
#pragma once
#include <cstdint>
#include <vector>

#include "rl/rewards/reward.h"

namespace temper {

struct AdvantageOptions {
  bool normalize_std = true;
  bool unbiased_std = true;  // divide by (m - 1) like torch.std (verl, TRL); false: by m
  double eps = 1e-6;
};

struct GroupAdvantages {
  std::vector<double> advantages;      // per sample; 0 for discarded samples and zero-variance groups
  std::vector<uint8_t> zero_variance;  // per group: 1 = no learning signal
  std::vector<double> group_mean;      // per group, over kept samples (0 if none kept)
  std::vector<double> group_std;       // per group, over kept samples
  std::vector<int> group_kept;         // per group: number of non-discarded samples
  int64_t discarded = 0;               // samples discarded over all groups
  int64_t zero_variance_groups = 0;
};

// rewards/discarded are flat over the batch, group by group; group_sizes gives
// each group's length (their sum must equal rewards.size()). discarded may be
// empty (= none).
GroupAdvantages group_advantages(const std::vector<double>& rewards, const std::vector<uint8_t>& discarded,
                                 const std::vector<int>& group_sizes, const AdvantageOptions& opt = {});
// Every group has the same size n.
GroupAdvantages group_advantages(const std::vector<double>& rewards, const std::vector<uint8_t>& discarded,
                                 int n, const AdvantageOptions& opt = {});

// discarded[j] = 1 where verdicts[j] is Unparsable.
std::vector<uint8_t> discarded_from_verdicts(const std::vector<Verdict>& verdicts);

}  // namespace temper
