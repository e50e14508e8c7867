// Difficulty filtering of RL prompts by pass rate.
//
// Offline calibration: each prompt gets n rollouts from the starting policy; its
// pass rate is correct / n (an unparsable response counts as not correct). A
// prompt is kept when alpha <= rate <= beta, with a band per task (falling back
// to a default band). The kept set is written as JSONL (one prompt per line:
// prompt_index, uid, task, n, correct, unparsable, pass_rate) and a histogram of
// pass rates per task (all prompts and kept ones) as a text table.
//
// In training (DAPO's dynamic sampling): groups whose rewards have zero variance
// carry no gradient; ZeroVarianceRefill decides which groups of a sampling round
// to train on and whether to sample another round to refill the minibatch.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "rl/rewards/reward.h"
#include "rl/rl_state.h"

namespace temper {

struct PassBand {
  double alpha = 0.0;  // keep when alpha <= rate
  double beta = 1.0;   //          and rate <= beta
};

// "0.1:0.9" → {0.1, 0.9}. `what` names the deck key in errors.
PassBand parse_pass_band(const std::string& text, const std::string& what);
// "math=0.1:0.9, code=0:0.8" → per-task bands ("" → none).
std::map<std::string, PassBand> parse_task_bands(const std::string& text, const std::string& what);

struct PromptRollouts {
  int64_t prompt_index = 0;  // index in the prompt set
  std::string uid;           // optional stable id from the dataset
  std::string task;          // task family ("math", "code", "if", ...)
  std::vector<Verdict> verdicts;  // one per rollout
};

struct PassRateEntry {
  int64_t prompt_index = 0;
  std::string uid;
  std::string task;
  int n = 0;
  int correct = 0;
  int unparsable = 0;
  double rate = 0.0;  // correct / n
  bool kept = false;
};

// correct / n over the verdicts; throws when there are none.
double pass_rate(const std::vector<Verdict>& verdicts);

class DifficultyFilter {
 public:
  explicit DifficultyFilter(PassBand default_band = {}, std::map<std::string, PassBand> task_bands = {});

  const PassBand& band(const std::string& task) const;
  bool keep(const std::string& task, double rate) const;

  // Rates and keep decisions for every prompt (in input order); also remembers
  // the kept set (kept_indices / kept_rates, part of the saved state).
  std::vector<PassRateEntry> calibrate(const std::vector<PromptRollouts>& prompts);

  const std::vector<int64_t>& kept_indices() const { return kept_indices_; }
  const std::vector<double>& kept_rates() const { return kept_rates_; }

  // State for checkpoints: ints = kept prompt indices, doubles = their rates.
  RlSavedState save_state() const;
  void restore_state(const RlSavedState& s);

 private:
  PassBand default_band_;
  std::map<std::string, PassBand> task_bands_;
  std::vector<int64_t> kept_indices_;
  std::vector<double> kept_rates_;
};

// Writes the kept entries (kept == true) as JSONL, atomically (temp file + rename).
void write_kept_jsonl(const std::string& path, const std::vector<PassRateEntry>& entries);
// Reads a file written by write_kept_jsonl (every line's entry has kept = true).
std::vector<PassRateEntry> read_kept_jsonl(const std::string& path);

// Counts per pass-rate bin per task: bin b covers [b/bins, (b+1)/bins), the last
// bin also holds rate 1. Computed from correct/n exactly (no float round-off).
struct PassRateHistogram {
  int bins = 0;
  std::map<std::string, std::vector<int64_t>> all;   // task → counts per bin
  std::map<std::string, std::vector<int64_t>> kept;  // task → counts of kept prompts per bin
};
PassRateHistogram pass_rate_histogram(const std::vector<PassRateEntry>& entries, int bins);
// A fixed-width text table: one row per bin, columns "<task> all/kept", then totals.
std::string format_histogram(const PassRateHistogram& h);
void write_histogram(const std::string& path, const PassRateHistogram& h);  // the text table, atomically

// ---- in-training dynamic sampling ---------------------------------------------
struct RefillDecision {
  std::vector<int> keep_groups;  // indices into this round's groups to train on
  int dropped = 0;               // zero-variance groups dropped this round
  int surplus = 0;               // signal groups beyond the target (unused)
  int have = 0;                  // groups collected for this step so far (including these)
  int still_needed = 0;          // target - have
  bool generate_more = false;    // sample another round (still_needed > 0 and rounds left)
};

class ZeroVarianceRefill {
 public:
  // target_groups: groups per minibatch; max_rounds >= 1 sampling rounds per step
  // (when exhausted the step trains on what it has).
  ZeroVarianceRefill(int target_groups, int max_rounds);

  void begin_step();  // resets the per-step count
  // zero_variance: per group of this sampling round (GroupAdvantages::zero_variance).
  RefillDecision add_round(const std::vector<uint8_t>& zero_variance);

  int64_t total_groups() const { return total_groups_; }
  int64_t total_dropped() const { return total_dropped_; }
  int64_t total_rounds() const { return total_rounds_; }
  int64_t short_steps() const { return short_steps_; }  // steps that ended below target

  // ints = {target, max_rounds, total_groups, total_dropped, total_rounds, short_steps}.
  RlSavedState save_state() const;
  void restore_state(const RlSavedState& s);

 private:
  int target_;
  int max_rounds_;
  int have_ = 0;
  int rounds_ = 0;
  int64_t total_groups_ = 0;
  int64_t total_dropped_ = 0;
  int64_t total_rounds_ = 0;
  int64_t short_steps_ = 0;
};

}  // namespace temper
