// Packing of RL samples (prompt + response) into micro-batches for the policy
// updates: each sample is one document; only response tokens carry a target, so
// logp[n] of the packed stream holds log pi(response token) at known places.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/kernels.h"
#include "model/batch.h"

namespace temper {

struct RlSequence {
  const std::vector<int32_t>* prompt = nullptr;
  const std::vector<int32_t>* response = nullptr;
};

struct RlMicroBatch {
  std::vector<int32_t> tokens, targets, positions, cu_seqlens;
  int max_seqlen = 0;
  std::vector<int64_t> samples;     // sample index (into the packed list) of each document
  std::vector<int64_t> resp_first;  // flat index predicting each document's first response token
  std::vector<int64_t> resp_len;
  int64_t n_tokens() const { return int64_t(tokens.size()); }
};

// Greedy in order: a micro-batch takes samples while its token count stays within
// max_tokens (a longer sample gets a micro-batch of its own). Samples with an
// empty response are skipped (they carry no token to train on).
std::vector<RlMicroBatch> pack_rl_sequences(const std::vector<RlSequence>& seqs, int64_t max_tokens);

// flat logp (host, length n_tokens) -> per-sample response log-probs (out[sample] resized)
void scatter_response_logp(const RlMicroBatch& mb, const std::vector<double>& flat,
                           std::vector<std::vector<double>>& out);
// per-sample dL/dlogp -> flat coefficients for Decoder::backward (zeros elsewhere)
std::vector<double> gather_response_coeffs(const RlMicroBatch& mb, const std::vector<std::vector<double>>& per_sample);

}  // namespace temper
