// Deck -> phase options (see phase_options.h).
#include "app/phase_options.h"

#include "app/plan_command.h"
#include "core/error.h"
#include "rl/rl_options.h"
#include "train/model_setup.h"

namespace temper {

SftOptions sft_options_from_deck(const Deck& d, const ModelConfig& cfg, int replicate) {
  SftOptions o;
  o.engine = engine_options_from_deck(d, "sft");
  o.stages = sft_stages(d);
  o.data.micro_batch = int(d.get_int("data.micro_batch"));
  o.data.seed = uint64_t(d.get_int("data.shuffle_seed"));
  o.data.overlong = overlong_from_name(d.get_string("data.overlong"));
  o.data.chat_template = chat_template_from_deck(d);
  o.lr = d.get_float("sft.lr");
  o.min_lr = d.get_float("sft.min_lr");
  o.warmup_steps = d.get_int("sft.warmup_steps");
  o.grad_accum = d.get_int("sft.grad_accum");
  o.checkpoint_every = d.get_int("checkpoint.every");
  o.eval_every = d.get_int("sft.eval_every");
  o.log_every = int(d.get_int("log.every"));
  o.seed = uint64_t(d.get_int("run.seed"));
  o.eval.file = d.get_string("data.eval_file");
  o.eval.samples = d.get_int("sft.eval_samples");
  o.eval.max_new_tokens = int(d.get_int("sft.eval_max_new_tokens"));
  o.eval.output_dir = d.get_string("run.output_dir");
  o.eval.chat_template = o.data.chat_template;
  o.plan = plan_from_deck(d, cfg, replicate).text;
  return o;
}

RlOptions rl_options_from_deck(const Deck& d) {
  RlOptions o;
  o.engine = engine_options_from_deck(d, "rl");
  o.update.algorithm = policy_algorithm_from_name(d.get_string("rl.algorithm"));
  o.update.loss = policy_loss_options_from_deck(d);
  o.update.reuse_steps = int(d.get_int("rl.reuse_steps"));
  o.update.micro_batch_tokens = d.get_int("rl.micro_batch_tokens");
  o.update.recompute_behaviour = d.get_string("rl.behaviour_logp") == "recompute";
  o.rollout = rollout_options_from_deck(d);
  o.scoring = scoring_options_from_deck(d);
  o.advantages.normalize_std = d.get_bool("rl.std_normalize");
  o.prompts_file = d.get_string("rl.prompts_file");
  TEMPER_CHECK(!o.prompts_file.empty(), d.source(), ": phase = rl needs rl.prompts_file (RL prompt JSONL)");
  o.prompts_per_step = int(d.get_int("rl.prompts_per_step"));
  o.steps = d.get_int("rl.steps");
  o.lr = d.get_float("rl.lr");
  o.warmup_steps = d.get_int("rl.warmup_steps");
  o.filter = d.get_bool("rl.filter");
  o.filter_rollouts = int(d.get_int("rl.filter_rollouts"));
  o.filter_prompts = d.get_int("rl.filter_prompts");
  o.filter_band = PassBand{d.get_float("rl.filter_low"), d.get_float("rl.filter_high")};
  for (const auto& [task, b] : rl_filter_bands(d)) o.filter_bands[task] = PassBand{b.first, b.second};
  o.drop_zero_variance = d.get_bool("rl.drop_zero_variance");
  o.refill_rounds = int(d.get_int("rl.refill_rounds"));
  for (const auto& [task, w] : rl_task_mix(d)) o.task_mix[task] = w;
  o.task_mix_where = cat(d.source(), ": rl.task_mix (", d.where("rl.task_mix"), ")");
  o.eval_file = d.get_string("rl.eval_file");
  o.eval_every = d.get_int("rl.eval_every");
  o.eval_samples = d.get_int("rl.eval_samples");
  o.eval_temperature = float(d.get_float("rl.eval_temperature"));
  o.dump_every = d.get_int("rl.dump_every");
  o.checkpoint_every = d.get_int("checkpoint.every");
  o.log_every = int(d.get_int("log.every"));
  o.seed = uint64_t(d.get_int("run.seed"));
  return o;
}

EvalOptions eval_options_from_deck(const Deck& d) {
  EvalOptions o;
  o.file = d.get_string("eval.file");
  TEMPER_CHECK(!o.file.empty(), d.source(), ": phase = eval needs eval.file (a benchmark JSONL)");
  o.prompts = d.get_int("eval.prompts");
  o.rollout.group_size = int(d.get_int("eval.samples"));
  o.rollout.temperature = float(d.get_float("eval.temperature"));
  o.rollout.top_p = float(d.get_float("eval.top_p"));
  o.rollout.top_k = int(d.get_int("eval.top_k"));
  o.rollout.max_new_tokens = int(d.get_int("eval.max_new_tokens"));
  o.rollout.max_batch = int(d.get_int("eval.max_batch"));
  o.rollout.stop_strings = d.get_list("rl.stop_strings");
  o.rollout.seed = uint64_t(d.get_int("run.seed"));
  o.scoring = scoring_options_from_deck(d);
  o.seed = uint64_t(d.get_int("run.seed"));
  return o;
}

ToyOptions toy_options_from_deck(const Deck& d) {
  ToyOptions o;
  o.steps = d.get_int("toy.steps");
  o.dim = d.get_int("toy.dim");
  o.lr = d.get_float("toy.lr");
  o.sleep_ms = int(d.get_int("toy.sleep_ms"));
  o.checkpoint_every = d.get_int("checkpoint.every");
  o.log_every = int(d.get_int("log.every"));
  o.seed = uint64_t(d.get_int("run.seed"));
  return o;
}

}  // namespace temper
