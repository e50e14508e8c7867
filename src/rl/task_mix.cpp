// Deterministic task-mixed minibatch drawing (see task_mix.h).
#include "rl/task_mix.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "core/error.h"
#include "core/rng.h"

namespace temper {
namespace {

// FNV-1a: a stable hash of a task name (std::hash may differ between builds).
uint64_t name_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

template <typename T>
void shuffle_with(std::vector<T>& v, Rng& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
}

}  // namespace

std::map<std::string, double> parse_task_weights(const std::string& text, const std::string& what) {
  std::map<std::string, double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item = trim(item);
    if (item.empty()) continue;
    const size_t colon = item.rfind(':');
    TEMPER_CHECK(colon != std::string::npos && colon > 0, what, ": '", item, "' should be task:weight, e.g. math:0.5");
    const std::string task = trim(item.substr(0, colon)), num = trim(item.substr(colon + 1));
    size_t used = 0;
    double w = -1;
    try {
      w = std::stod(num, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    TEMPER_CHECK(used == num.size() && !num.empty() && std::isfinite(w) && w >= 0, what, ": weight '", num,
                 "' of task '", task, "' is not a number >= 0");
    TEMPER_CHECK(!out.count(task), what, ": task '", task, "' is given twice");
    out[task] = w;
  }
  TEMPER_CHECK(!out.empty(), what, ": no task weights given (expected e.g. math:0.5, code:0.25, if:0.25)");
  return out;
}

std::map<std::string, int> apportion(const std::map<std::string, double>& weights, int total, uint64_t tie_seed) {
  TEMPER_CHECK(total >= 0, "task mix: batch size must be >= 0, got ", total);
  double sum = 0;
  for (const auto& [task, w] : weights) {
    TEMPER_CHECK(std::isfinite(w) && w >= 0, "task mix: weight of task '", task, "' must be >= 0, got ", w);
    sum += w;
  }
  TEMPER_CHECK(sum > 0, "task mix: the task weights add up to 0");
  struct Item {
    std::string task;
    double rem;
    uint64_t tie;
  };
  std::map<std::string, int> out;
  std::vector<Item> items;
  int given = 0;
  for (const auto& [task, w] : weights) {
    const double quota = w / sum * total;
    // A quota within round-off of an integer is that integer (0.3*10 must give 3, remainder 0).
    double fl = std::floor(quota + 1e-9);
    out[task] = static_cast<int>(fl);
    given += static_cast<int>(fl);
    if (w > 0) items.push_back({task, std::max(0.0, quota - fl), mix64(tie_seed, name_hash(task))});
  }
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    if (std::fabs(a.rem - b.rem) > 1e-9) return a.rem > b.rem;
    return a.tie < b.tie;
  });
  for (size_t i = 0; given < total && !items.empty(); i = (i + 1) % items.size(), ++given) ++out[items[i].task];
  return out;
}

TaskMixer::TaskMixer(std::map<std::string, double> weights, std::map<std::string, std::vector<int64_t>> pools,
                     uint64_t seed)
    : seed_(seed) {
  double sum = 0;
  for (const auto& [task, w] : weights) {
    TEMPER_CHECK(std::isfinite(w) && w >= 0, "task mix: weight of task '", task, "' must be >= 0, got ", w);
    sum += w;
  }
  TEMPER_CHECK(sum > 0, "task mix: the task weights add up to 0; give at least one task a positive weight");
  for (const auto& [task, w] : weights) {
    if (w <= 0) continue;
    auto it = pools.find(task);
    TEMPER_CHECK(it != pools.end() && !it->second.empty(), "task mix: task '", task, "' has weight ", w,
                 " but no prompts (after filtering); remove it from the mix or provide prompts for it");
    weights_[task] = w / sum;
    Pool p;
    p.items = std::move(it->second);
    shuffle_epoch(task, p);
    pools_.emplace(task, std::move(p));
  }
}

void TaskMixer::shuffle_epoch(const std::string& task, Pool& p) const {
  p.order = p.items;
  Rng rng(mix64(mix64(seed_, name_hash(task)), static_cast<uint64_t>(p.epoch)));
  shuffle_with(p.order, rng);
  p.cursor = 0;
}

std::vector<MixDraw> TaskMixer::draw(int64_t step, int batch_size) {
  TEMPER_CHECK(batch_size >= 1, "task mix: batch size must be >= 1, got ", batch_size);
  const uint64_t step_seed = mix64(mix64(seed_, 0x7a5c6d1dULL), static_cast<uint64_t>(step));
  std::vector<MixDraw> out;
  out.reserve(batch_size);
  for (const auto& [task, count] : apportion(weights_, batch_size, step_seed)) {
    Pool& p = pools_.at(task);
    for (int k = 0; k < count; ++k) {
      if (p.cursor >= static_cast<int64_t>(p.order.size())) {
        ++p.epoch;
        shuffle_epoch(task, p);
      }
      out.push_back({task, p.order[static_cast<size_t>(p.cursor++)]});
    }
  }
  Rng rng(mix64(step_seed, 1));
  shuffle_with(out, rng);
  return out;
}

int64_t TaskMixer::epoch(const std::string& task) const {
  auto it = pools_.find(task);
  TEMPER_CHECK(it != pools_.end(), "task mix: no task '", task, "' in the mix");
  return it->second.epoch;
}

int64_t TaskMixer::cursor(const std::string& task) const {
  auto it = pools_.find(task);
  TEMPER_CHECK(it != pools_.end(), "task mix: no task '", task, "' in the mix");
  return it->second.cursor;
}

RlSavedState TaskMixer::save_state() const {
  RlSavedState s;
  s.ints.push_back(static_cast<int64_t>(pools_.size()));
  for (const auto& [task, p] : pools_) {
    s.ints.push_back(static_cast<int64_t>(name_hash(task)));
    s.ints.push_back(static_cast<int64_t>(p.items.size()));
    s.ints.push_back(p.epoch);
    s.ints.push_back(p.cursor);
  }
  return s;
}

void TaskMixer::restore_state(const RlSavedState& s) {
  TEMPER_CHECK(!s.ints.empty() && s.ints[0] >= 0 && s.ints.size() == 1 + 4 * static_cast<size_t>(s.ints[0]),
               "task mix state is malformed (", s.ints.size(), " integers); the checkpoint entry is corrupt");
  TEMPER_CHECK(static_cast<size_t>(s.ints[0]) == pools_.size(), "task mix state has ", s.ints[0],
               " tasks but this run mixes ", pools_.size(), "; resume with the same task weights");
  size_t k = 1;
  for (auto& [task, p] : pools_) {
    TEMPER_CHECK(static_cast<uint64_t>(s.ints[k]) == name_hash(task), "task mix state does not contain task '", task,
                 "' at its place; resume with the same tasks in the mix");
    TEMPER_CHECK(s.ints[k + 1] == static_cast<int64_t>(p.items.size()), "task mix state: task '", task, "' had ",
                 s.ints[k + 1], " prompts when saved but has ", p.items.size(),
                 " now; the prompt set changed, so the saved position is meaningless");
    TEMPER_CHECK(s.ints[k + 2] >= 0 && s.ints[k + 3] >= 0 && s.ints[k + 3] <= s.ints[k + 1],
                 "task mix state of task '", task, "' has an invalid epoch/cursor");
    p.epoch = s.ints[k + 2];
    shuffle_epoch(task, p);
    p.cursor = s.ints[k + 3];
    k += 4;
  }
}

}  // namespace temper
