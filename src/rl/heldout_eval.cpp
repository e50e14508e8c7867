// Prompt-set scoring shared by phase = eval and the RL phase (see heldout_eval.h).
#include "rl/heldout_eval.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_write.h"

namespace temper {

std::string HeldoutResult::summary() const {
  std::string s;
  for (const auto& [task, t] : tasks) {
    char pct[32];
    std::snprintf(pct, sizeof pct, "%.1f", 100.0 * t.accuracy());
    if (!s.empty()) s += ", ";
    s += cat(task, " ", t.correct, "/", t.samples, " (", pct, " %)");
  }
  return s;
}

HeldoutResult evaluate_prompts(Generator& gen, const Tokenizer& tok, ChatTemplate tmpl,
                               const std::vector<RlPrompt>& prompts, const RolloutOptions& opt,
                               const ScoringOptions& scoring, Comm& comm, const std::string& results_path) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int64_t> mine;
  for (size_t i = 0; i < prompts.size(); ++i)
    if (int(i % size_t(comm.size())) == comm.rank()) mine.push_back(int64_t(i));
  Rollouts r;
  if (!mine.empty()) r = generate_rollouts(gen, tok, tmpl, prompts, mine, opt, scoring);

  // Per-task counts in a fixed task order (every rank knows every prompt's task).
  std::set<std::string> names;
  for (const auto& p : prompts) names.insert(p.task);
  const std::vector<std::string> order(names.begin(), names.end());
  const size_t T = order.size();
  std::vector<double> counts(5 * T + 1, 0.0);  // prompts, samples, correct, unparsable, reward per task; tokens
  auto slot = [&](const std::string& task) {
    return size_t(std::lower_bound(order.begin(), order.end(), task) - order.begin());
  };
  for (int64_t p : mine) counts[5 * slot(prompts[size_t(p)].task)] += 1;
  LineFile out;
  if (!results_path.empty()) out = LineFile(results_path, LineFile::Mode::Truncate);
  for (size_t j = 0; j < r.samples(); ++j) {
    const RlPrompt& p = prompts[size_t(r.prompt_of_sample(j))];
    const ScoredResponse& s = r.scores[j];
    const size_t t = slot(p.task);
    counts[5 * t + 1] += 1;
    counts[5 * t + 2] += s.result.verdict == Verdict::Correct ? 1 : 0;
    counts[5 * t + 3] += s.discarded ? 1 : 0;
    counts[5 * t + 4] += s.result.reward;
    if (out.is_open()) {
      nlohmann::json line = {{"task", p.task},
                             {"prompt_index", p.index},
                             {"sample", int64_t(j % size_t(r.group_size))},
                             {"reward", s.result.reward},
                             {"verdict", verdict_name(s.result.verdict)},
                             {"finish", r.finish[j]},
                             {"response_tokens", r.response_ids[j].size()},
                             {"detail", s.result.detail},
                             {"response", r.text[j]}};
      if (p.ref.contains("id")) line["id"] = p.ref["id"];  // the benchmark's own id (import_benchmark.py)
      out.write(line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    }
  }
  out.close();
  counts[5 * T] = double(r.generated_tokens);
  Tensor c = Tensor::wrap(counts.data(), {int64_t(counts.size())}, DType::F64);
  comm.allreduce(c);

  HeldoutResult res;
  for (size_t t = 0; t < T; ++t) {
    TaskScore ts;
    ts.prompts = int64_t(counts[5 * t]);
    ts.samples = int64_t(counts[5 * t + 1]);
    ts.correct = int64_t(counts[5 * t + 2]);
    ts.unparsable = int64_t(counts[5 * t + 3]);
    ts.reward_sum = counts[5 * t + 4];
    res.total.prompts += ts.prompts;
    res.total.samples += ts.samples;
    res.total.correct += ts.correct;
    res.total.unparsable += ts.unparsable;
    res.total.reward_sum += ts.reward_sum;
    res.tasks[order[t]] = ts;
  }
  res.generated_tokens = int64_t(counts[5 * T]);
  res.seconds = comm.allreduce_max(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return res;
}

}  // namespace temper
