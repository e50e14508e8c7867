#include "train/greedy_eval.h"


#include <algorithm>
#include <chrono>
#include <filesystem>

#include "core/file_write.h"
#include "data/synthetic_tasks.h"
#include "model/inference.h"
#include "tokenizer/chat_template.h"

namespace temper {

namespace {

// Greedy continuations with a KV cache, in batches of the engine's slots: one
// prefill per batch, then one decode step per token for the sequences still
// running. The argmax is the backend's sample_tokens at temperature 0 (lowest id
// on ties). (The RL Generator in rl/ adds sampling and continuous batching; the
// train module cannot depend on rl/, so this loop stays here.)
std::vector<std::vector<int32_t>> greedy_with_engine(InferenceEngine& e, Kernels& k,
                                                     const std::vector<std::vector<int32_t>>& prompts,
                                                     int32_t end_id, int max_new) {
  std::vector<std::vector<int32_t>> out(prompts.size());
  if (max_new <= 0) return out;
  const int S = e.max_slots();
  Tensor tok = k.alloc({S}, DType::I32), logp = k.alloc({S}, DType::F32), u = k.alloc({S}, DType::F32);
  Tensor host_tok = Tensor::empty({S}, DType::I32);
  k.zero(u);
  for (size_t b0 = 0; b0 < prompts.size(); b0 += size_t(S)) {
    const size_t m = std::min(prompts.size() - b0, size_t(S));
    std::vector<int> slots;
    std::vector<std::vector<int32_t>> batch;
    std::vector<size_t> who;
    for (size_t i = 0; i < m; ++i) {
      slots.push_back(int(i));
      batch.push_back(prompts[b0 + i]);
      who.push_back(b0 + i);
    }
    Tensor logits = e.prefill(slots, batch);
    while (!slots.empty()) {
      const int64_t r = int64_t(slots.size());
      Tensor t = tok.rows(0, r), lp = logp.rows(0, r), ht = host_tok.rows(0, r);
      k.sample_tokens(t, lp, logits, u.rows(0, r), 0.0f, 0, 1.0f);
      k.copy(ht, t);
      std::vector<int> live_slots;
      std::vector<int32_t> toks, pos;
      std::vector<size_t> live_who;
      for (int64_t i = 0; i < r; ++i) {
        auto& o = out[who[size_t(i)]];
        const int32_t best = ht.data<int32_t>()[i];
        o.push_back(best);
        const int64_t next_pos = int64_t(prompts[who[size_t(i)]].size() + o.size()) - 1;
        if (best == end_id || int(o.size()) >= max_new || next_pos >= e.max_len()) continue;
        live_slots.push_back(slots[size_t(i)]);
        toks.push_back(best);
        pos.push_back(int32_t(next_pos));
        live_who.push_back(who[size_t(i)]);
      }
      slots = std::move(live_slots);
      who = std::move(live_who);
      if (!slots.empty()) logits = e.decode(slots, toks, pos);
    }
  }
  return out;
}

size_t longest(const std::vector<std::vector<int32_t>>& v) {
  size_t n = 1;
  for (const auto& x : v) n = std::max(n, x.size());
  return n;
}

}  // namespace

std::vector<std::vector<int32_t>> greedy_decode(Decoder& model, Kernels& k,
                                                const std::vector<std::vector<int32_t>>& prompts,
                                                int32_t end_id, int max_new, int vocab_size) {
  TEMPER_CHECK(vocab_size == model.config().vocab_size, "greedy_decode: vocab_size ", vocab_size,
               " differs from the model's ", model.config().vocab_size);
  if (prompts.empty() || max_new <= 0) return std::vector<std::vector<int32_t>>(prompts.size());
  InferenceEngine e(model, k, int(prompts.size()), int(longest(prompts)) + max_new);
  return greedy_with_engine(e, k, prompts, end_id, max_new);
}

GreedyEval::GreedyEval(const GreedyEvalOptions& o, const Tokenizer& tok, Comm& comm)
    : tok_(tok), comm_(comm), tmpl_(o.chat_template) {
  max_new_ = o.max_new_tokens;
  out_dir_ = o.output_dir;
  const int64_t n = o.samples;
  if (o.file.empty() || n == 0) return;
  auto all = read_jsonl(o.file);
  for (size_t i = 0; i < all.size() && int64_t(i) < n; ++i) {
    check_synthetic_record(all[i].extra, all[i].source);  // every field the check reads, typed, now
    if (int(i) % comm.size() == comm.rank()) items_.push_back(all[i]);
  }
}

EvalResult GreedyEval::run(Decoder& model, Kernels& k, const std::string& tag) {
  auto t0 = std::chrono::steady_clock::now();
  EvalResult r;
  std::string path = (std::filesystem::path(out_dir_) / ("eval_" + tag + ".rank" + std::to_string(comm_.rank()) + ".jsonl")).string();
  std::vector<nlohmann::json> records;
  const int32_t end_id = end_of_turn_id(tok_, tmpl_);
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& item : items_) {
    std::vector<Message> msgs;
    for (const auto& m : item.messages)
      if (m.role != "assistant") msgs.push_back(m);
    prompts.push_back(render_prompt(tok_, msgs, tmpl_));
  }
  std::vector<std::vector<int32_t>> outs(prompts.size());
  if (!prompts.empty() && max_new_ > 0) {  // one KV cache for the whole run
    InferenceEngine e(model, k, std::min(batch_, int(prompts.size())), int(longest(prompts)) + max_new_);
    outs = greedy_with_engine(e, k, prompts, end_id, max_new_);
  }
  for (size_t i = 0; i < items_.size(); ++i) {
    std::vector<int32_t> ids = outs[i];
    if (!ids.empty() && ids.back() == end_id) ids.pop_back();
    std::string text = tok_.decode(ids);
    const auto& ex = items_[i].extra;
    bool ok = check_answer(ex.at("task").get<std::string>(), ex.at("answer").get<std::string>(), text,
                           ex.contains("constraints") ? ex.at("constraints") : nlohmann::json());
    r.correct += ok;
    r.total += 1;
    nlohmann::json rec;
    rec["source"] = items_[i].source;
    rec["task"] = ex.at("task");
    rec["answer"] = ex.at("answer");
    rec["output"] = text;
    rec["correct"] = ok;
    records.push_back(rec);
  }
  std::string text;
  for (const auto& rec : records) text += rec.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  write_file_atomic(path, text);
  r.correct = comm_.allreduce_sum_i64(r.correct);
  r.total = comm_.allreduce_sum_i64(r.total);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace temper
