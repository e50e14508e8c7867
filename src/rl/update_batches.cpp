// RL micro-batch packing (see update_batches.h).
#include "rl/update_batches.h"

#include <algorithm>

#include "core/error.h"

namespace temper {

std::vector<RlMicroBatch> pack_rl_sequences(const std::vector<RlSequence>& seqs, int64_t max_tokens) {
  TEMPER_CHECK(max_tokens > 0, "pack_rl_sequences: max_tokens must be positive");
  std::vector<RlMicroBatch> out;
  RlMicroBatch cur;
  auto flush = [&]() {
    if (cur.samples.empty()) return;
    out.push_back(std::move(cur));
    cur = RlMicroBatch{};
  };
  for (size_t s = 0; s < seqs.size(); ++s) {
    const auto& p = *seqs[s].prompt;
    const auto& r = *seqs[s].response;
    if (r.empty()) continue;
    TEMPER_CHECK(!p.empty(), "pack_rl_sequences: sample ", s, " has an empty prompt");
    const int64_t len = int64_t(p.size() + r.size());
    if (!cur.samples.empty() && cur.n_tokens() + len > max_tokens) flush();
    if (cur.cu_seqlens.empty()) cur.cu_seqlens.push_back(0);
    const int64_t start = cur.n_tokens();
    for (int32_t t : p) cur.tokens.push_back(t);
    for (int32_t t : r) cur.tokens.push_back(t);
    for (int64_t i = 0; i < len; ++i) {
      cur.positions.push_back(int32_t(i));
      // the token at i predicts token i+1 when that one is a response token
      const bool predicts_response = i + 1 >= int64_t(p.size()) && i + 1 < len;
      cur.targets.push_back(predicts_response ? cur.tokens[size_t(start + i + 1)] : -1);
    }
    cur.cu_seqlens.push_back(int32_t(start + len));
    cur.max_seqlen = std::max<int>(cur.max_seqlen, int(len));
    cur.samples.push_back(int64_t(s));
    cur.resp_first.push_back(start + int64_t(p.size()) - 1);
    cur.resp_len.push_back(int64_t(r.size()));
  }
  flush();
  return out;
}

void scatter_response_logp(const RlMicroBatch& mb, const std::vector<double>& flat,
                           std::vector<std::vector<double>>& out) {
  TEMPER_CHECK(int64_t(flat.size()) == mb.n_tokens(), "scatter_response_logp: ", flat.size(), " values for ",
               mb.n_tokens(), " tokens");
  for (size_t d = 0; d < mb.samples.size(); ++d) {
    auto& dst = out.at(size_t(mb.samples[d]));
    dst.assign(flat.begin() + mb.resp_first[d], flat.begin() + mb.resp_first[d] + mb.resp_len[d]);
  }
}

std::vector<double> gather_response_coeffs(const RlMicroBatch& mb,
                                           const std::vector<std::vector<double>>& per_sample) {
  std::vector<double> flat(size_t(mb.n_tokens()), 0.0);
  for (size_t d = 0; d < mb.samples.size(); ++d) {
    const auto& src = per_sample.at(size_t(mb.samples[d]));
    TEMPER_CHECK(int64_t(src.size()) == mb.resp_len[d], "gather_response_coeffs: sample ", mb.samples[d], " has ",
                 src.size(), " coefficients for ", mb.resp_len[d], " response tokens");
    std::copy(src.begin(), src.end(), flat.begin() + mb.resp_first[d]);
  }
  return flat;
}

}  // namespace temper
