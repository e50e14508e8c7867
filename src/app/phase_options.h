// Deck -> the typed options of each phase, built once by the phase dispatch
// (every `section.key` a phase uses is read here or in the option builders it
// calls: train/engine engine_options_from_deck, rl/rl_options).
#pragma once
#include "deck/deck.h"
#include "model/config.h"
#include "rl/eval_phase.h"
#include "rl/rl_phase.h"
#include "train/sft_phase.h"
#include "train/toy_phase.h"

namespace temper {

// cfg: the model the run trains (for the memory plan); replicate: the mesh's resolved dp_replicate.
SftOptions sft_options_from_deck(const Deck& d, const ModelConfig& cfg, int replicate);
RlOptions rl_options_from_deck(const Deck& d);
EvalOptions eval_options_from_deck(const Deck& d);
ToyOptions toy_options_from_deck(const Deck& d);

}  // namespace temper
