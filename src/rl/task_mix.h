// Task mixing for RL minibatches: each step draws batch_size prompts from
// per-task pools (math, code, instruction following, ...) in given proportions.
//
// Counts per task come from largest-remainder rounding of weight * batch_size
// (weights are normalised), so they are exact whenever the products are whole
// numbers; ties between equal remainders are broken by an order derived from
// (seed, step), so no task is favoured over many steps. Within a task, prompts
// are taken without replacement through a permutation of its pool per epoch
// (derived from seed, task name and epoch); when a pool runs out, the next epoch
// starts with a new permutation. The drawn batch is shuffled by (seed, step) so
// tasks are interleaved. Everything is deterministic from the seed and the
// sequence of steps; the cursor state saves/restores for checkpoints.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "rl/rl_state.h"

namespace temper {

// "math:0.5, code:0.25, if:0.25" → weights. `what` names the deck key in errors.
std::map<std::string, double> parse_task_weights(const std::string& text, const std::string& what);

// Largest-remainder apportionment of `total` items over normalised weights
// (weight 0 → 0 items). Equal remainders are ordered by mix64(tie_seed, task).
std::map<std::string, int> apportion(const std::map<std::string, double>& weights, int total, uint64_t tie_seed);

struct MixDraw {
  std::string task;
  int64_t prompt = 0;  // an element of that task's pool (e.g. a prompt index)
};

class TaskMixer {
 public:
  // pools: task → prompt indices (tasks absent from weights, or of weight 0, are
  // ignored; a task with weight > 0 needs a non-empty pool).
  TaskMixer(std::map<std::string, double> weights, std::map<std::string, std::vector<int64_t>> pools, uint64_t seed);

  // The minibatch of `step` (advances the per-task cursors).
  std::vector<MixDraw> draw(int64_t step, int batch_size);

  const std::map<std::string, double>& weights() const { return weights_; }  // normalised, > 0 only
  int64_t epoch(const std::string& task) const;   // completed passes over that task's pool
  int64_t cursor(const std::string& task) const;  // position in the current epoch's permutation

  // ints = {n_tasks, then per task (name order): name hash, pool size, epoch, cursor}.
  RlSavedState save_state() const;
  // Throws if the tasks or pool sizes differ from the saved ones (a changed pool
  // would silently change which prompts come next).
  void restore_state(const RlSavedState& s);

 private:
  struct Pool {
    std::vector<int64_t> items;
    std::vector<int64_t> order;  // permutation of items for the current epoch
    int64_t epoch = 0;
    int64_t cursor = 0;
  };
  void shuffle_epoch(const std::string& task, Pool& p) const;

  std::map<std::string, double> weights_;
  std::map<std::string, Pool> pools_;
  uint64_t seed_;
};

}  // namespace temper
