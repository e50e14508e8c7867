// Small verifiable reasoning tasks for toy SFT/RL runs: short chains of
// thought with a final answer in \boxed{...} that can be checked exactly.
// Deterministic from a seed; sized for a byte-level model of a few M params.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/rng.h"
#include "tokenizer/chat_template.h"

namespace temper {

// arith, sort, count, word, if_upper, if_words
const std::vector<std::string>& synthetic_task_names();

struct SyntheticExample {
  std::string task;
  std::vector<Message> prompt;        // optional system + user
  std::string response;               // reference assistant text (chain of thought + \boxed{answer})
  std::string answer;                 // reference final answer
  nlohmann::json constraints;         // IF tasks: {"case":"upper"} or {"words":N}; null otherwise
};

// One example of `task`, drawing everything from `rng`.
SyntheticExample make_synthetic_example(const std::string& task, Rng& rng);

// Records as written to disk: "messages", "task", "answer" (+ "constraints").
nlohmann::json sft_record(const SyntheticExample& ex);      // prompt + assistant response
nlohmann::json prompt_record(const SyntheticExample& ex);   // prompt only (RL)

// Writes sft_train.jsonl (n_train), sft_eval.jsonl (n_eval), rl_prompts.jsonl
// (n_train) and rl_eval.jsonl (n_eval) into `dir` (created if missing). Tasks
// take turns; no eval prompt appears in a training file.
void write_synthetic_datasets(const std::string& dir, uint64_t seed, int n_train, int n_eval);

// Content of the last \boxed{...} (braces matched); found=false when there is none.
std::string last_boxed(const std::string& text, bool* found = nullptr);

// Exact match of the last \boxed{} against the reference (spaces ignored for
// numeric and list answers), plus the IF constraints: if_upper needs no
// lowercase letter anywhere in the output (outside "\boxed" and think tags),
// if_words needs exactly N words in the boxed answer (N from `constraints`,
// else the reference's word count).
bool check_answer(const std::string& task, const std::string& reference, const std::string& model_output,
                  const nlohmann::json& constraints = nullptr);

// Checks the verifier fields of a synthetic-task record at load time: "task" one of
// synthetic_task_names(), "answer" a non-empty string, "constraints" (optional) an
// object whose "words" is a positive integer for if_words. Throws an Error starting
// with `where` (file:line).
void check_synthetic_record(const nlohmann::json& record, const std::string& where);

}  // namespace temper
