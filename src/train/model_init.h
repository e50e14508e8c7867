// Where a phase's first weights come from (model.init): 'random' (seeded normal
// init), a temper checkpoint (a ckpt_*.h5 file, or a checkpoint directory whose
// newest valid file is taken; the model shape then comes from the deck stored in
// that checkpoint), or 'hf:DIR' (Hugging Face config.json + safetensors).
#pragma once
#include <map>
#include <memory>
#include <string>

#include "core/tensor.h"
#include "deck/deck.h"
#include "io/checkpoint.h"
#include "kernels/kernels.h"
#include "model/config.h"
#include "model/decoder.h"

namespace temper {

struct InitialWeights {
  std::string kind;         // random | checkpoint | hf
  std::string source;       // path (checkpoint file or HF directory)
  std::string description;  // one line for the log
  ModelConfig config;
  // checkpoint: the opened file (its "model/<name>" tensors are read one at a time when
  // applied), or whole host tensors in `checkpoint.tensors` (temper upscale)
  CheckpointState checkpoint;
};

// Resolves what model.init names: a checkpoint is opened and checksummed here, one slice
// at a time; its tensors are read when the weights are applied.
// tokenizer_vocab is the tokenizer's size (the model's must not be smaller).
InitialWeights resolve_initial_weights(const Deck& deck, int tokenizer_vocab);

// Fills the model's master weights and refreshes its compute copies.
void apply_initial_weights(const InitialWeights& w, Decoder& model, Kernels& k, uint64_t seed);

}  // namespace temper
