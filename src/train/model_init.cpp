// model.init resolution: random, temper checkpoint, or Hugging Face directory.
#include "train/model_init.h"

#include <filesystem>

#include "core/error.h"
#include "core/log.h"
#include "io/checkpoint.h"
#include "model/hf_checkpoint.h"
#include "train/model_setup.h"
#include "train/model_state.h"

namespace temper {

namespace fs = std::filesystem;

InitialWeights resolve_initial_weights(const Deck& d, int tokenizer_vocab) {
  InitialWeights w;
  const std::string init = d.get_string("model.init");
  const std::string where = cat("model.init = '", init, "' (", d.where("model.init"), ")");
  if (init == "random") {
    w.kind = "random";
    w.config = model_config_from_deck(d, tokenizer_vocab);
    w.description = "random initialisation (run.seed)";
    return w;
  }
  if (init.rfind("hf:", 0) == 0) {
    w.kind = "hf";
    w.source = init.substr(3);
    TEMPER_CHECK(fs::is_directory(w.source), where, ": '", w.source, "' is not a directory");
    w.config = model_config_from_deck(d, tokenizer_vocab);  // DIR/config.json's shape (logged there)
    w.description = cat("Hugging Face ", read_hf_model_info(w.source).architecture, " from ", w.source);
    return w;
  }
  // A temper checkpoint: a file, or a directory of ckpt_*.h5.
  std::error_code ec;
  CheckpointState& st = w.checkpoint;
  if (fs::is_directory(init, ec)) {
    auto latest = CheckpointStore(init, 0).open_latest_valid(&w.source);
    TEMPER_CHECK(latest.has_value(), where, ": the directory holds no valid checkpoint (ckpt_*.h5)");
    st = std::move(*latest);
  } else {
    TEMPER_CHECK(fs::exists(init, ec), where,
                 ": no such file or directory (expected 'random', 'hf:DIR', a checkpoint file or directory)");
    w.source = init;
    st = CheckpointStore::open(init);
    st.reader->verify_share(0, 1);
  }
  w.kind = "checkpoint";
  // The shape is the checkpoint's: its stored deck's [model] section decides.
  Deck stored = Deck::parse(st.deck_text, w.source + " (stored deck)");
  w.config = model_config_from_deck(stored, tokenizer_vocab);
  bool any = false;
  for (const auto& name : st.tensor_names()) any = any || name.rfind("model/", 0) == 0;
  TEMPER_CHECK(any, w.source, ": checkpoint holds no model/* tensors");
  w.description = cat("checkpoint ", w.source, " (", st.phase, " step ", st.step, ")");
  return w;
}

void apply_initial_weights(const InitialWeights& w, Decoder& model, Kernels& k, uint64_t seed) {
  if (w.kind == "random") {
    model.init_random(seed);
  } else if (w.kind == "checkpoint") {
    load_model_state(model, k, w.checkpoint);  // one tensor at a time
  } else if (w.kind == "hf") {
    load_hf_weights(model, k, w.source);
  } else {
    fail("model.init: unsupported kind '", w.kind, "'");
  }
  model.refresh_compute();
}

}  // namespace temper
