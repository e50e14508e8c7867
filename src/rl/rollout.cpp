// Rollouts: render, sample, decode, score (see rollout.h).
#include "rl/rollout.h"

#include <chrono>

#include "core/error.h"

namespace temper {

std::vector<double> Rollouts::rewards() const {
  std::vector<double> r(scores.size());
  for (size_t i = 0; i < scores.size(); ++i) r[i] = scores[i].result.reward;
  return r;
}

std::vector<Verdict> Rollouts::verdicts() const {
  std::vector<Verdict> v(scores.size());
  for (size_t i = 0; i < scores.size(); ++i) v[i] = scores[i].result.verdict;
  return v;
}

namespace {
// Decodes a response; ids outside the tokenizer's vocabulary (a model's padded
// embedding rows) become U+FFFD instead of failing the step.
std::string decode_response(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  std::string out;
  std::vector<int32_t> run;
  for (int32_t id : ids) {
    if (id >= 0 && id < tok.vocab_size()) {
      run.push_back(id);
      continue;
    }
    if (!run.empty()) out += tok.decode(run);
    run.clear();
    out += "\xEF\xBF\xBD";
  }
  if (!run.empty()) out += tok.decode(run);
  return out;
}
}  // namespace

Rollouts generate_rollouts(Generator& gen, const Tokenizer& tok, ChatTemplate tmpl,
                           const std::vector<RlPrompt>& prompt_set, const std::vector<int64_t>& which,
                           const RolloutOptions& opt, const ScoringOptions& scoring) {
  TEMPER_CHECK(opt.group_size >= 1, "generate_rollouts: group_size must be >= 1");
  Rollouts r;
  r.group_size = opt.group_size;
  r.prompts = which;
  std::vector<uint64_t> uids;
  for (int64_t p : which) {
    TEMPER_CHECK(p >= 0 && size_t(p) < prompt_set.size(), "generate_rollouts: prompt index ", p, " out of range");
    r.prompt_ids.push_back(render_prompt(tok, prompt_set[size_t(p)].messages, tmpl));
    r.prompt_tokens += int64_t(r.prompt_ids.back().size());
    uids.push_back(uint64_t(p));
  }
  if (which.empty()) return r;
  SamplingOptions so;
  so.n_samples = opt.group_size;
  so.max_new_tokens = opt.max_new_tokens;
  so.temperature = opt.temperature;
  so.top_k = opt.top_k;
  so.top_p = opt.top_p;
  so.stop_ids = {end_of_turn_id(tok, tmpl)};
  so.stop_strings = opt.stop_strings;
  so.seed = opt.seed;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<GeneratedSample> out = gen.generate(r.prompt_ids, so, uids);  // text decoded below
  r.generate_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  TEMPER_CHECK(out.size() == which.size() * size_t(opt.group_size), "generate_rollouts: the generator returned ",
               out.size(), " samples for ", which.size(), " prompts x ", opt.group_size);
  std::vector<int64_t> prompt_of(out.size());
  for (size_t j = 0; j < out.size(); ++j) {
    GeneratedSample& g = out[j];
    r.generated_tokens += int64_t(g.tokens.size());
    r.text.push_back(decode_response(tok, g.tokens));
    r.finish.push_back(finish_reason_name(g.finish));
    r.truncated.push_back(g.finish == FinishReason::Length);
    r.response_ids.push_back(std::move(g.tokens));
    r.sampler_logp.push_back(std::move(g.logp));
    prompt_of[j] = which[j / size_t(opt.group_size)];
  }
  const auto t1 = std::chrono::steady_clock::now();
  r.scores = score_responses(prompt_set, prompt_of, r.text, r.truncated, scoring);
  r.score_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  return r;
}

}  // namespace temper
