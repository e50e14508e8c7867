#include "train/greedy_eval.h"

#include <chrono>
#include <filesystem>
#include <fstream>

#include "data/synthetic_tasks.h"
#include "model/batch.h"
#include "tokenizer/chat_template.h"

namespace temper {

std::vector<std::vector<int32_t>> greedy_decode(Decoder& model, Kernels& k,
                                                const std::vector<std::vector<int32_t>>& prompts,
                                                int32_t end_id, int max_new, int vocab_size) {
  const size_t B = prompts.size();
  std::vector<std::vector<int32_t>> out(B);
  std::vector<bool> done(B, false);
  for (int t = 0; t < max_new; ++t) {
    std::vector<std::vector<int32_t>> docs;
    std::vector<size_t> who;
    for (size_t i = 0; i < B; ++i) {
      if (done[i]) continue;
      std::vector<int32_t> d = prompts[i];
      d.insert(d.end(), out[i].begin(), out[i].end());
      docs.push_back(std::move(d));
      who.push_back(i);
    }
    if (docs.empty()) break;
    Batch b = make_lm_batch(k, docs, vocab_size);
    std::vector<int64_t> last;
    int64_t pos = 0;
    for (const auto& d : docs) {
      pos += int64_t(d.size());
      last.push_back(pos - 1);
    }
    Tensor logits = k.alloc({int64_t(last.size()), int64_t(vocab_size)}, DType::F32);
    model.logits_at(b, last, logits);
    std::vector<double> h = to_host_f64(k, logits);
    for (size_t j = 0; j < who.size(); ++j) {
      const double* row = h.data() + j * size_t(vocab_size);
      int32_t best = 0;
      for (int v = 1; v < vocab_size; ++v)
        if (row[v] > row[best]) best = v;
      out[who[j]].push_back(best);
      if (best == end_id) done[who[j]] = true;
    }
  }
  return out;
}

GreedyEval::GreedyEval(const Deck& d, const Tokenizer& tok, Comm& comm) : tok_(tok), comm_(comm) {
  std::string file = d.get_string("data.eval_file");
  max_new_ = int(d.get_int("sft.eval_max_new_tokens"));
  out_dir_ = d.get_string("run.output_dir");
  int64_t n = d.get_int("sft.eval_samples");
  if (file.empty() || n == 0) return;
  auto all = read_jsonl(file);
  for (size_t i = 0; i < all.size() && int64_t(i) < n; ++i) {
    TEMPER_CHECK(all[i].extra.contains("answer") && all[i].extra.contains("task"), all[i].source,
                 ": evaluation records need \"task\" and \"answer\" fields");
    if (int(i) % comm.size() == comm.rank()) items_.push_back(all[i]);
  }
}

EvalResult GreedyEval::run(Decoder& model, Kernels& k, const std::string& tag) {
  auto t0 = std::chrono::steady_clock::now();
  EvalResult r;
  std::string path = (std::filesystem::path(out_dir_) / ("eval_" + tag + ".rank" + std::to_string(comm_.rank()) + ".jsonl")).string();
  std::vector<nlohmann::json> records;
  const int32_t end_id = end_of_turn_id(tok_);
  for (size_t start = 0; start < items_.size(); start += size_t(batch_)) {
    size_t end = std::min(items_.size(), start + size_t(batch_));
    std::vector<std::vector<int32_t>> prompts;
    for (size_t i = start; i < end; ++i) {
      std::vector<Message> msgs;
      for (const auto& m : items_[i].messages)
        if (m.role != "assistant") msgs.push_back(m);
      prompts.push_back(render_prompt(tok_, msgs));
    }
    auto outs = greedy_decode(model, k, prompts, end_id, max_new_, model.config().vocab_size);
    for (size_t i = start; i < end; ++i) {
      auto ids = outs[i - start];
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
  }
  std::ofstream f(path);
  for (const auto& rec : records) f << rec.dump() << "\n";
  r.correct = comm_.allreduce_sum_i64(r.correct);
  r.total = comm_.allreduce_sum_i64(r.total);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace temper
