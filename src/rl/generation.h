// Generator: batched autoregressive sampling with a KV cache (InferenceEngine).
// n samples per prompt (a group); up to max_batch sequences are live at once and
// a finished sequence's slot is refilled at once with the next pending sample
// (continuous batching). A prompt is prefilled once and its cache copied to the
// other slots of its group. Each sample draws its uniforms from its own stream
// Rng(mix64(seed, mix64(prompt_uid, sample_index))), and its first token from
// the prompt's logits, so the results do not depend on max_batch or on the order
// in which samples run. Greedy decoding is temperature <= 0.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "model/decoder.h"
#include "model/inference.h"
#include "tokenizer/tokenizer.h"

namespace temper {

enum class FinishReason : uint8_t { Eos, StopString, Length };
const char* finish_reason_name(FinishReason r);  // "eos" | "stop_string" | "length"

struct SamplingOptions {
  int n_samples = 1;           // samples per prompt (the group size)
  int max_new_tokens = 256;    // >= 1
  float temperature = 1.0f;    // <= 0: greedy (argmax, lowest id on ties)
  int top_k = 0;               // <= 0: no top-k cut
  float top_p = 1.0f;          // >= 1: no nucleus cut
  std::vector<int32_t> stop_ids;          // EOS / end-of-turn: kept as the last token
  std::vector<std::string> stop_strings;  // matched on the decoded tail; needs a tokenizer
  uint64_t seed = 0;
};

struct GeneratedSample {
  int64_t prompt_index = 0;  // into the prompts of the call
  int sample_index = 0;      // 0 .. n_samples-1
  std::vector<int32_t> tokens;  // response ids; the stop id or the stop string's tokens included
  std::vector<double> logp;     // per token: log softmax(logits / T)[token] from sample_tokens
                                // (T = 1 when greedy); f32 precision except with f64 parameters
  FinishReason finish = FinishReason::Length;
  std::string text;  // decoded response when the Generator has a tokenizer
};

struct GenerationStats {
  int64_t sequences = 0;
  int64_t generated_tokens = 0;
  int64_t prefill_tokens = 0;  // prompt tokens run through the model (re-prefills included)
  int64_t decode_steps = 0;
  double seconds = 0, prefill_seconds = 0;
  double tokens_per_second() const { return seconds > 0 ? double(generated_tokens) / seconds : 0.0; }
  // "gen 64 seqs, 8123 tok (1234.5 tok/s), prefill 2048 tok, 130 steps, 6.6s"
  std::string line() const;
};

class Generator {
 public:
  // max_len 0: the engine grows to the longest prompt + max_new_tokens a call needs
  // (allocated again only when a call needs more). max_len > 0: a fixed cache
  // length; a sequence reaching it finishes with reason length. tok may be null
  // (then no stop strings and no text).
  Generator(Decoder& model, Kernels& k, int max_batch, const Tokenizer* tok = nullptr, int max_len = 0);
  ~Generator();
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;

  // n_samples responses for each prompt, returned prompt-major: [p * n + j].
  // prompt_uids (default: the prompt index) key the samples' random streams, so a
  // prompt keeps its samples when the prompt list around it changes.
  std::vector<GeneratedSample> generate(const std::vector<std::vector<int32_t>>& prompts,
                                        const SamplingOptions& opt, const std::vector<uint64_t>& prompt_uids = {});

  const GenerationStats& last_stats() const { return stats_; }
  // Decode steps as recorded graphs where the backend has them (InferenceEngine::
  // set_use_graphs); on unless TEMPER_DECODE_GRAPHS=0.
  void set_decode_graphs(bool on);
  // Never sample ids >= n (InferenceEngine::set_vocab_limit); the constructor sets
  // the tokenizer's vocab_size() when given a tokenizer. 0: no limit.
  void set_vocab_limit(int n);
  int max_batch() const { return max_batch_; }

 private:
  struct Run;  // the state of one generate() call (generation.cpp)
  void ensure_engine(int need_len);
  // First tokens of every sample of the prompts rows[i].second, drawn from logits row
  // rows[i].first (prompts drawn before are skipped), max_batch rows per sampling call.
  void draw_first_tokens(Run& run, const std::vector<std::pair<int64_t, int64_t>>& rows, const Tensor& logits);
  void sample_step(Run& run, const std::vector<int64_t>& who, const Tensor& logits);
  bool apply_token(Run& run, int64_t s, int32_t token, double logp);

  Decoder& model_;
  Kernels& k_;
  const Tokenizer* tok_;
  int max_batch_, fixed_len_;
  bool decode_graphs_ = true;
  int vocab_limit_ = 0;
  std::unique_ptr<InferenceEngine> engine_;
  // Sampling buffers for max_batch rows (device), and their host staging.
  Tensor rep_, u_, tokens_, logp_;
  Tensor host_u_, host_tokens_, host_logp_;
  GenerationStats stats_;
};

}  // namespace temper
