// Held-out exact-match accuracy by greedy decoding: prompts from data.eval_file
// (JSONL with "messages", "task", "answer"), decoded greedily in batches with the
// KV-cached InferenceEngine (model/inference.h), checked with the synthetic
// tasks' answer checker, samples split over the ranks.
#pragma once
#include <string>
#include <vector>

#include "data/jsonl.h"
#include "kernels/kernels.h"
#include "model/decoder.h"
#include "parallel/comm.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace temper {

struct EvalResult {
  int64_t correct = 0, total = 0;
  double seconds = 0;
  double accuracy() const { return total ? double(correct) / double(total) : 0.0; }
};

// Greedy continuation of each prompt until end_id (kept as the last token; < 0:
// none) or max_new tokens; ties go to the lowest id.
std::vector<std::vector<int32_t>> greedy_decode(Decoder& model, Kernels& k,
                                                const std::vector<std::vector<int32_t>>& prompts,
                                                int32_t end_id, int max_new, int vocab_size);

struct GreedyEvalOptions {
  std::string file;        // JSONL with "messages", "task", "answer"; "" = no evaluation (data.eval_file)
  int64_t samples = 64;    // prompts per evaluation (sft.eval_samples)
  int max_new_tokens = 256;
  std::string output_dir;  // eval_<tag>.rank<R>.jsonl go here
  ChatTemplate chat_template = ChatTemplate::ChatML;
};

class GreedyEval {
 public:
  GreedyEval(const GreedyEvalOptions& opt, const Tokenizer& tok, Comm& comm);
  bool enabled() const { return !items_.empty(); }
  // Evaluates, writes <output_dir>/eval_<tag>.rank<R>.jsonl, returns the global result.
  EvalResult run(Decoder& model, Kernels& k, const std::string& tag);

 private:
  const Tokenizer& tok_;
  Comm& comm_;
  ChatTemplate tmpl_;
  std::vector<Conversation> items_;  // this rank's share
  int max_new_ = 0, batch_ = 16;
  std::string out_dir_;
};

}  // namespace temper
