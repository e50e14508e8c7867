// RlSample: the one sample type that flows through an RL step: generated
// (prompt, response, sampler log-probs, finish) -> scored (reward, verdict,
// discarded) -> advantage -> trained (behaviour and current log-probs) -> dumped.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "rl/rewards/reward.h"
#include "rl/trajectory_dump.h"

namespace temper {

struct RlSample {
  int64_t prompt_index = 0;  // into the prompt set
  int32_t group = 0;         // the group's number in its step (round * 100000 + draw position)
  int32_t index = 0;         // the sample's index within its group
  std::string task;
  std::vector<int32_t> prompt, response;  // rendered chat prompt; response ids (end-of-turn included)
  std::vector<double> sampler_logp;       // per response token, recorded while sampling
  std::string finish;                     // eos | stop_string | length
  double reward = 0;
  Verdict verdict = Verdict::Wrong;
  bool discarded = false;                 // unparsable: no gradient
  double advantage = 0;
  double pass_rate = -1;                  // the prompt's calibrated pass rate; -1 = unknown
  // Set by the policy update: behaviour log-probs (the ratios' denominator) and the
  // current policy's after the last update pass (the behaviour ones when untrained).
  std::vector<double> behaviour_logp, current_logp;
};

// Lossless byte encoding of samples (to move them between ranks).
std::string pack_samples(const std::vector<RlSample>& samples);
std::vector<RlSample> unpack_samples(const std::string& bytes);

// The dump of a step's samples (rl/trajectory_dump).
TrajectoryBatch trajectory_batch(const std::vector<RlSample>& samples, int64_t step, const std::string& algorithm,
                                 const std::map<std::string, double>& metrics, bool with_pass_rate);

}  // namespace temper
