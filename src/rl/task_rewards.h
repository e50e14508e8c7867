// RL prompts and their verifiers: a prompt file is JSONL with "messages" (the
// conversation up to the assistant turn), "task" (a name: math, code, if, or one
// of the synthetic tasks) and the verifier's data ("answer" for math, "tests" or
// "test_code" for code, "constraints" for instruction following). Each task belongs to a reward
// family; score_responses() routes every response to its family's reward and
// applies the format rules: a response cut at the length limit, with an
// unterminated <think>, or with no final answer is Unparsable (discarded from
// the gradient and counted), never scored 0.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rl/rewards/reward.h"
#include "tokenizer/chat_template.h"

namespace temper {

enum class RewardFamily { Math, Code, Instruction, Synthetic };
const char* reward_family_name(RewardFamily f);
// math | gsm8k | aime | math500 -> Math; code | humaneval | mbpp -> Code; if | ifeval | instruction -> Instruction;
// arith, sort, count, word, if_upper, if_words -> Synthetic. Unknown names throw.
RewardFamily reward_family_of(const std::string& task);

struct RlPrompt {
  int64_t index = 0;              // line order in the file (stable id: seeds, dumps, filter)
  std::string task;
  RewardFamily family = RewardFamily::Math;
  std::vector<Message> messages;  // without the answer
  nlohmann::json ref;             // answer / tests / constraints (the record minus messages)
  std::string source;             // file:line
};

// Reads and checks every record (task known, verifier data present), naming file:line.
std::vector<RlPrompt> load_rl_prompts(const std::string& path);

struct ScoringOptions {
  MathOptions math;
  SandboxOptions sandbox;
  bool if_loose = false;
};

// Called by the phases right after their prompts are loaded: where any prompt is a code
// task, the code sandbox must be able to run here (check_code_rewards_can_run): a run
// that would refuse at its first scoring refuses at start instead, and the warning of
// an allowed unisolated mode (rl.code_unisolated) comes at start.
void check_scoring_can_run(const std::vector<RlPrompt>& prompts, const ScoringOptions& opt);

struct ScoredResponse {
  RewardResult result;
  bool discarded = false;  // Unparsable: no gradient
};

// One response per entry of `prompt_of` (an index into `prompts`); `truncated[i]`
// marks a response that hit max_new_tokens. Code responses run concurrently in
// the sandbox (opt.sandbox.workers). Never throws on model output; configuration
// errors (no interpreter) do throw.
std::vector<ScoredResponse> score_responses(const std::vector<RlPrompt>& prompts, const std::vector<int64_t>& prompt_of,
                                            const std::vector<std::string>& responses,
                                            const std::vector<uint8_t>& truncated, const ScoringOptions& opt);

}  // namespace temper
