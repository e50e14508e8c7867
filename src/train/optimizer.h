// The optimizer interface the training phases hold, and the factory that builds
// one from the deck: AdamW for everything, or Muon for the 2-D hidden matrices
// with AdamW for the rest (train/muon.h), optionally followed by QK-clip
// (train/qk_clip.h) after every step (MuonClip).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "train/adamw.h"

namespace temper {

class Comm;
class Deck;
class Decoder;

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual std::string name() const = 0;  // "adamw", "muon", "muon+qk_clip", ...
  // One update with learning rate lr; grad_scale multiplies every gradient first.
  virtual void step(double lr, double grad_scale) = 0;
  virtual int64_t steps_taken() const = 0;
  // Checkpoint support: host copies of the state under "optim/...".
  virtual void save(std::map<std::string, Tensor>& out) const = 0;
  // The same tensors as save(), without copying: on the backend's device, to be
  // copied by the caller (checkpoint snapshots stage them in reused host buffers).
  virtual void state(std::map<std::string, Tensor>& out) const { save(out); }
  // Throws naming a missing or mismatched tensor (e.g. a checkpoint of another optimizer).
  virtual void load(const std::map<std::string, Tensor>& in, int64_t steps_taken) = 0;
  virtual const std::vector<ParamRef>& params() const = 0;
  // Numbers for the metrics line after a step (e.g. QK-clip's max logit); may be empty.
  virtual std::map<std::string, double> last_metrics() const { return {}; }
  // True when step() leaves every compute copy of the model current (AdamW over
  // the whole model writes them in its update); else the caller refreshes them.
  virtual bool refreshes_compute() const { return false; }
};

// AdamW behind the Optimizer interface.
std::unique_ptr<Optimizer> make_adamw(Kernels& k, std::vector<ParamRef> params, AdamWConfig cfg);

enum class OptimizerKind { AdamW, Muon };

// Muon's hyper-parameters (the update rule: train/muon.h).
struct MuonConfig {
  double momentum = 0.95;
  bool nesterov = true;
  int ns_steps = 5;
  double update_scale = 0.2;  // RMS of the update relative to lr (see muon.h)
  double weight_decay = 0.1;  // decoupled, for the Muon matrices (AdamW uses adamw.weight_decay)
  AdamWConfig adamw;          // the parameters Muon does not update
};

// What a phase's optimizer is, read once from the deck (optimizer_options_from_deck).
struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::AdamW;
  AdamWConfig adamw;     // every parameter (AdamW), or those Muon does not update
  MuonConfig muon;       // kind Muon (its .adamw is `adamw`)
  double qk_clip_tau = 0;  // > 0: QK-clip after every step
};

// From `<section>.optimizer`, `.beta1`, `.beta2`, `.adam_eps`, `.weight_decay`,
// `.muon_*` and `.qk_clip_tau` (section "sft" or "rl": each reads only its own keys).
OptimizerOptions optimizer_options_from_deck(const Deck& d, const std::string& section);

// Muon (train/muon.h) over the given references: whole tensors (shard null), or
// DP-shard's flat 1/S slices over `shard` (Parallel Muon; e.g. DpShard::param_refs()).
// shapes: every parameter's full shape by name.
std::unique_ptr<Optimizer> make_muon(const MuonConfig& cfg, std::vector<ParamRef> refs,
                                     const std::map<std::string, Shape>& shapes, Kernels& k, Comm* shard);

// Parameters held as DP-shard slices (parallel/dp_shard.h): the shard references,
// every parameter's full shape by name, and the dp_shard communicator.
struct ShardedParams {
  std::vector<ParamRef> refs;
  std::map<std::string, Shape> shapes;
  Comm* shard = nullptr;
};

// The optimizer `o` describes. `world` reduces QK-clip's max logits over all ranks.
// With `sharded` the optimizer steps the slices (Muon: Parallel Muon over sharded->shard;
// QK-clip scales the part of W_q/W_k each rank holds); else the model's whole tensors.
std::unique_ptr<Optimizer> make_optimizer(const OptimizerOptions& o, Decoder& model, Kernels& k, Comm& world,
                                          const ShardedParams* sharded = nullptr);

}  // namespace temper
