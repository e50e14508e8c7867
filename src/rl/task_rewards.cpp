// RL prompt files and routing of responses to their reward family (see task_rewards.h).
#include "rl/task_rewards.h"

#include <algorithm>

#include "core/error.h"
#include "data/jsonl.h"
#include "data/synthetic_tasks.h"

namespace temper {

const char* reward_family_name(RewardFamily f) {
  switch (f) {
    case RewardFamily::Math: return "math";
    case RewardFamily::Code: return "code";
    case RewardFamily::Instruction: return "if";
    case RewardFamily::Synthetic: return "synthetic";
  }
  return "?";
}

RewardFamily reward_family_of(const std::string& task) {
  if (task == "math" || task == "gsm8k" || task == "aime" || task == "math500") return RewardFamily::Math;
  if (task == "code" || task == "humaneval" || task == "mbpp") return RewardFamily::Code;
  if (task == "if" || task == "ifeval" || task == "instruction") return RewardFamily::Instruction;
  const auto& syn = synthetic_task_names();
  if (std::find(syn.begin(), syn.end(), task) != syn.end()) return RewardFamily::Synthetic;
  std::string known = "math, gsm8k, aime, math500, code, humaneval, mbpp, if, ifeval, instruction";
  for (const auto& s : syn) known += ", " + s;
  fail("unknown task '", task, "' (known: ", known, ")");
}

namespace {

// The verifier data of a record, checked when the file is read: every field a
// verifier reads, with its type. The verifier itself is run on an empty response
// where it reads its reference before the response, so the rules live in one place.
void check_verifier_fields(const RlPrompt& p) {
  const std::string& where = p.source;
  try {
    switch (p.family) {
      case RewardFamily::Math:
        TEMPER_CHECK(p.ref.contains("answer"), "task '", p.task, "' needs an \"answer\"");
        math_reward("", p.ref);  // a string, a number or a non-empty array of them
        for (const auto& a : p.ref["answer"].is_array() ? p.ref["answer"] : nlohmann::json::array({p.ref["answer"]}))
          TEMPER_CHECK(!a.is_string() || a.get<std::string>().find_first_not_of(" \t\r\n") != std::string::npos,
                       "task '", p.task, "': an empty \"answer\" matches nothing a model could write");
        break;
      case RewardFamily::Synthetic:
        check_synthetic_record(p.ref, where);
        break;
      case RewardFamily::Code:
        TEMPER_CHECK(p.ref.contains("test_code") ||
                         (p.ref.contains("tests") && p.ref["tests"].is_array() && !p.ref["tests"].empty()),
                     "task '", p.task, "' needs a non-empty \"tests\" array or a \"test_code\" object");
        if (p.ref.contains("test_code")) code_test_code_from_json(p.ref);
        else code_tests_from_json(p.ref);  // each test typed; an empty expected output is refused
        break;
      case RewardFamily::Instruction:
        TEMPER_CHECK(p.ref.contains("constraints"), "task '", p.task, "' needs \"constraints\"");
        instruction_reward("", p.ref["constraints"]);  // unknown types, missing or ill-typed keys
        break;
    }
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (msg.rfind(where, 0) == 0) throw;
    fail(where, ": ", msg);
  } catch (const std::exception& e) {  // a json type error in a verifier's reading of the record
    fail(where, ": task '", p.task, "': ill-typed verifier data: ", e.what());
  }
}

}  // namespace

std::vector<RlPrompt> load_rl_prompts(const std::string& path) {
  std::vector<Conversation> recs = read_jsonl(path);
  std::vector<RlPrompt> out;
  out.reserve(recs.size());
  for (size_t i = 0; i < recs.size(); ++i) {
    Conversation& c = recs[i];
    RlPrompt p;
    p.index = int64_t(i);
    p.source = c.source;
    const auto task = c.extra.find("task");
    TEMPER_CHECK(task != c.extra.end() && task->is_string(), c.source, ": RL prompt needs a string \"task\"");
    p.task = task->get<std::string>();
    try {
      p.family = reward_family_of(p.task);
    } catch (const Error& e) {
      fail(c.source, ": ", e.what());
    }
    TEMPER_CHECK(!c.messages.empty(), c.source, ": RL prompt has no messages");
    // An assistant turn at the end is the SFT reference; the prompt is what precedes it.
    if (c.messages.back().role == "assistant") c.messages.pop_back();
    TEMPER_CHECK(!c.messages.empty() && c.messages.back().role == "user", c.source,
                 ": RL prompt must end with a user message");
    p.messages = std::move(c.messages);
    p.ref = c.extra;
    check_verifier_fields(p);
    out.push_back(std::move(p));
  }
  return out;
}

namespace {

std::string answer_text(const nlohmann::json& ref) {
  const auto& a = ref.at("answer");
  return a.is_string() ? a.get<std::string>() : a.dump();
}

RewardResult synthetic_reward(const RlPrompt& p, const std::string& response) {
  RewardResult r;
  auto body = strip_think(response);
  bool found = false;
  if (body) last_boxed(*body, &found);
  if (!body || !found) {
    r.verdict = Verdict::Unparsable;
    r.detail = body ? "no \\boxed answer" : "unterminated <think>";
    return r;
  }
  const nlohmann::json constraints = p.ref.contains("constraints") ? p.ref["constraints"] : nlohmann::json();
  const bool ok = check_answer(p.task, answer_text(p.ref), response, constraints);
  r.reward = ok ? 1.0 : 0.0;
  r.verdict = ok ? Verdict::Correct : Verdict::Wrong;
  return r;
}

}  // namespace

void check_scoring_can_run(const std::vector<RlPrompt>& prompts, const ScoringOptions& opt) {
  for (const RlPrompt& p : prompts)
    if (p.family == RewardFamily::Code) {
      check_code_rewards_can_run(opt.sandbox);
      return;
    }
}

std::vector<ScoredResponse> score_responses(const std::vector<RlPrompt>& prompts, const std::vector<int64_t>& prompt_of,
                                            const std::vector<std::string>& responses,
                                            const std::vector<uint8_t>& truncated, const ScoringOptions& opt) {
  const size_t n = responses.size();
  TEMPER_CHECK(prompt_of.size() == n && truncated.size() == n, "score_responses: ", n, " responses but ",
               prompt_of.size(), " prompt indices and ", truncated.size(), " truncation flags");
  std::vector<ScoredResponse> out(n);
  std::vector<CodeJob> jobs;
  std::vector<size_t> job_of;
  size_t verified = 0, verifier_errors = 0;  // responses that reached a verifier; those it failed on
  std::string first_error;
  for (size_t i = 0; i < n; ++i) {
    TEMPER_CHECK(prompt_of[i] >= 0 && size_t(prompt_of[i]) < prompts.size(), "score_responses: prompt index ",
                 prompt_of[i], " out of range");
    const RlPrompt& p = prompts[size_t(prompt_of[i])];
    RewardResult& r = out[i].result;
    if (truncated[i]) {  // cut at the length limit: no final answer to judge
      r.verdict = Verdict::Unparsable;
      r.detail = "truncated at max_new_tokens";
      continue;
    }
    ++verified;
    try {
      switch (p.family) {
        case RewardFamily::Math: r = math_reward(responses[i], p.ref, opt.math); break;
        case RewardFamily::Synthetic: r = synthetic_reward(p, responses[i]); break;
        case RewardFamily::Instruction: {
          auto body = strip_think(responses[i]);
          if (!body) {
            r.verdict = Verdict::Unparsable;
            r.detail = "unterminated <think>";
          } else {
            r = instruction_reward(*body, p.ref["constraints"], opt.if_loose);
          }
          break;
        }
        case RewardFamily::Code: {
          auto body = strip_think(responses[i]);
          if (!body) {
            r.verdict = Verdict::Unparsable;
            r.detail = "unterminated <think>";
          } else {
            if (p.ref.contains("test_code")) jobs.push_back({*body, {}, code_test_code_from_json(p.ref)});
            else jobs.push_back({*body, code_tests_from_json(p.ref), std::nullopt});
            job_of.push_back(i);
          }
          break;
        }
      }
    } catch (const std::exception& e) {  // a verifier must never take the run down on model text
      r = RewardResult{};
      r.verdict = Verdict::Unparsable;
      r.detail = std::string("verifier error: ") + e.what();
      if (verifier_errors++ == 0) first_error = cat(p.source, " (task '", p.task, "'): ", e.what());
    }
  }
  // One broken record is discarded like an unparsable answer; a batch in which every
  // response failed in its verifier measures nothing: that is an error, not 0 %.
  TEMPER_CHECK(verifier_errors == 0 || verifier_errors < verified, "every one of the ", verified,
               " responses scored together failed in its verifier, so the step or evaluation would report 0 %"
               " without having judged anything; first: ", first_error);
  if (!jobs.empty()) {
    std::vector<RewardResult> res = code_rewards(jobs, opt.sandbox);
    for (size_t j = 0; j < jobs.size(); ++j) out[job_of[j]].result = res[j];
  }
  for (auto& s : out) s.discarded = s.result.verdict == Verdict::Unparsable;
  return out;
}

}  // namespace temper
