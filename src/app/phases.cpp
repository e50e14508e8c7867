// Phase dispatch (see phases.h).
#include "app/phases.h"

#include "app/phase_options.h"
#include "app/run_context.h"
#include "core/error.h"
#include "train/model_init.h"
#include "train/model_setup.h"

namespace temper {

int run_phase(const std::string& phase, RunContext& ctx) {
  const Deck& d = ctx.deck();
  if (phase == "toy") return run_toy_phase(ctx, toy_options_from_deck(d));
  if (phase == "sft") {
    auto tok = tokenizer_from_deck(d);
    const InitialWeights init = resolve_initial_weights(d, tok->vocab_size());
    return run_sft_phase(ctx, sft_options_from_deck(d, init.config, ctx.mesh().shape().dp_replicate), *tok, init);
  }
  if (phase == "rl") {
    const RlOptions o = rl_options_from_deck(d);
    auto tok = tokenizer_from_deck(d);
    const InitialWeights init = resolve_initial_weights(d, tok->vocab_size());
    return run_rl_phase(ctx, o, *tok, chat_template_from_deck(d), init);
  }
  if (phase == "eval") {
    const EvalOptions o = eval_options_from_deck(d);
    auto tok = tokenizer_from_deck(d);
    const InitialWeights init = resolve_initial_weights(d, tok->vocab_size());
    return run_eval_phase(ctx, o, *tok, chat_template_from_deck(d), init);
  }
  fail("phase '", phase, "' is not implemented (available: sft, rl, eval, toy)");
}

}  // namespace temper
