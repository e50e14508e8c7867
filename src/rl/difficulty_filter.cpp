// Pass-rate difficulty filter, its JSONL/histogram outputs, and the in-training
// zero-variance drop/refill rule (see difficulty_filter.h).
#include "rl/difficulty_filter.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_write.h"

namespace temper {
namespace {

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

double parse_number(const std::string& s, const std::string& what) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  TEMPER_CHECK(used == s.size() && !s.empty(), what, ": '", s, "' is not a number");
  return v;
}

void check_band(const PassBand& b, const std::string& what) {
  TEMPER_CHECK(b.alpha >= 0 && b.alpha <= 1 && b.beta >= 0 && b.beta <= 1 && b.alpha <= b.beta, what,
               ": pass-rate band [", b.alpha, ", ", b.beta, "] must satisfy 0 <= alpha <= beta <= 1");
}

}  // namespace

PassBand parse_pass_band(const std::string& text, const std::string& what) {
  const std::string t = trim(text);
  const size_t colon = t.find(':');
  TEMPER_CHECK(colon != std::string::npos, what, ": pass-rate band '", text, "' should be alpha:beta, e.g. 0.1:0.9");
  PassBand b{parse_number(trim(t.substr(0, colon)), what), parse_number(trim(t.substr(colon + 1)), what)};
  check_band(b, what);
  return b;
}

std::map<std::string, PassBand> parse_task_bands(const std::string& text, const std::string& what) {
  std::map<std::string, PassBand> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item = trim(item);
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    TEMPER_CHECK(eq != std::string::npos && eq > 0, what, ": '", item,
                 "' should be task=alpha:beta, e.g. math=0.1:0.9");
    const std::string task = trim(item.substr(0, eq));
    TEMPER_CHECK(!out.count(task), what, ": task '", task, "' is given twice");
    out[task] = parse_pass_band(item.substr(eq + 1), what + " (task " + task + ")");
  }
  return out;
}

double pass_rate(const std::vector<Verdict>& verdicts) {
  TEMPER_CHECK(!verdicts.empty(), "pass rate of a prompt with no rollouts is undefined");
  int c = 0;
  for (Verdict v : verdicts) c += v == Verdict::Correct;
  return static_cast<double>(c) / static_cast<double>(verdicts.size());
}

DifficultyFilter::DifficultyFilter(PassBand default_band, std::map<std::string, PassBand> task_bands)
    : default_band_(default_band), task_bands_(std::move(task_bands)) {
  check_band(default_band_, "difficulty filter default band");
  for (const auto& [task, b] : task_bands_) check_band(b, "difficulty filter band of task '" + task + "'");
}

const PassBand& DifficultyFilter::band(const std::string& task) const {
  auto it = task_bands_.find(task);
  return it == task_bands_.end() ? default_band_ : it->second;
}

bool DifficultyFilter::keep(const std::string& task, double rate) const {
  const PassBand& b = band(task);
  return rate >= b.alpha - 1e-12 && rate <= b.beta + 1e-12;  // rates are c/n; tolerate round-off
}

std::vector<PassRateEntry> DifficultyFilter::calibrate(const std::vector<PromptRollouts>& prompts) {
  std::vector<PassRateEntry> out;
  out.reserve(prompts.size());
  kept_indices_.clear();
  kept_rates_.clear();
  for (const auto& p : prompts) {
    TEMPER_CHECK(!p.verdicts.empty(), "difficulty filter: prompt ", p.prompt_index, " (task '", p.task,
                 "') has no rollouts");
    PassRateEntry e;
    e.prompt_index = p.prompt_index;
    e.uid = p.uid;
    e.task = p.task;
    e.n = static_cast<int>(p.verdicts.size());
    for (Verdict v : p.verdicts) {
      e.correct += v == Verdict::Correct;
      e.unparsable += v == Verdict::Unparsable;
    }
    e.rate = static_cast<double>(e.correct) / e.n;
    e.kept = keep(e.task, e.rate);
    if (e.kept) {
      kept_indices_.push_back(e.prompt_index);
      kept_rates_.push_back(e.rate);
    }
    out.push_back(std::move(e));
  }
  return out;
}

RlSavedState DifficultyFilter::save_state() const { return {kept_indices_, kept_rates_}; }

void DifficultyFilter::restore_state(const RlSavedState& s) {
  TEMPER_CHECK(s.ints.size() == s.doubles.size(), "difficulty filter state: ", s.ints.size(), " prompt indices but ",
               s.doubles.size(), " rates; the checkpoint entry is corrupt");
  kept_indices_ = s.ints;
  kept_rates_ = s.doubles;
}

void write_kept_jsonl(const std::string& path, const std::vector<PassRateEntry>& entries) {
  std::string text;
  for (const auto& e : entries) {
    if (!e.kept) continue;
    nlohmann::json j = {{"prompt_index", e.prompt_index}, {"uid", e.uid},           {"task", e.task},
                        {"n", e.n},                       {"correct", e.correct}, {"unparsable", e.unparsable},
                        {"pass_rate", e.rate}};
    text += j.dump() + "\n";
  }
  write_file_atomic(path, text);
}

std::vector<PassRateEntry> read_kept_jsonl(const std::string& path) {
  std::ifstream f(path);
  TEMPER_CHECK(f.good(), "cannot open kept-prompt file ", path, ": ", std::strerror(errno));
  std::vector<PassRateEntry> out;
  std::string line;
  for (int lineno = 1; std::getline(f, line); ++lineno) {
    if (trim(line).empty()) continue;
    try {
      nlohmann::json j = nlohmann::json::parse(line);
      PassRateEntry e;
      e.prompt_index = j.at("prompt_index").get<int64_t>();
      e.uid = j.value("uid", std::string());
      e.task = j.value("task", std::string());
      e.n = j.value("n", 0);
      e.correct = j.value("correct", 0);
      e.unparsable = j.value("unparsable", 0);
      e.rate = j.at("pass_rate").get<double>();
      e.kept = true;
      out.push_back(std::move(e));
    } catch (const nlohmann::json::exception& ex) {
      fail(path, ":", lineno, ": not a kept-prompt record: ", ex.what());
    }
  }
  return out;
}

PassRateHistogram pass_rate_histogram(const std::vector<PassRateEntry>& entries, int bins) {
  TEMPER_CHECK(bins >= 1, "pass-rate histogram needs at least 1 bin, got ", bins);
  PassRateHistogram h;
  h.bins = bins;
  for (const auto& e : entries) {
    TEMPER_CHECK(e.n > 0 && e.correct >= 0 && e.correct <= e.n, "pass-rate histogram: prompt ", e.prompt_index,
                 " has ", e.correct, " correct of ", e.n);
    auto& all = h.all[e.task];
    auto& kept = h.kept[e.task];
    all.resize(bins, 0);
    kept.resize(bins, 0);
    const int b = static_cast<int>(std::min<int64_t>(bins - 1, static_cast<int64_t>(e.correct) * bins / e.n));
    ++all[b];
    if (e.kept) ++kept[b];
  }
  return h;
}

std::string format_histogram(const PassRateHistogram& h) {
  std::ostringstream os;
  os << std::left << std::setw(14) << "pass_rate";
  for (const auto& kv : h.all) os << std::right << std::setw(20) << (kv.first + " all/kept");
  os << "\n";
  std::map<std::string, std::pair<int64_t, int64_t>> totals;
  for (int b = 0; b < h.bins; ++b) {
    std::ostringstream label;
    label << std::fixed << std::setprecision(3) << static_cast<double>(b) / h.bins << "-"
          << static_cast<double>(b + 1) / h.bins;
    os << std::left << std::setw(14) << label.str();
    for (const auto& [task, counts] : h.all) {
      const int64_t k = h.kept.at(task)[b];
      os << std::right << std::setw(20) << (std::to_string(counts[b]) + "/" + std::to_string(k));
      totals[task].first += counts[b];
      totals[task].second += k;
    }
    os << "\n";
  }
  os << std::left << std::setw(14) << "total";
  for (const auto& [task, t] : totals)
    os << std::right << std::setw(20) << (std::to_string(t.first) + "/" + std::to_string(t.second));
  os << "\n";
  return os.str();
}

void write_histogram(const std::string& path, const PassRateHistogram& h) {
  write_file_atomic(path, format_histogram(h));
}

// ---- ZeroVarianceRefill ------------------------------------------------------

ZeroVarianceRefill::ZeroVarianceRefill(int target_groups, int max_rounds)
    : target_(target_groups), max_rounds_(max_rounds) {
  TEMPER_CHECK(target_groups >= 1, "dynamic sampling: target groups per minibatch must be >= 1, got ", target_groups);
  TEMPER_CHECK(max_rounds >= 1, "dynamic sampling: max sampling rounds per step must be >= 1, got ", max_rounds);
}

void ZeroVarianceRefill::begin_step() {
  have_ = 0;
  rounds_ = 0;
}

RefillDecision ZeroVarianceRefill::add_round(const std::vector<uint8_t>& zero_variance) {
  TEMPER_CHECK(rounds_ < max_rounds_, "dynamic sampling: round ", rounds_ + 1, " of a step exceeds max_rounds ",
               max_rounds_, "; call begin_step() at the start of each step");
  RefillDecision d;
  ++rounds_;
  ++total_rounds_;
  total_groups_ += static_cast<int64_t>(zero_variance.size());
  for (size_t g = 0; g < zero_variance.size(); ++g) {
    if (zero_variance[g]) {
      ++d.dropped;
    } else if (have_ < target_) {
      d.keep_groups.push_back(static_cast<int>(g));
      ++have_;
    } else {
      ++d.surplus;
    }
  }
  total_dropped_ += d.dropped;
  d.have = have_;
  d.still_needed = target_ - have_;
  d.generate_more = d.still_needed > 0 && rounds_ < max_rounds_;
  if (d.still_needed > 0 && !d.generate_more) ++short_steps_;
  return d;
}

RlSavedState ZeroVarianceRefill::save_state() const {
  return {{target_, max_rounds_, total_groups_, total_dropped_, total_rounds_, short_steps_}, {}};
}

void ZeroVarianceRefill::restore_state(const RlSavedState& s) {
  TEMPER_CHECK(s.ints.size() == 6, "dynamic sampling state has ", s.ints.size(),
               " integers, expected 6; the checkpoint entry is corrupt");
  // ints[0..1] (target, max_rounds) are informational: a resumed run may change them.
  total_groups_ = s.ints[2];
  total_dropped_ = s.ints[3];
  total_rounds_ = s.ints[4];
  short_steps_ = s.ints[5];
  have_ = 0;
  rounds_ = 0;
}

}  // namespace temper
