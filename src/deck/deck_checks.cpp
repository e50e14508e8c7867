// Checks across keys (head counts, learning rates, curriculum stages, task
// mix) run after a deck is read, and the structured views built on them.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <set>

#include "core/error.h"
#include "deck/deck.h"

namespace temper {
namespace {

std::string trimmed(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

// "model.d_model = 256 (run.deck:3)"
std::string shown(const Deck& d, const std::string& key) {
  return cat(key, " = ", d.get_string(key), " (", d.where(key), ")");
}

std::vector<std::string> split_plus(const std::string& stage) {
  std::vector<std::string> files;
  size_t start = 0;
  while (true) {
    const size_t p = stage.find('+', start);
    files.push_back(trimmed(stage.substr(start, p == std::string::npos ? p : p - start)));
    if (p == std::string::npos) break;
    start = p + 1;
  }
  return files;
}

}  // namespace

void Deck::check_consistency() {
  const std::string pre = source_ + ": ";
  const int64_t d_model = get_int("model.d_model"), heads = get_int("model.n_heads"),
                kv = get_int("model.n_kv_heads");
  if (get_int("model.head_dim") == 0)
    TEMPER_CHECK(d_model % heads == 0, pre, shown(*this, "model.d_model"),
                 " is not divisible by ", shown(*this, "model.n_heads"),
                 "; change one of them or set model.head_dim");
  TEMPER_CHECK(heads % kv == 0, pre, shown(*this, "model.n_kv_heads"), " does not divide ",
               shown(*this, "model.n_heads"));
  // Ulysses (SFT, RL) gives each SP rank whole heads (a model from hf:/checkpoint is checked when loaded).
  if ((get_string("run.phase") == "sft" || get_string("run.phase") == "rl") && get_string("model.init") == "random")
    TEMPER_CHECK(heads % get_int("parallel.sp") == 0, pre, shown(*this, "parallel.sp"), " does not divide ",
                 shown(*this, "model.n_heads"), ": Ulysses sequence parallelism gives every SP rank n_heads / sp "
                 "whole attention heads");
  const auto parts = get_list("model.recompute");
  TEMPER_CHECK(!parts.empty(), pre, "model.recompute (", where("model.recompute"),
               ") is empty: name attention and/or mlp");
  for (const auto& part : parts)
    TEMPER_CHECK(part == "attention" || part == "mlp", pre, shown(*this, "model.recompute"), ": '", part,
                 "' is not a part that can be recomputed (attention, mlp)");
  const std::string attention = get_string("model.attention");
  int64_t noise = attention == "differential" ? heads : 0;
  if (attention == "grouped_differential") {
    // Motif 2 GDA: the noise-control heads, each shared by a group of signal heads.
    const bool explicit_count = get_int("model.gda_noise_heads") > 0;
    const int64_t ratio = get_int("model.gda_ratio");
    noise = explicit_count ? get_int("model.gda_noise_heads") : heads / ratio;
    const std::string src = explicit_count ? shown(*this, "model.gda_noise_heads") : shown(*this, "model.gda_ratio");
    if (!explicit_count)
      TEMPER_CHECK(heads % ratio == 0 && noise > 0, pre, src, " does not divide ", shown(*this, "model.n_heads"));
    TEMPER_CHECK(heads % noise == 0, pre, src, " gives ", noise, " noise-control heads, which do not divide ",
                 shown(*this, "model.n_heads"));
    TEMPER_CHECK(noise % kv == 0, pre, src, " gives ", noise, " noise-control heads, not a multiple of ",
                 shown(*this, "model.n_kv_heads"), " (each noise head's signal heads must share one kv head)");
  }
  if (attention != "standard") {
    // Ulysses gives every SP rank whole groups: n_heads / sp signal heads with their noise-control heads.
    const int64_t sp = get_int("parallel.sp");
    if (get_string("run.phase") == "sft" && get_string("model.init") == "random")
      TEMPER_CHECK(heads % sp == 0 && noise % sp == 0, pre, shown(*this, "parallel.sp"), " does not divide the ",
                   heads, " signal heads and ", noise, " noise-control heads of model.attention = ", attention,
                   ": Ulysses gives every SP rank whole groups (n_heads / sp signal heads with their n_noise_heads / "
                   "sp noise-control heads); choose parallel.sp among the common divisors of ", heads, " and ", noise);
    const auto rp = get_list("model.recompute");
    TEMPER_CHECK(get_string("model.activation_checkpointing") != "selective" ||
                     std::find(rp.begin(), rp.end(), "attention") == rp.end(),
                 pre, "model.attention = ", attention, " (", where("model.attention"),
                 ") keeps its attention core: ", shown(*this, "model.recompute"), " may name mlp only");
  }
  if (get_string("model.attention") != "standard")
    TEMPER_CHECK(!get_bool("model.qk_norm") && !get_bool("model.qkv_bias"), pre, "model.attention = ",
                 get_string("model.attention"), " (", where("model.attention"), ") cannot be combined with ",
                 get_bool("model.qk_norm") ? shown(*this, "model.qk_norm") : shown(*this, "model.qkv_bias"));
  TEMPER_CHECK(get_float("sft.min_lr") <= get_float("sft.lr"), pre, shown(*this, "sft.min_lr"),
               " is larger than ", shown(*this, "sft.lr"));
  const int64_t walltime = get_int("run.walltime");
  TEMPER_CHECK(walltime == 0 || get_int("run.walltime_margin") < walltime, pre,
               shown(*this, "run.walltime_margin"), " leaves no time within ",
               shown(*this, "run.walltime"));
  if (get_bool("rl.filter"))
    TEMPER_CHECK(get_float("rl.filter_low") <= get_float("rl.filter_high"), pre,
                 shown(*this, "rl.filter_low"), " must be below ", shown(*this, "rl.filter_high"),
                 " or every prompt is filtered out");

  // Curriculum stages: one entry per stage in each stage_* list.
  const auto stages = get_list("sft.stage_files");
  const auto seqs = get_int_list("sft.stage_seq_len");
  const auto steps = get_int_list("sft.stage_steps");
  if (stages.empty()) {
    TEMPER_CHECK(seqs.empty() && steps.empty(), pre, "sft.stage_seq_len/sft.stage_steps are set (",
                 where(seqs.empty() ? "sft.stage_steps" : "sft.stage_seq_len"),
                 ") but sft.stage_files is empty");
  } else {
    for (const auto& st : stages)
      for (const auto& f : split_plus(st))
        TEMPER_CHECK(!f.empty(), pre, "sft.stage_files (", where("sft.stage_files"), "): stage '", st,
                     "' has an empty file name (files of a stage are joined by '+')");
    TEMPER_CHECK(seqs.empty() || seqs.size() == stages.size(), pre, shown(*this, "sft.stage_seq_len"),
                 " has ", seqs.size(), " entries but sft.stage_files has ", stages.size(), " stages");
    TEMPER_CHECK(steps.empty() || steps.size() == stages.size(), pre,
                 shown(*this, "sft.stage_steps"), " has ", steps.size(),
                 " entries but sft.stage_files has ", stages.size(), " stages");
    if (!steps.empty()) {
      int64_t total = 0;
      for (int64_t s : steps) total += s;
      if (is_default("sft.steps")) {
        Value& v = mutable_value("sft.steps");
        v.i = total;
        v.text = std::to_string(total);
        v.note = "sum of sft.stage_steps";
      } else {
        TEMPER_CHECK(get_int("sft.steps") == total, pre, shown(*this, "sft.steps"),
                     " differs from the sum of sft.stage_steps (", total,
                     "); leave sft.steps unset or make them agree");
      }
    }
  }
  if (get_string("run.phase") == "sft")
    TEMPER_CHECK(get_int("sft.steps") > 0, pre, shown(*this, "sft.steps"),
                 ": an SFT run needs at least one step (to only evaluate a model, use run.phase = eval)");
  rl_task_mix(*this);      // validates its syntax
  rl_filter_bands(*this);  // likewise
}

std::vector<SftStage> sft_stages(const Deck& deck) {
  const auto stages = deck.get_list("sft.stage_files");
  if (stages.empty())
    return {{deck.get_list("data.train_files"), deck.get_int("data.seq_len"), deck.get_int("sft.steps")}};
  const auto seqs = deck.get_int_list("sft.stage_seq_len");
  const auto steps = deck.get_int_list("sft.stage_steps");
  const int64_t n = static_cast<int64_t>(stages.size()), total = deck.get_int("sft.steps");
  std::vector<SftStage> out;
  for (int64_t i = 0; i < n; ++i) {
    SftStage s;
    s.files = split_plus(stages[i]);
    s.seq_len = seqs.empty() ? deck.get_int("data.seq_len") : seqs[i];
    // Without stage_steps, sft.steps is split evenly; the first stages take the remainder.
    s.steps = steps.empty() ? total / n + (i < total % n ? 1 : 0) : steps[i];
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<std::pair<std::string, double>> rl_task_mix(const Deck& deck) {
  const std::string ctx = cat(deck.source(), ": rl.task_mix (", deck.where("rl.task_mix"), "): ");
  std::vector<std::pair<std::string, double>> out;
  std::set<std::string> seen;
  double sum = 0;
  for (const auto& item : deck.get_list("rl.task_mix")) {
    const size_t colon = item.find(':');
    TEMPER_CHECK(colon != std::string::npos, ctx, "'", item, "' is not of the form task:weight");
    const std::string name = trimmed(item.substr(0, colon)), w = trimmed(item.substr(colon + 1));
    TEMPER_CHECK(!name.empty(), ctx, "'", item, "' has no task name");
    char* end = nullptr;
    const double weight = std::strtod(w.c_str(), &end);
    TEMPER_CHECK(!w.empty() && *end == '\0' && std::isfinite(weight) && weight >= 0, ctx,
                 "weight '", w, "' of task '", name, "' is not a number >= 0");
    TEMPER_CHECK(seen.insert(name).second, ctx, "task '", name, "' appears twice");
    sum += weight;
    out.emplace_back(name, weight);
  }
  TEMPER_CHECK(out.empty() || sum > 0, ctx, "the weights sum to 0");
  return out;
}

std::map<std::string, std::pair<double, double>> rl_filter_bands(const Deck& deck) {
  const std::string ctx = cat(deck.source(), ": rl.filter_bands (", deck.where("rl.filter_bands"), "): ");
  std::map<std::string, std::pair<double, double>> out;
  auto number = [&](const std::string& text, const std::string& item) {
    char* end = nullptr;
    const std::string t = trimmed(text);
    const double v = std::strtod(t.c_str(), &end);
    TEMPER_CHECK(!t.empty() && *end == '\0' && v >= 0 && v <= 1, ctx, "'", item,
                 "': pass-rate bounds must be numbers in [0, 1]");
    return v;
  };
  for (const auto& item : deck.get_list("rl.filter_bands")) {
    const size_t colon = item.find(':');
    TEMPER_CHECK(colon != std::string::npos, ctx, "'", item, "' is not of the form task:low-high");
    const std::string name = trimmed(item.substr(0, colon)), band = item.substr(colon + 1);
    const size_t dash = band.find('-');
    TEMPER_CHECK(!name.empty() && dash != std::string::npos, ctx, "'", item, "' is not of the form task:low-high");
    const double lo = number(band.substr(0, dash), item), hi = number(band.substr(dash + 1), item);
    TEMPER_CHECK(lo <= hi, ctx, "'", item, "': low bound above the high bound");
    TEMPER_CHECK(out.emplace(name, std::make_pair(lo, hi)).second, ctx, "task '", name, "' appears twice");
  }
  return out;
}

}  // namespace temper
