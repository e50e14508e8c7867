// Engine: the one training engine under SFT and RL. It owns the policy Decoder,
// the parallel wiring of the mesh (parallel/ulysses over sp, parallel/dp_shard
// over dp_shard, gradient all-reduce over dp_replicate), the optimizer (AdamW,
// Muon or Parallel Muon, optionally QK-clip), gradient clipping and the
// checkpoint save/load of all that state. Phases see only whole token batches
// and host vectors; no phase branches on the mesh.
//
// Data parallelism runs over D = dp_shard x dp_replicate ranks (dp_rank() in
// [0, D)); the sp ranks of one data-parallel rank form a Ulysses group and must
// pass the same batches: each keeps N / sp of the tokens (the batch is padded to
// a multiple of sp here), and log-probs come back for the whole batch on every
// rank of the group. One optimizer step:
//   zero_grad()
//   forward(b) + backward(coef)  or  forward_backward(b, coef)   per micro-batch
//   step(lr)   gradients summed over sp (Ulysses), reduce-scattered over dp_shard
//              (during backward), all-reduced over dp_replicate; global norm,
//              clip to grad_clip, optimizer update, bf16/compute copies refreshed
// Coefficients are dL/dlogp per token of the whole batch with the loss already
// normalised over the global batch (the engine only sums gradients).
//
// Generation: begin_generation() makes the whole policy resident in the compute
// dtype (bf16 on cuda) on every rank (under dp_shard gathered from the shards
// layer by layer), so the inference engine can read decoder().params() compute
// copies; end_generation() frees the gathered copies again.
//
// Checkpoints hold whole logical tensors ("model/<name>", "optim/<kind>/<name>")
// and "optim/steps", whatever the mesh: any mesh resumes from any other.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "kernels/kernels.h"
#include "model/decoder.h"
#include "parallel/mesh.h"
#include "train/model_init.h"
#include "train/optimizer.h"

namespace temper {

class DpShard;
class Ulysses;

struct EngineOptions {
  OptimizerOptions optimizer;
  double grad_clip = 1.0;  // global gradient-norm clip; <= 0: off
  Checkpointing checkpointing = Checkpointing::None;
  RecomputeParts recompute;
  DType param_dtype = DType::F32;  // f64: CPU tests
  bool trainable = true;           // false: a frozen policy (the KL reference): no optimizer
  std::string section = "sft";     // the deck section of these options (named in messages)
};

// One micro-batch of packed documents on the host (as data/packing or
// rl/update_batches lay them out): targets < 0 carry no loss.
struct TokenBatch {
  std::vector<int32_t> tokens, targets, positions, cu_seqlens;
  int64_t size() const { return int64_t(tokens.size()); }
};

struct EngineStepStats {
  double grad_norm = 0;                   // before clipping
  std::map<std::string, double> metrics;  // the optimizer's (e.g. QK-clip's max_logit)
};

class Engine {
 public:
  // Builds the decoder, applies the initial weights (identical on every rank),
  // then shards it over the mesh and builds the optimizer. Collective over the mesh.
  Engine(const ModelConfig& cfg, Kernels& k, Mesh& mesh, const EngineOptions& opt, const InitialWeights& init,
         uint64_t seed);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const ModelConfig& config() const;
  Decoder& decoder() { return *model_; }
  Kernels& kernels() { return k_; }
  Mesh& mesh() { return mesh_; }
  const EngineOptions& options() const { return opt_; }
  int dp_size() const;  // dp_shard x dp_replicate
  int dp_rank() const;  // this rank's data-parallel index
  // Sums v over the data-parallel ranks (one value per sp group counted once).
  double dp_sum(double v);
  int64_t dp_sum(int64_t v);

  // How many micro-batches a step's forward/backward passes must number on this
  // rank when it has n of its own: ranks that gather parameters together
  // (dp_shard) or split one sequence (sp) run their passes in lock step, so the
  // phase pads its list to this count with micro-batches that carry no loss.
  int64_t lockstep_count(int64_t n);

  void zero_grad();
  // log p(target) of every token of b (0 where target < 0), whole batch. Keeps b
  // and the activations for backward(). Collective over sp (and dp_shard).
  std::vector<double> forward(const TokenBatch& b);
  // Backward of sum_n coef[n] logp[n] for the batch of the last forward().
  void backward(const std::vector<double>& coef);
  // forward + backward in one pass (coefficients known beforehand: SFT).
  std::vector<double> forward_backward(const TokenBatch& b, const std::vector<double>& coef);
  // Reduces the gradients over the mesh, clips, steps the optimizer at lr.
  EngineStepStats step(double lr);
  int64_t optimizer_steps() const;

  // Model and optimizer state into s.pieces for a collective checkpoint write
  // (every rank calls; no communication): host copies of this rank's share only,
  // in staging buffers reused from save to save. Under dp_shard the pieces of its
  // shards (split among the sp x dp_replicate ranks holding the same shard), else
  // 1/world of every (replicated) tensor. The time this takes is the training
  // stall of an asynchronous checkpoint.
  void save(CheckpointState& s);
  // From whole tensors written on any mesh, reading (s.reader) only the element
  // ranges this rank holds. Optimizer steps from "optim/steps" (older
  // checkpoints: "rl/optimizer_steps", else s.step).
  void load(const CheckpointState& s);

  void begin_generation();
  void end_generation();

 private:
  Batch upload(const TokenBatch& b);  // padded for sp, this rank's share
  std::vector<double> whole_logp(const Tensor& local);
  Tensor local_coef(const std::vector<double>& coef) const;

  Kernels& k_;
  Mesh& mesh_;
  EngineOptions opt_;
  std::unique_ptr<Decoder> model_;
  std::unique_ptr<Ulysses> ulysses_;
  std::unique_ptr<DpShard> shard_;
  ShardedParams shards_;
  std::unique_ptr<Optimizer> optimizer_;
  // A host copy of src in the staging buffer of `key` (page-locked on cuda), reused
  // from the last save when nothing else (an asynchronous write) still holds it.
  Tensor stage(const std::string& key, const Tensor& src);
  std::map<std::string, Tensor> stage_;
  Batch whole_, local_;  // the batch of the last forward (whole_ keeps local_'s storage alive)
  int64_t n_real_ = 0;   // its tokens before padding
};

// Deck -> EngineOptions of a phase: `<section>` is "sft" or "rl" (optimizer keys,
// grad_clip); model.activation_checkpointing / model.recompute.
EngineOptions engine_options_from_deck(const Deck& d, const std::string& section);

}  // namespace temper
