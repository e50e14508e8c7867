// Rollouts on every mesh: which rank generates which groups of a sampling
// round, and what every rank learns of the round.
//
// Every rank of the world generates (the policy's whole weights are resident
// during generation, train/engine begin_generation): the groups of a round are
// dealt round-robin over the W ranks in mesh order (group i -> the rank with
// mesh index i % W), so the sp ranks of one data-parallel rank generate
// different prompts. Each sample draws from its own stream keyed by the round's
// seed, its prompt and its index in the group (rl/generation), so the rollouts
// of a step do not depend on the mesh. After scoring, every group's rewards and
// verdicts reach every rank (one sum over the world), and the group statistics
// (mean, std, zero variance: rl/advantages) are computed from all of them on
// every rank alike, wherever a group's samples were generated or are trained.
//
// For the update, the samples of the sp ranks of one data-parallel rank are
// gathered to all of them (gather_samples over the sp communicator): that rank's
// Ulysses group then trains on them together, each sp rank holding 1/sp of every
// micro-batch's tokens.
#pragma once
#include <cstdint>
#include <vector>

#include "parallel/comm.h"
#include "rl/advantages.h"
#include "rl/rl_sample.h"
#include "rl/rollout.h"

namespace temper {

struct RoundOutcome {
  std::vector<RlSample> mine;  // the samples of the groups this rank generated, advantages set
  // Per sample of the round, group by group (identical on every rank):
  std::vector<double> reward;
  std::vector<Verdict> verdict;
  std::vector<uint8_t> discarded, truncated;
  std::vector<int64_t> length;  // response tokens
  GroupAdvantages advantages;   // over the round's groups (identical on every rank)
  double generate_seconds = 0, score_seconds = 0;  // of the slowest rank
  int64_t generated_tokens() const;
};

class RolloutWorkers {
 public:
  // world: every rank; index: this rank's position in mesh order (Mesh::mesh_index).
  RolloutWorkers(Comm& world, int index);
  int count() const { return count_; }
  bool owns(size_t group) const { return int(group % size_t(count_)) == index_; }

  // Collective over the world. groups[i]: the prompt index of group i; its samples
  // get group number group_base + i. opt.group_size samples per group.
  RoundOutcome run(Generator& gen, const Tokenizer& tok, ChatTemplate tmpl, const std::vector<RlPrompt>& prompts,
                   const std::vector<int64_t>& groups, const RolloutOptions& opt, const ScoringOptions& scoring,
                   const AdvantageOptions& aopt, int32_t group_base) const;

 private:
  Comm& world_;
  int index_, count_;
};

// Collective over c: the samples of every rank of c, in rank order, on every rank.
std::vector<RlSample> gather_samples(Comm& c, const std::vector<RlSample>& mine);

}  // namespace temper
