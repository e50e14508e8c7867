// Rollouts dealt over the ranks, results gathered to all (see rollout_distribution.h).
#include "rl/rollout_distribution.h"

#include <algorithm>

#include "core/error.h"

namespace temper {

int64_t RoundOutcome::generated_tokens() const {
  int64_t n = 0;
  for (int64_t l : length) n += l;
  return n;
}

RolloutWorkers::RolloutWorkers(Comm& world, int index) : world_(world), index_(index), count_(world.size()) {
  TEMPER_CHECK(index >= 0 && index < count_, "RolloutWorkers: rank index ", index, " outside a world of ", count_);
}

RoundOutcome RolloutWorkers::run(Generator& gen, const Tokenizer& tok, ChatTemplate tmpl,
                                 const std::vector<RlPrompt>& prompts, const std::vector<int64_t>& groups,
                                 const RolloutOptions& opt, const ScoringOptions& scoring, const AdvantageOptions& aopt,
                                 int32_t group_base) const {
  const size_t G = size_t(opt.group_size), n = groups.size() * G;
  std::vector<size_t> owned;  // positions in `groups` this rank generates
  std::vector<int64_t> which;
  for (size_t i = 0; i < groups.size(); ++i)
    if (owns(i)) {
      owned.push_back(i);
      which.push_back(groups[i]);
    }
  Rollouts r;
  if (!which.empty()) r = generate_rollouts(gen, tok, tmpl, prompts, which, opt, scoring);

  // Every sample's outcome to every rank: each entry is written by one rank only,
  // so the sum over the world is exact.
  enum { kReward, kVerdict, kDiscarded, kTruncated, kLength, kFields };
  std::vector<double> all(n * kFields, 0.0);
  for (size_t g = 0; g < owned.size(); ++g)
    for (size_t s = 0; s < G; ++s) {
      const size_t j = g * G + s, at = (owned[g] * G + s) * kFields;
      all[at + kReward] = r.scores[j].result.reward;
      all[at + kVerdict] = double(int(r.scores[j].result.verdict));
      all[at + kDiscarded] = r.scores[j].discarded ? 1 : 0;
      all[at + kTruncated] = r.truncated[j];
      all[at + kLength] = double(r.response_ids[j].size());
    }
  if (!all.empty()) {
    Tensor t = Tensor::wrap(all.data(), {int64_t(all.size())}, DType::F64);
    world_.allreduce(t);
  }
  RoundOutcome out;
  for (size_t j = 0; j < n; ++j) {
    const double* f = &all[j * kFields];
    out.reward.push_back(f[kReward]);
    out.verdict.push_back(Verdict(int(f[kVerdict])));
    out.discarded.push_back(f[kDiscarded] > 0.5);
    out.truncated.push_back(f[kTruncated] > 0.5);
    out.length.push_back(int64_t(f[kLength]));
  }
  out.generate_seconds = world_.allreduce_max(r.generate_seconds);
  out.score_seconds = world_.allreduce_max(r.score_seconds);
  out.advantages = group_advantages(out.reward, discarded_from_verdicts(out.verdict), int(G), aopt);

  for (size_t g = 0; g < owned.size(); ++g)
    for (size_t s = 0; s < G; ++s) {
      const size_t j = g * G + s, at = owned[g] * G + s;
      RlSample x;
      x.prompt_index = r.prompts[g];
      x.group = group_base + int32_t(owned[g]);
      x.index = int32_t(s);
      x.task = prompts[size_t(r.prompts[g])].task;
      x.prompt = r.prompt_ids[g];
      x.response = std::move(r.response_ids[j]);
      x.sampler_logp = std::move(r.sampler_logp[j]);
      x.finish = r.finish[j];
      x.reward = r.scores[j].result.reward;
      x.verdict = r.scores[j].result.verdict;
      x.discarded = r.scores[j].discarded;
      x.advantage = out.advantages.advantages[at];
      out.mine.push_back(std::move(x));
    }
  return out;
}

std::vector<RlSample> gather_samples(Comm& c, const std::vector<RlSample>& mine) {
  if (c.size() == 1) return mine;
  std::vector<RlSample> out;
  for (int r = 0; r < c.size(); ++r) {
    std::string bytes = c.rank() == r ? pack_samples(mine) : std::string();
    c.broadcast_string(bytes, r);
    for (auto& s : unpack_samples(bytes)) out.push_back(std::move(s));
  }
  return out;
}

}  // namespace temper
