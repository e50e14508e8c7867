// Tests of rl/advantages, rl/grpo and rl/gspo: hand-computed values on tiny cases
// (clipping on both sides, negative advantages, zero-variance groups, discarded
// samples, both aggregation modes, the KL term) and dL/dlogp against central
// finite differences of the loss itself.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "rl/advantages.h"
#include "rl/grpo.h"
#include "rl/gspo.h"
#include "rl/policy_loss.h"

using namespace temper;

namespace {

// A sample whose log ratios cur - behaviour are `d` (behaviour fixed at -1).
PolicySample with_log_ratios(const std::vector<double>& d, double adv) {
  PolicySample s;
  for (double x : d) {
    s.behaviour_logp.push_back(-1.0);
    s.cur_logp.push_back(-1.0 + x);
  }
  s.advantage = adv;
  return s;
}

PolicyLossOptions opts(double lo, double hi, LossAgg agg = LossAgg::TokenMean) {
  PolicyLossOptions o;
  o.eps_low = lo;
  o.eps_high = hi;
  o.loss_agg = agg;
  return o;
}

// Max |analytic - numeric| over every token of every non-discarded sample.
double fd_max_error(PolicyAlgorithm algo, std::vector<PolicySample> batch, const PolicyLossOptions& o) {
  const PolicyLossResult base = policy_loss(algo, batch, o);
  const double h = 1e-6;
  double worst = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    for (size_t t = 0; t < batch[i].cur_logp.size(); ++t) {
      const double keep = batch[i].cur_logp[t];
      batch[i].cur_logp[t] = keep + h;
      const double up = policy_loss(algo, batch, o).loss;
      batch[i].cur_logp[t] = keep - h;
      const double dn = policy_loss(algo, batch, o).loss;
      batch[i].cur_logp[t] = keep;
      worst = std::max(worst, std::fabs((up - dn) / (2 * h) - base.dlogp[i][t]));
    }
  }
  return worst;
}

std::vector<PolicySample> random_batch(uint64_t seed, double spread, bool with_ref) {
  Rng rng(seed);
  std::vector<PolicySample> b;
  for (int i = 0; i < 6; ++i) {
    PolicySample s;
    const int T = 1 + static_cast<int>(rng.below(7));
    for (int t = 0; t < T; ++t) {
      const double beh = -0.2 - 3 * rng.uniform();
      s.behaviour_logp.push_back(beh);
      s.cur_logp.push_back(beh + spread * (2 * rng.uniform() - 1));
      if (with_ref) s.ref_logp.push_back(beh + 0.5 * (2 * rng.uniform() - 1));
      s.mask.push_back(rng.uniform() < 0.85 ? 1 : 0);
    }
    s.advantage = 2 * rng.uniform() - 1;
    s.discarded = i == 4;
    b.push_back(std::move(s));
  }
  return b;
}

}  // namespace

// ---- advantages ----------------------------------------------------------------

TEST(RlAdvantages, GroupNormalisedWithUnbiasedStd) {
  GroupAdvantages a = group_advantages({1, 0, 1, 0, 0.5, 0.5, 0.5}, {}, std::vector<int>{4, 3});
  const double sd = std::sqrt(1.0 / 3.0);  // (4 * 0.25) / 3
  ASSERT_EQ(a.advantages.size(), 7u);
  EXPECT_NEAR(a.advantages[0], 0.5 / (sd + 1e-6), 1e-12);
  EXPECT_NEAR(a.advantages[1], -0.5 / (sd + 1e-6), 1e-12);
  EXPECT_NEAR(a.group_std[0], sd, 1e-12);
  // second group: all equal → no signal, zeros
  EXPECT_EQ(a.zero_variance, (std::vector<uint8_t>{0, 1}));
  EXPECT_EQ(a.zero_variance_groups, 1);
  for (int j = 4; j < 7; ++j) EXPECT_EQ(a.advantages[j], 0.0);
}

TEST(RlAdvantages, DiscardedSamplesAreExcludedAndCounted) {
  const std::vector<Verdict> v = {Verdict::Correct, Verdict::Wrong, Verdict::Unparsable, Verdict::Correct};
  const auto disc = discarded_from_verdicts(v);
  EXPECT_EQ(disc, (std::vector<uint8_t>{0, 0, 1, 0}));
  // The discarded sample's reward (5) must not enter the mean or std.
  GroupAdvantages a = group_advantages({1, 0, 5, 1}, disc, 4);
  const double mean = 2.0 / 3.0, sd = std::sqrt((2 * (1.0 / 9) + 4.0 / 9) / 2);
  EXPECT_NEAR(a.group_mean[0], mean, 1e-12);
  EXPECT_NEAR(a.group_std[0], sd, 1e-12);
  EXPECT_EQ(a.discarded, 1);
  EXPECT_EQ(a.group_kept[0], 3);
  EXPECT_EQ(a.advantages[2], 0.0);
  EXPECT_NEAR(a.advantages[0], (1 - mean) / (sd + 1e-6), 1e-12);
  EXPECT_NEAR(a.advantages[1], (0 - mean) / (sd + 1e-6), 1e-12);
}

TEST(RlAdvantages, GroupsWithOneKeptSampleHaveNoSignal) {
  GroupAdvantages a = group_advantages({1, 0, 0}, {0, 1, 1}, 3);
  EXPECT_EQ(a.zero_variance[0], 1);
  EXPECT_EQ(a.advantages, (std::vector<double>{0, 0, 0}));
  EXPECT_EQ(a.discarded, 2);
}

TEST(RlAdvantages, OptionsNoStdAndPopulationStd) {
  AdvantageOptions o;
  o.normalize_std = false;
  GroupAdvantages a = group_advantages({1, 0, 0, 0}, {}, 4, o);
  EXPECT_NEAR(a.advantages[0], 0.75, 1e-15);
  EXPECT_NEAR(a.advantages[1], -0.25, 1e-15);
  o.normalize_std = true;
  o.unbiased_std = false;
  o.eps = 0;
  a = group_advantages({1, 0}, {}, 2, o);
  EXPECT_NEAR(a.advantages[0], 1.0, 1e-15);  // population std 0.5
  EXPECT_NEAR(a.advantages[1], -1.0, 1e-15);
}

TEST(RlAdvantages, RejectsBadShapes) {
  EXPECT_THROW(group_advantages({1, 0, 1}, {}, 2), Error);
  EXPECT_THROW(group_advantages({1, 0}, {0}, 2), Error);
  EXPECT_THROW(group_advantages({1, 0}, {}, std::vector<int>{3}), Error);
}

// ---- GRPO ------------------------------------------------------------------------

TEST(RlGrpo, ClipHighWithPositiveAdvantage) {
  // r = 1, e^0.5 = 1.6487 (> 1.28: clipped, no gradient), e^-0.5 = 0.6065 (< 0.8 but A > 0: unclipped)
  auto res = grpo_loss({with_log_ratios({0.0, 0.5, -0.5}, 1.0)}, opts(0.2, 0.28));
  const double r2 = std::exp(-0.5);
  EXPECT_NEAR(res.loss, -(1.0 + 1.28 + r2) / 3, 1e-12);
  EXPECT_NEAR(res.dlogp[0][0], -1.0 / 3, 1e-12);
  EXPECT_EQ(res.dlogp[0][1], 0.0);
  EXPECT_NEAR(res.dlogp[0][2], -r2 / 3, 1e-12);
  EXPECT_NEAR(res.stats.clip_frac_high, 1.0 / 3, 1e-12);
  EXPECT_EQ(res.stats.clip_frac_low, 0.0);
  EXPECT_EQ(res.stats.tokens, 3);
  EXPECT_NEAR(res.stats.ratio_mean, (1 + std::exp(0.5) + r2) / 3, 1e-12);
  EXPECT_NEAR(res.stats.ratio_max, std::exp(0.5), 1e-12);
}

TEST(RlGrpo, ClipLowWithNegativeAdvantage) {
  // A = -2: r = e^-0.5 < 0.8 is clipped (loss 2*0.8, no grad); r = e^0.5 is NOT clipped for A < 0.
  auto res = grpo_loss({with_log_ratios({0.0, -0.5, 0.5}, -2.0)}, opts(0.2, 0.28));
  const double up = std::exp(0.5);
  EXPECT_NEAR(res.loss, (2.0 + 2 * 0.8 + 2 * up) / 3, 1e-12);
  EXPECT_NEAR(res.dlogp[0][0], 2.0 / 3, 1e-12);
  EXPECT_EQ(res.dlogp[0][1], 0.0);
  EXPECT_NEAR(res.dlogp[0][2], 2 * up / 3, 1e-12);
  EXPECT_NEAR(res.stats.clip_frac_low, 1.0 / 3, 1e-12);
  EXPECT_EQ(res.stats.clip_frac_high, 0.0);
}

TEST(RlGrpo, AggregationModesAndDiscarded) {
  // sample 0: 1 token, ratio 1, A = 1 → per-token loss -1
  // sample 1: 3 tokens, ratio 1, A = -0.5 → per-token loss 0.5 each
  // sample 2: discarded, must change nothing
  PolicySample d = with_log_ratios({3.0, -3.0}, 100.0);
  d.discarded = true;
  std::vector<PolicySample> b = {with_log_ratios({0.0}, 1.0), with_log_ratios({0, 0, 0}, -0.5), d};
  auto tok = grpo_loss(b, opts(0.2, 0.28, LossAgg::TokenMean));
  EXPECT_NEAR(tok.loss, (-1 + 1.5) / 4, 1e-12);
  EXPECT_NEAR(tok.dlogp[0][0], -1.0 / 4, 1e-12);
  EXPECT_NEAR(tok.dlogp[1][1], 0.5 / 4, 1e-12);
  EXPECT_EQ(tok.dlogp[2], (std::vector<double>{0, 0}));
  EXPECT_EQ(tok.stats.tokens, 4);
  EXPECT_EQ(tok.stats.samples, 2);
  EXPECT_EQ(tok.stats.discarded, 1);
  auto seq = grpo_loss(b, opts(0.2, 0.28, LossAgg::SeqMeanTokenMean));
  EXPECT_NEAR(seq.loss, (-1 + 0.5) / 2, 1e-12);
  EXPECT_NEAR(seq.dlogp[0][0], -1.0 / 2, 1e-12);
  EXPECT_NEAR(seq.dlogp[1][2], 0.5 / 3 / 2, 1e-12);
  EXPECT_EQ(seq.dlogp[2], (std::vector<double>{0, 0}));
}

TEST(RlGrpo, MaskedTokensAreIgnored) {
  PolicySample s = with_log_ratios({0.0, 2.0, 0.0}, 1.0);
  s.mask = {1, 0, 1};
  auto res = grpo_loss({s}, opts(0.2, 0.28));
  EXPECT_NEAR(res.loss, -1.0, 1e-12);
  EXPECT_EQ(res.dlogp[0][1], 0.0);
  EXPECT_NEAR(res.dlogp[0][0], -0.5, 1e-12);
  EXPECT_EQ(res.stats.tokens, 2);
}

TEST(RlGrpo, ZeroAdvantageGivesZeroLossAndGradient) {
  auto res = grpo_loss({with_log_ratios({0.3, -0.3}, 0.0)}, opts(0.2, 0.28));
  EXPECT_EQ(res.loss, 0.0);
  EXPECT_EQ(res.dlogp[0], (std::vector<double>{0, 0}));
  EXPECT_EQ(res.stats.clip_frac_low + res.stats.clip_frac_high, 0.0);
}

TEST(RlGrpo, KlTermK3Value) {
  PolicySample s = with_log_ratios({0.0}, 0.0);
  s.ref_logp = {s.cur_logp[0] + 0.7};  // ref - cur = 0.7
  PolicyLossOptions o = opts(0.2, 0.28);
  o.kl_coef = 0.1;
  auto res = grpo_loss({s}, o);
  const double k3 = std::exp(0.7) - 0.7 - 1;
  EXPECT_NEAR(res.loss, 0.1 * k3, 1e-12);
  EXPECT_NEAR(res.stats.ref_kl, k3, 1e-12);
  EXPECT_NEAR(res.dlogp[0][0], 0.1 * (1 - std::exp(0.7)), 1e-12);
  EXPECT_EQ(res.stats.pg_loss, 0.0);
  // kl_coef > 0 without reference log-probs is an error naming the sample
  s.ref_logp.clear();
  EXPECT_THROW(grpo_loss({s}, o), Error);
}

TEST(RlGrpo, GlobalDenominatorMakesPartsSumToWhole) {
  auto b = random_batch(7, 0.4, false);
  for (LossAgg agg : {LossAgg::TokenMean, LossAgg::SeqMeanTokenMean}) {
    PolicyLossOptions o = opts(0.2, 0.28, agg);
    const auto whole = grpo_loss(b, o);
    o.denominator = loss_denominator(b, o);
    std::vector<PolicySample> p1(b.begin(), b.begin() + 2), p2(b.begin() + 2, b.end());
    const auto a = grpo_loss(p1, o), c = grpo_loss(p2, o);
    EXPECT_NEAR(a.loss + c.loss, whole.loss, 1e-12);
    EXPECT_NEAR(a.dlogp[1][0], whole.dlogp[1][0], 1e-15);
    EXPECT_NEAR(c.dlogp[0][0], whole.dlogp[2][0], 1e-15);
  }
}

TEST(RlGrpo, RejectsMismatchedShapes) {
  PolicySample s = with_log_ratios({0, 0}, 1);
  s.behaviour_logp.pop_back();
  EXPECT_THROW(grpo_loss({s}, opts(0.2, 0.28)), Error);
  PolicySample m = with_log_ratios({0, 0}, 1);
  m.mask = {1};
  EXPECT_THROW(grpo_loss({m}, opts(0.2, 0.28)), Error);
  EXPECT_THROW(grpo_loss({with_log_ratios({0}, 1)}, opts(1.5, 0.2)), Error);
}

// ---- GSPO ------------------------------------------------------------------------

TEST(RlGspo, SequenceRatioUnclippedAndClipped) {
  // mean log ratio 0.2 → s = e^0.2 = 1.2214
  const double s = std::exp(0.2);
  auto wide = gspo_loss({with_log_ratios({0.1, 0.2, 0.3}, 2.0)}, opts(0.28, 0.40, LossAgg::SeqMeanTokenMean));
  EXPECT_NEAR(wide.loss, -2 * s, 1e-12);
  for (int t = 0; t < 3; ++t) EXPECT_NEAR(wide.dlogp[0][t], -2 * s / 3, 1e-12);  // ds/dcur_t = s/|y|
  EXPECT_NEAR(wide.stats.ratio_mean, s, 1e-12);
  EXPECT_EQ(wide.stats.clip_frac_high, 0.0);
  // GSPO paper's tight range: s > 1 + 4e-4 with A > 0 → clipped, no gradient
  auto tight = gspo_loss({with_log_ratios({0.1, 0.2, 0.3}, 2.0)}, opts(3e-4, 4e-4, LossAgg::SeqMeanTokenMean));
  EXPECT_NEAR(tight.loss, -2 * (1 + 4e-4), 1e-12);
  for (int t = 0; t < 3; ++t) EXPECT_EQ(tight.dlogp[0][t], 0.0);
  EXPECT_EQ(tight.stats.clip_frac_high, 1.0);
}

TEST(RlGspo, NegativeAdvantageClipsLow) {
  // mean log ratio -0.5 → s = 0.6065 < 1 - 0.28 → clipped for A < 0
  auto res = gspo_loss({with_log_ratios({-0.4, -0.6}, -1.0), with_log_ratios({0.5}, -1.0)},
                       opts(0.28, 0.40, LossAgg::SeqMeanTokenMean));
  const double up = std::exp(0.5);  // s > 1.4 with A < 0: NOT clipped
  EXPECT_NEAR(res.loss, (0.72 + up) / 2, 1e-12);
  EXPECT_EQ(res.dlogp[0][0], 0.0);
  EXPECT_EQ(res.dlogp[0][1], 0.0);
  EXPECT_NEAR(res.dlogp[1][0], up / 2, 1e-12);
  EXPECT_NEAR(res.stats.clip_frac_low, 0.5, 1e-12);
  EXPECT_EQ(res.stats.clip_frac_high, 0.0);
}

TEST(RlGspo, AggregationModes) {
  // ratios 1: sequence losses -A; lengths 1 and 3
  std::vector<PolicySample> b = {with_log_ratios({0.0}, 1.0), with_log_ratios({0, 0, 0}, -0.5)};
  PolicySample d = with_log_ratios({0.0}, 9.0);
  d.discarded = true;
  b.push_back(d);
  auto seq = gspo_loss(b, opts(0.2, 0.2, LossAgg::SeqMeanTokenMean));
  EXPECT_NEAR(seq.loss, (-1 + 0.5) / 2, 1e-12);
  EXPECT_NEAR(seq.dlogp[1][0], 0.5 / 3 / 2, 1e-12);
  auto tok = gspo_loss(b, opts(0.2, 0.2, LossAgg::TokenMean));
  EXPECT_NEAR(tok.loss, (1 * -1 + 3 * 0.5) / 4, 1e-12);
  EXPECT_NEAR(tok.dlogp[0][0], -1.0 / 4, 1e-12);
  EXPECT_NEAR(tok.dlogp[1][2], 0.5 / 4, 1e-12);  // weight |y|/D times s/|y|
  EXPECT_EQ(tok.dlogp[2][0], 0.0);
  EXPECT_EQ(tok.stats.samples, 2);
  EXPECT_EQ(tok.stats.discarded, 1);
}

// ---- gradients by finite differences ----------------------------------------------

TEST(RlLossGradients, MatchFiniteDifferences) {
  for (PolicyAlgorithm algo : {PolicyAlgorithm::GRPO, PolicyAlgorithm::GSPO}) {
    for (LossAgg agg : {LossAgg::TokenMean, LossAgg::SeqMeanTokenMean}) {
      for (double kl : {0.0, 0.05}) {
        for (uint64_t seed : {1u, 2u, 3u}) {
          // spread 0.6 makes many tokens/sequences clip on both sides
          auto b = random_batch(seed, 0.6, kl > 0);
          PolicyLossOptions o = opts(algo == PolicyAlgorithm::GSPO ? 0.05 : 0.2,
                                     algo == PolicyAlgorithm::GSPO ? 0.08 : 0.28, agg);
          o.kl_coef = kl;
          EXPECT_LT(fd_max_error(algo, b, o), 1e-7)
              << policy_algorithm_name(algo) << " " << loss_agg_name(agg) << " kl " << kl << " seed " << seed;
        }
      }
    }
  }
}

TEST(RlLossGradients, RandomCasesExerciseBothClips) {
  // Guard for the finite-difference test: its batches really hit both clip sides.
  double lo = 0, hi = 0, glo = 0, ghi = 0, unclipped = 0;
  for (uint64_t seed : {1u, 2u, 3u}) {
    auto r = grpo_loss(random_batch(seed, 0.6, false), opts(0.2, 0.28));
    lo += r.stats.clip_frac_low;
    hi += r.stats.clip_frac_high;
    auto g = gspo_loss(random_batch(seed, 0.6, false), opts(0.05, 0.08));
    glo += g.stats.clip_frac_low;
    ghi += g.stats.clip_frac_high;
    unclipped += 1 - g.stats.clip_frac_low - g.stats.clip_frac_high;
  }
  EXPECT_GT(lo, 0.0);
  EXPECT_GT(hi, 0.0);
  EXPECT_GT(glo, 0.0);
  EXPECT_GT(ghi, 0.0);
  EXPECT_GT(unclipped, 0.0);
}

TEST(RlLossNames, RoundTrip) {
  EXPECT_EQ(loss_agg_from_name("token-mean"), LossAgg::TokenMean);
  EXPECT_EQ(loss_agg_from_name("seq-mean-token-mean"), LossAgg::SeqMeanTokenMean);
  EXPECT_EQ(policy_algorithm_from_name("gspo"), PolicyAlgorithm::GSPO);
  EXPECT_THROW(loss_agg_from_name("sum"), Error);
  EXPECT_THROW(policy_algorithm_from_name("ppo"), Error);
}
