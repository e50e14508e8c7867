// Generator: continuous batching over the InferenceEngine's slots.
// Each round: (1) fill free slots with pending samples, in (prompt, sample)
// order. A sample whose prompt's cache is already in a slot takes a free slot
// left by its own group as is, or gets a copy of a live slot of its group;
// otherwise its prompt is prefilled (all prefills of a round in one call). The
// first prefill of a prompt draws the first token of every sample of its group
// from that one logits row, each with its own stream. (2) one decode step for
// every live sequence, one token each; finished sequences free their slots.
#include "rl/generation.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <unordered_map>

#include "core/error.h"
#include "core/rng.h"

namespace temper {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Eos: return "eos";
    case FinishReason::StopString: return "stop_string";
    case FinishReason::Length: return "length";
  }
  return "?";
}

std::string GenerationStats::line() const {
  char buf[200];
  std::snprintf(buf, sizeof buf, "gen %lld seqs, %lld tok (%.1f tok/s), prefill %lld tok, %lld steps, %.1fs",
                static_cast<long long>(sequences), static_cast<long long>(generated_tokens), tokens_per_second(),
                static_cast<long long>(prefill_tokens), static_cast<long long>(decode_steps), seconds);
  return buf;
}

struct Generator::Run {
  const std::vector<std::vector<int32_t>>* prompts = nullptr;
  const SamplingOptions* opt = nullptr;
  int n = 1;
  std::vector<GeneratedSample> out;
  std::vector<Rng> rng;
  std::vector<uint8_t> done;
  std::vector<uint8_t> first_drawn;  // per prompt
  size_t stop_window = 0;            // tokens decoded to look for stop strings
  int engine_len = 0;
};

Generator::Generator(Decoder& model, Kernels& k, int max_batch, const Tokenizer* tok, int max_len)
    : model_(model), k_(k), tok_(tok), max_batch_(max_batch), fixed_len_(max_len) {
  TEMPER_CHECK(max_batch > 0, "Generator: max_batch must be positive, got ", max_batch);
  TEMPER_CHECK(max_len >= 0, "Generator: max_len must be >= 0 (0: automatic), got ", max_len);
  const int64_t B = max_batch, V = model.config().vocab_size;
  rep_ = k.alloc({B, V}, model.compute_dtype());
  u_ = k.alloc({B}, DType::F32);
  tokens_ = k.alloc({B}, DType::I32);
  logp_ = k.alloc({B}, model.stat_dtype());
  host_u_ = Tensor::empty({B}, DType::F32);
  host_tokens_ = Tensor::empty({B}, DType::I32);
  host_logp_ = Tensor::empty({B}, model.stat_dtype());
  if (tok) set_vocab_limit(tok->vocab_size());
  const char* graphs_env = std::getenv("TEMPER_DECODE_GRAPHS");  // the InferenceEngine's default
  decode_graphs_ = !(graphs_env && std::string(graphs_env) == "0");
}

Generator::~Generator() = default;

void Generator::set_decode_graphs(bool on) {
  decode_graphs_ = on;
  if (engine_) engine_->set_use_graphs(on);
}

void Generator::ensure_engine(int need_len) {
  if (fixed_len_ > 0) {
    if (!engine_) engine_ = std::make_unique<InferenceEngine>(model_, k_, max_batch_, fixed_len_);
  } else if (!engine_ || engine_->max_len() < need_len) {
    engine_.reset();  // free the old caches first
    const int len = (need_len + 63) / 64 * 64;
    engine_ = std::make_unique<InferenceEngine>(model_, k_, max_batch_, len);
  }
  engine_->set_use_graphs(decode_graphs_);
  engine_->set_vocab_limit(vocab_limit_);
}

void Generator::set_vocab_limit(int n) {
  TEMPER_CHECK(n >= 0, "Generator: vocab limit ", n, " is negative");
  vocab_limit_ = n < model_.config().vocab_size ? n : 0;
  if (engine_) engine_->set_vocab_limit(vocab_limit_);
}

bool Generator::apply_token(Run& run, int64_t s, int32_t token, double logp) {
  GeneratedSample& g = run.out[size_t(s)];
  g.tokens.push_back(token);
  g.logp.push_back(logp);
  ++stats_.generated_tokens;
  const SamplingOptions& o = *run.opt;
  bool done = true;
  if (std::find(o.stop_ids.begin(), o.stop_ids.end(), token) != o.stop_ids.end()) {
    g.finish = FinishReason::Eos;
  } else if (run.stop_window > 0 && [&] {
               const size_t w = std::min(run.stop_window, g.tokens.size());
               const std::string tail = tok_->decode(std::vector<int32_t>(g.tokens.end() - long(w), g.tokens.end()));
               for (const auto& ss : o.stop_strings)
                 if (tail.find(ss) != std::string::npos) return true;
               return false;
             }()) {
    g.finish = FinishReason::StopString;
  } else if (int64_t(g.tokens.size()) >= o.max_new_tokens) {
    g.finish = FinishReason::Length;
  } else if (int64_t((*run.prompts)[size_t(g.prompt_index)].size() + g.tokens.size()) > run.engine_len) {
    g.finish = FinishReason::Length;  // the next token's position would not fit the cache
  } else {
    done = false;
  }
  run.done[size_t(s)] = done;
  return done;
}

// Draws one token for each sample of `who` from the rows of `logits` (one row each).
void Generator::sample_step(Run& run, const std::vector<int64_t>& who, const Tensor& logits) {
  const int64_t m = int64_t(who.size());
  float* hu = host_u_.data<float>();
  for (int64_t i = 0; i < m; ++i) {
    float u = float(run.rng[size_t(who[size_t(i)])].uniform());
    if (u >= 1.0f) u = std::nextafter(1.0f, 0.0f);  // rounding to f32 may reach 1
    hu[i] = u;
  }
  Tensor u = u_.rows(0, m), tok = tokens_.rows(0, m), lp = logp_.rows(0, m);
  k_.copy(u, host_u_.rows(0, m));
  const SamplingOptions& o = *run.opt;
  k_.sample_tokens(tok, lp, logits, u, o.temperature, o.top_k, o.top_p);
  Tensor ht = host_tokens_.rows(0, m), hl = host_logp_.rows(0, m);
  k_.copy(ht, tok);
  k_.copy(hl, lp);
  for (int64_t i = 0; i < m; ++i) {
    const double l = hl.dtype() == DType::F64 ? hl.data<double>()[i] : double(hl.data<float>()[i]);
    apply_token(run, who[size_t(i)], ht.data<int32_t>()[i], l);
  }
}

void Generator::draw_first_tokens(Run& run, const std::vector<std::pair<int64_t, int64_t>>& rows,
                                  const Tensor& logits) {
  // (logits row, sample) pairs in (prompt, sample) order; the draws are independent
  // (each sample has its own stream), so batching them changes no result.
  std::vector<std::pair<int64_t, int64_t>> todo;
  for (const auto& [row, prompt] : rows) {
    if (run.first_drawn[size_t(prompt)]) continue;
    run.first_drawn[size_t(prompt)] = 1;
    for (int j = 0; j < run.n; ++j) todo.push_back({row, prompt * run.n + j});
  }
  for (size_t i0 = 0; i0 < todo.size(); i0 += size_t(max_batch_)) {
    const size_t m = std::min(todo.size() - i0, size_t(max_batch_));
    std::vector<int64_t> who(m);
    bool in_place = true;  // the logits rows are already 0, 1, ..., m-1 in order
    for (size_t i = 0; i < m; ++i) {
      who[i] = todo[i0 + i].second;
      in_place = in_place && todo[i0 + i].first == int64_t(i);
    }
    if (in_place) {
      sample_step(run, who, logits.rows(0, int64_t(m)));
      continue;
    }
    for (size_t i = 0; i < m;) {  // one copy per run of consecutive source rows
      size_t j = i + 1;
      while (j < m && todo[i0 + j].first == todo[i0 + j - 1].first + 1) ++j;
      Tensor dst = rep_.rows(int64_t(i), int64_t(j));
      k_.copy(dst, logits.rows(todo[i0 + i].first, todo[i0 + i].first + int64_t(j - i)));
      i = j;
    }
    sample_step(run, who, rep_.rows(0, int64_t(m)));
  }
}

std::vector<GeneratedSample> Generator::generate(const std::vector<std::vector<int32_t>>& prompts,
                                                 const SamplingOptions& opt, const std::vector<uint64_t>& prompt_uids) {
  const auto t0 = std::chrono::steady_clock::now();
  stats_ = GenerationStats();
  TEMPER_CHECK(opt.n_samples >= 1, "Generator: n_samples (the group size) must be >= 1, got ", opt.n_samples);
  TEMPER_CHECK(opt.max_new_tokens >= 1, "Generator: max_new_tokens must be >= 1, got ", opt.max_new_tokens);
  TEMPER_CHECK(prompt_uids.empty() || prompt_uids.size() == prompts.size(), "Generator: ", prompt_uids.size(),
               " prompt uids for ", prompts.size(), " prompts");
  TEMPER_CHECK(opt.stop_strings.empty() || tok_, "Generator: stop strings need a tokenizer");
  const int64_t P = int64_t(prompts.size()), n = opt.n_samples, total = P * n;
  if (P == 0) return {};
  size_t longest = 0, stop_len = 0;
  for (size_t p = 0; p < prompts.size(); ++p) {
    TEMPER_CHECK(!prompts[p].empty(), "Generator: prompt ", p, " is empty (it needs at least one token)");
    longest = std::max(longest, prompts[p].size());
  }
  for (const auto& ss : opt.stop_strings) {
    TEMPER_CHECK(!ss.empty(), "Generator: empty stop string");
    stop_len = std::max(stop_len, ss.size());
  }
  ensure_engine(int(longest) + opt.max_new_tokens);
  InferenceEngine& eng = *engine_;
  TEMPER_CHECK(int(longest) <= eng.max_len(), "Generator: a prompt of ", longest,
               " tokens does not fit the generation length limit of ", eng.max_len(), " positions");

  Run run;
  run.prompts = &prompts;
  run.opt = &opt;
  run.n = int(n);
  run.engine_len = eng.max_len();
  run.stop_window = opt.stop_strings.empty() ? 0 : stop_len + 2;
  run.out.resize(size_t(total));
  run.done.assign(size_t(total), 0);
  run.first_drawn.assign(size_t(P), 0);
  run.rng.reserve(size_t(total));
  for (int64_t s = 0; s < total; ++s) {
    const int64_t p = s / n;
    const uint64_t uid = prompt_uids.empty() ? uint64_t(p) : prompt_uids[size_t(p)];
    run.out[size_t(s)].prompt_index = p;
    run.out[size_t(s)].sample_index = int(s % n);
    run.rng.emplace_back(mix64(opt.seed, mix64(uid, uint64_t(s % n))));
  }

  const int B = max_batch_;
  std::vector<int64_t> slot_sample(size_t(B), -1), slot_prompt(size_t(B), -1);
  int64_t next = 0;
  while (true) {
    // (1) refill; repeated while samples finish on their first token.
    for (bool again = true; again;) {
      again = false;
      std::unordered_map<int64_t, int> source;  // prompt -> slot whose cache holds it now
      for (int f = 0; f < B; ++f)
        if (slot_sample[size_t(f)] >= 0) source[slot_prompt[size_t(f)]] = f;
      std::vector<int> pf_slots;
      std::vector<std::vector<int32_t>> pf_prompts;
      std::vector<int64_t> pf_ids;
      std::vector<std::pair<int, int>> copies;  // (dst, src), after the prefills
      for (; next < total; ++next) {
        if (run.done[size_t(next)]) continue;  // finished on its first token
        const int64_t p = next / n;
        int f = -1;
        for (int c = 0; c < B && f < 0; ++c)
          if (slot_sample[size_t(c)] < 0 && slot_prompt[size_t(c)] == p) f = c;
        if (f >= 0) {
          source.emplace(p, f);  // its cache is intact: nothing to do
        } else {
          for (int c = 0; c < B && f < 0; ++c)
            if (slot_sample[size_t(c)] < 0) f = c;
          if (f < 0) break;  // no free slot
          auto it = source.find(p);
          if (it != source.end()) {
            copies.push_back({f, it->second});
          } else {
            pf_slots.push_back(f);
            pf_prompts.push_back(prompts[size_t(p)]);
            pf_ids.push_back(p);
            source[p] = f;
          }
          slot_prompt[size_t(f)] = p;
        }
        slot_sample[size_t(f)] = next;
      }
      if (!pf_slots.empty()) {
        const auto tp = std::chrono::steady_clock::now();
        Tensor logits = eng.prefill(pf_slots, pf_prompts);
        for (const auto& pr : pf_prompts) stats_.prefill_tokens += int64_t(pr.size());
        std::vector<std::pair<int64_t, int64_t>> rows;  // (logits row, prompt)
        for (size_t i = 0; i < pf_ids.size(); ++i) rows.push_back({int64_t(i), pf_ids[i]});
        draw_first_tokens(run, rows, logits);
        k_.synchronize();
        stats_.prefill_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - tp).count();
      }
      for (const auto& [dst, src] : copies)
        eng.copy_slot(dst, src, int(prompts[size_t(slot_prompt[size_t(dst)])].size()));
      for (int f = 0; f < B; ++f) {
        if (slot_sample[size_t(f)] >= 0 && run.done[size_t(slot_sample[size_t(f)])]) {
          slot_sample[size_t(f)] = -1;
          again = next < total;
        }
      }
    }
    // (2) one decode step over the live sequences.
    std::vector<int> slots;
    std::vector<int32_t> toks, pos;
    std::vector<int64_t> who;
    for (int f = 0; f < B; ++f) {
      const int64_t s = slot_sample[size_t(f)];
      if (s < 0) continue;
      const GeneratedSample& g = run.out[size_t(s)];
      slots.push_back(f);
      toks.push_back(g.tokens.back());
      pos.push_back(int32_t(prompts[size_t(g.prompt_index)].size() + g.tokens.size() - 1));
      who.push_back(s);
    }
    if (slots.empty()) break;  // nothing live and nothing pending
    Tensor logits = eng.decode(slots, toks, pos);
    ++stats_.decode_steps;
    sample_step(run, who, logits);
    for (size_t i = 0; i < slots.size(); ++i)
      if (run.done[size_t(who[i])]) slot_sample[size_t(slots[i])] = -1;
  }

  if (tok_)
    for (auto& g : run.out) g.text = tok_->decode(g.tokens);
  stats_.sequences = total;
  stats_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return std::move(run.out);
}

}  // namespace temper
