// Batch: one packed micro-batch of token ids on the backend's device, plus the
// host-side helpers that build it and the SFT cross-entropy coefficients.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "kernels/kernels.h"

namespace temper {

class AttentionCore;  // model/layers.h

// All tensors are i32 on the backend's device. Documents are packed back to back:
// document s spans tokens [cu_seqlens[s], cu_seqlens[s+1]); positions usually
// restart at 0 per document; targets[n] < 0 means "no loss on token n".
struct Batch {
  Tensor tokens;      // i32[N]
  Tensor targets;     // i32[N]
  Tensor positions;   // i32[N]
  Tensor cu_seqlens;  // i32[S+1], cu[0] = 0, cu[S] = N
  int max_seqlen = 0;
  int64_t n_tokens = 0;
  // Set by sequence parallelism (parallel/ulysses): tokens/targets/positions are then this
  // rank's contiguous slice of a sequence split over the SP group (n_tokens local), while
  // cu_seqlens and max_seqlen describe the whole sequence; blocks run their attention
  // core through it. Null: the batch is whole and attention is local.
  AttentionCore* attention = nullptr;
};

// Checks the host vectors (equal lengths, cu_seqlens from 0 to N and non-decreasing,
// positions >= 0, tokens in [0, vocab_size) and targets < vocab_size when
// vocab_size > 0) and copies them to the backend. Throws naming the bad entry.
Batch make_batch(Kernels& k, const std::vector<int32_t>& tokens, const std::vector<int32_t>& targets,
                 const std::vector<int32_t>& positions, const std::vector<int32_t>& cu_seqlens,
                 int vocab_size = 0);

// A batch of whole documents, each trained as next-token prediction: positions
// 0..len-1, targets the next token of the same document, -1 on each last token.
Batch make_lm_batch(Kernels& k, const std::vector<std::vector<int32_t>>& documents, int vocab_size = 0);

// The targets make_lm_batch gives the same documents: the next token of the
// same document, -1 on each document's last token.
std::vector<int32_t> lm_targets(const std::vector<std::vector<int32_t>>& documents);

// Number of tokens with target >= 0.
int64_t count_loss_tokens(const std::vector<int32_t>& targets);

// SFT cross-entropy coefficients for Decoder::backward: dlogp[n] = -1/denominator
// where targets[n] >= 0, else 0 (denominator: loss tokens over the whole global
// batch, so micro-batches and ranks sum to the mean). Tensor [N] of `dtype`.
Tensor sft_dlogp(Kernels& k, const std::vector<int32_t>& targets, double denominator, DType dtype);

// Host helpers: dtype conversion happens on the host, the backend only moves bytes.
Tensor to_device(Kernels& k, const std::vector<int32_t>& v);
Tensor to_device(Kernels& k, const std::vector<double>& v, DType dtype);  // dtype f32/f64/bf16
std::vector<double> to_host_f64(Kernels& k, const Tensor& t);             // f32/f64/bf16/i32 -> double

}  // namespace temper
