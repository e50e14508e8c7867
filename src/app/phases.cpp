// Phase dispatch (see phases.h).
#include "app/phases.h"

#include "app/phase_options.h"
#include "app/plan_command.h"
#include "app/run_context.h"
#include "core/error.h"
#include "core/log.h"
#include "train/model_init.h"
#include "train/model_setup.h"

namespace temper {

namespace {

int dispatch(const std::string& phase, RunContext& ctx) {
  const Deck& d = ctx.deck();
  if (phase == "toy") return run_toy_phase(ctx, toy_options_from_deck(d));
  if (phase == "sft") {
    auto tok = tokenizer_from_deck(d);
    const InitialWeights init = resolve_initial_weights(d, tok->vocab_size());
    return run_sft_phase(ctx, sft_options_from_deck(d, init.config, ctx.mesh().shape().dp_replicate), *tok, init);
  }
  if (phase == "rl") {
    RlOptions o = rl_options_from_deck(d);
    auto tok = tokenizer_from_deck(d);
    const InitialWeights init = resolve_initial_weights(d, tok->vocab_size());
    o.plan = plan_from_deck(d, init.config, ctx.mesh().shape().dp_replicate).text;
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

}  // namespace

int run_phase(const std::string& phase, RunContext& ctx) {
  const int rc = dispatch(phase, ctx);
  const std::string staged = ctx.mesh().staged_summary();
  if (!staged.empty() && ctx.mesh().world_rank() == 0)
    log_info("collectives staged through host memory on rank 0: ", staged);
  return rc;
}

}  // namespace temper
