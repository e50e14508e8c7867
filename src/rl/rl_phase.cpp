// phase = rl: the RL loop of the Motif-2 recipe (see rl_phase.h), on any mesh.
#include "rl/rl_phase.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>

#include "core/log.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/signals.h"
#include "rl/heldout_eval.h"
#include "rl/rollout_distribution.h"
#include "rl/task_mix.h"
#include "rl/trajectory_dump.h"
#include "train/lr_schedule.h"
#include "train/phase_context.h"

namespace temper {

namespace fs = std::filesystem;

namespace {

// Difficulty-aware filtering: pass rates of the first filter_prompts prompts from
// filter_rollouts rollouts each (dealt over every rank), kept per band; the kept
// list and the histogram are written to <output_dir>/difficulty_filter/.
void calibrate_filter(DifficultyFilter& filter, Generator& gen, const Tokenizer& tok, ChatTemplate tmpl,
                      const std::vector<RlPrompt>& prompts, const RlOptions& o, const RolloutWorkers& workers,
                      const std::string& out_dir, bool root) {
  const size_t n = o.filter_prompts > 0 ? std::min(prompts.size(), size_t(o.filter_prompts)) : prompts.size();
  RolloutOptions opt = o.rollout;
  opt.group_size = o.filter_rollouts;
  opt.seed = mix64(o.rollout.seed, 0xF117E5ULL);
  if (root) log_info("difficulty filter: ", n, " prompts x ", opt.group_size, " rollouts to estimate pass rates");
  std::vector<int64_t> groups(n);
  for (size_t p = 0; p < n; ++p) groups[p] = int64_t(p);
  const RoundOutcome r = workers.run(gen, tok, tmpl, prompts, groups, opt, o.scoring, o.advantages, 0);
  std::vector<PromptRollouts> pr(n);
  for (size_t p = 0; p < n; ++p) {
    pr[p].prompt_index = int64_t(p);
    pr[p].task = prompts[p].task;
    int correct = 0, unparsable = 0;
    for (int s = 0; s < opt.group_size; ++s) {
      const size_t j = p * size_t(opt.group_size) + size_t(s);
      correct += r.verdict[j] == Verdict::Correct;
      unparsable += r.discarded[j];
    }
    for (int s = 0; s < opt.group_size; ++s)
      pr[p].verdicts.push_back(s < correct ? Verdict::Correct
                                           : s < correct + unparsable ? Verdict::Unparsable : Verdict::Wrong);
  }
  const std::vector<PassRateEntry> entries = filter.calibrate(pr);
  const PassRateHistogram h = pass_rate_histogram(entries, 10);
  if (root) {
    const fs::path dir = fs::path(out_dir) / "difficulty_filter";
    fs::create_directories(dir);
    write_kept_jsonl((dir / "kept.jsonl").string(), entries);
    write_histogram((dir / "histogram.txt").string(), h);
    log_info("difficulty filter: kept ", filter.kept_indices().size(), " of ", n, " prompts (", dir.string(),
             ")\n", format_histogram(h));
  }
}

// The task mixer over the trainable prompts: the filter's kept set (or every prompt), per task.
TaskMixer make_mixer(const RlOptions& o, const std::vector<RlPrompt>& prompts, const DifficultyFilter* filter) {
  std::map<std::string, std::vector<int64_t>> pools;
  if (filter) {
    for (int64_t i : filter->kept_indices()) pools[prompts[size_t(i)].task].push_back(i);
  } else {
    for (const auto& p : prompts) pools[p.task].push_back(p.index);
  }
  TEMPER_CHECK(!pools.empty(), "rl: no prompt is left to train on (the difficulty filter kept none: widen "
               "rl.filter_low/rl.filter_high or rl.filter_bands)");
  std::map<std::string, double> weights = o.task_mix;
  if (weights.empty())  // as the prompt file comes: proportional to the pools
    for (const auto& [task, pool] : pools) weights[task] = double(pool.size());
  for (const auto& [task, wgt] : weights)
    TEMPER_CHECK(wgt == 0 || pools.count(task), o.task_mix_where, " names task '", task,
                 "' but no trainable prompt has it");
  return TaskMixer(weights, pools, mix64(o.seed, 0x7A5CULL));
}

// A step's sampling rounds: the groups kept for training (this rank's samples of
// them) and the step's generation statistics over every rank.
struct StepRollouts {
  std::vector<RlSample> kept;
  double samples = 0, correct = 0, unparsable = 0, truncated = 0, reward = 0, length = 0, tokens = 0;
  double groups = 0, groups_dropped = 0, kept_samples = 0, generate_seconds = 0, score_seconds = 0;
};

// Draw prompts -> roll out -> group advantages -> zero-variance groups dropped and
// refilled by further rounds (rl.refill_rounds).
StepRollouts roll_out_step(int64_t step, TaskMixer& mixer, ZeroVarianceRefill& refill, const RolloutWorkers& workers,
                           Generator& gen, const Tokenizer& tok, ChatTemplate tmpl,
                           const std::vector<RlPrompt>& prompts, const RlOptions& o,
                           const std::map<int64_t, double>& pass_rate) {
  StepRollouts out;
  const size_t G = size_t(o.rollout.group_size);
  refill.begin_step();
  int need = o.prompts_per_step;
  for (int round = 0; need > 0; ++round) {
    std::vector<int64_t> groups;
    for (const MixDraw& dr : mixer.draw(step, need)) groups.push_back(dr.prompt);
    RolloutOptions ro = o.rollout;
    ro.seed = mix64(mix64(o.seed, uint64_t(step)), uint64_t(round));
    RoundOutcome r = workers.run(gen, tok, tmpl, prompts, groups, ro, o.scoring, o.advantages, 100000 * round);
    std::vector<uint8_t> keep(groups.size(), 1);
    RefillDecision dec;
    if (o.drop_zero_variance) {
      keep.assign(groups.size(), 0);
      dec = refill.add_round(r.advantages.zero_variance);
      for (int g : dec.keep_groups) keep[size_t(g)] = 1;
      out.groups_dropped += double(r.advantages.zero_variance_groups);
    }
    for (RlSample& s : r.mine) {
      if (!keep[size_t(s.group - 100000 * round)]) continue;
      auto it = pass_rate.find(s.prompt_index);
      if (it != pass_rate.end()) s.pass_rate = it->second;
      out.kept.push_back(std::move(s));
    }
    for (size_t j = 0; j < r.reward.size(); ++j) {
      out.samples += 1;
      out.correct += r.verdict[j] == Verdict::Correct;
      out.unparsable += r.discarded[j];
      out.truncated += r.truncated[j];
      out.reward += r.reward[j];
      out.length += double(r.length[j]);
    }
    for (uint8_t k : keep) out.kept_samples += k ? double(G) : 0.0;
    out.tokens += double(r.generated_tokens());
    out.groups += double(groups.size());
    out.generate_seconds = std::max(out.generate_seconds, r.generate_seconds);
    out.score_seconds = std::max(out.score_seconds, r.score_seconds);
    need = o.drop_zero_variance && dec.generate_more ? dec.still_needed : 0;
  }
  return out;
}

}  // namespace

int run_rl_phase(PhaseContext& ctx, const RlOptions& o, const Tokenizer& tok, ChatTemplate tmpl,
                 const InitialWeights& w) {
  Kernels& k = ctx.kernels();
  Mesh& mesh = ctx.mesh();
  const bool root = ctx.is_root();

  // The prompts first: a missing or bad file is reported before the model is allocated.
  const std::vector<RlPrompt> prompts = load_rl_prompts(o.prompts_file);
  // Held-out evaluation (greedy unless rl.eval_temperature > 0), prompts dealt over every rank.
  std::vector<RlPrompt> eval_prompts;
  if (!o.eval_file.empty()) {
    eval_prompts = load_rl_prompts(o.eval_file);
    if (o.eval_samples > 0 && int64_t(eval_prompts.size()) > o.eval_samples)
      eval_prompts.resize(size_t(o.eval_samples));
  }
  // Code tasks need the sandbox: refused (or the unisolated warning) now, before any generation.
  check_scoring_can_run(prompts, o.scoring);
  check_scoring_can_run(eval_prompts, o.scoring);
  // The policy on the whole mesh, and the frozen initial policy for the KL term.
  Engine policy(w.config, k, mesh, o.engine, w, o.seed);
  std::unique_ptr<Engine> ref;
  if (o.update.loss.kl_coef > 0) {
    EngineOptions frozen = o.engine;
    frozen.trainable = false;
    ref = std::make_unique<Engine>(w.config, k, mesh, frozen, w, o.seed);
  }
  if (root)
    log_info("rl: ", policy_algorithm_name(o.update.algorithm), " from ", w.description, " on sp ", mesh.shape().sp,
             " x dp_shard ", mesh.shape().dp_shard, " x dp_replicate ", mesh.shape().dp_replicate, "\n",
             o.plan.empty() ? w.config.summary(o.rollout.max_new_tokens) : o.plan);
  LrSchedule sched{o.lr, o.lr, o.warmup_steps, std::max<int64_t>(o.steps, 1)};
  const RolloutWorkers workers(mesh.world(), mesh.mesh_index());
  // Generation phases: the whole policy gathered and a generator (KV cache) built for
  // the phase, both freed before training (the memory plan counts them apart).
  auto generating = [&](const std::function<void(Generator&)>& fn) {
    policy.begin_generation();
    {
      Generator gen(policy.decoder(), k, o.rollout.max_batch, o.rollout.stop_strings.empty() ? nullptr : &tok);
      gen.set_vocab_limit(tok.vocab_size());  // never sample ids the tokenizer lacks
      fn(gen);
    }
    policy.end_generation();
  };

  // Resume, or calibrate the difficulty filter; then the task mixer over the trainable prompts.
  DifficultyFilter filter(o.filter_band, o.filter_bands);
  ZeroVarianceRefill refill(o.prompts_per_step, 1 + o.refill_rounds);
  int64_t step = 0;
  std::optional<CheckpointState> st = ctx.resume_state();
  if (st) {
    TEMPER_CHECK(st->phase == "rl", "checkpoint phase is '", st->phase,
                 "', this run is 'rl' (start RL from an SFT checkpoint with model.init = PATH instead)");
    step = st->step;
    policy.load(*st);
    if (o.filter) filter.restore_state(RlSavedState::unpack(st->u64.at("rl/filter"), "rl/filter"));
    refill.restore_state(RlSavedState::unpack(st->u64.at("rl/refill"), "rl/refill"));
  } else if (o.filter) {
    generating([&](Generator& gen) {
      calibrate_filter(filter, gen, tok, tmpl, prompts, o, workers, ctx.output_dir(), root);
    });
  }
  std::map<int64_t, double> pass_rate;  // of the kept prompts, for the dumps
  for (size_t i = 0; o.filter && i < filter.kept_indices().size(); ++i)
    pass_rate[filter.kept_indices()[i]] = filter.kept_rates()[i];
  TaskMixer mixer = make_mixer(o, prompts, o.filter ? &filter : nullptr);
  if (st) mixer.restore_state(RlSavedState::unpack(st->u64.at("rl/mix"), "rl/mix"));

  auto save = [&]() {
    ctx.wait_for_checkpoint_write();  // at most one write in flight; its staging buffers reused
    CheckpointState s;
    s.step = step;
    s.phase = "rl";
    policy.save(s);
    if (o.filter) s.u64["rl/filter"] = filter.save_state().pack();
    s.u64["rl/mix"] = mixer.save_state().pack();
    s.u64["rl/refill"] = refill.save_state().pack();
    s.strings["model_config"] = policy.config().summary(o.rollout.max_new_tokens);
    return ctx.write_checkpoint(s);
  };

  Progress progress(o.steps, step, ctx.metrics_path(), o.log_every);
  auto evaluate = [&](const std::string& tag) {
    if (eval_prompts.empty()) return;
    RolloutOptions eo = o.rollout;
    eo.group_size = 1;
    eo.temperature = o.eval_temperature;
    eo.seed = mix64(o.seed, 0xE7A1ULL);
    fs::create_directories(ctx.output_dir());
    const std::string path =
        (fs::path(ctx.output_dir()) / cat("rl_eval_", tag, ".rank", mesh.world_rank(), ".jsonl")).string();
    HeldoutResult r;
    generating([&](Generator& gen) {
      r = evaluate_prompts(gen, tok, tmpl, eval_prompts, eo, o.scoring, mesh.world(), path);
    });
    if (root)
      log_info("eval ", tag, ": accuracy ", r.total.correct, "/", r.total.samples, " = ",
               100.0 * r.total.accuracy(), " % (", r.summary(), "; ", format_duration(r.seconds), ")");
    std::map<std::string, double> ev = {{"step", double(step)}, {"accuracy", r.total.accuracy()}};
    for (const auto& [task, t] : r.tasks) ev["accuracy_" + task] = t.accuracy();
    progress.event("eval_" + tag, ev);
  };
  if (step == 0) evaluate("before");

  // Trajectories: one writer per data-parallel rank (the first of its sp group).
  const TrajectoryDumper dumper((fs::path(ctx.output_dir()) / "trajectories" / cat("rank", mesh.world_rank())).string());
  const bool dumps = o.dump_every > 0 && mesh.sp_rank() == 0;

  while (step < o.steps) {
    if (ctx.stop_requested()) {
      log_info("stopping at step ", step, ": ", ctx.stop_reason(), "; writing a checkpoint");
      save();
      return kExitRequeue;
    }
    const auto t_step = std::chrono::steady_clock::now();
    // filter -> generate -> score -> advantages (every rank generates from the gathered policy)
    StepRollouts sr;
    generating([&](Generator& gen) {
      sr = roll_out_step(step, mixer, refill, workers, gen, tok, tmpl, prompts, o, pass_rate);
    });
    // S updates: the sp ranks of a data-parallel rank train on their samples together
    std::vector<RlSample> batch = gather_samples(mesh.sp(), sr.kept);
    const double lr = sched.at(step + 1);
    const UpdateStats up = policy_update(policy, ref.get(), batch, o.update, lr);
    ++step;

    const double n = std::max(1.0, sr.samples);
    std::map<std::string, double> m = {
        {"loss", up.loss},
        {"reward", sr.reward / n},
        {"acc", sr.correct / n},
        {"resp_len", sr.length / n},
        {"unparsable", sr.unparsable},
        {"truncated", sr.truncated},
        {"groups", sr.groups},
        {"groups_dropped", sr.groups_dropped},
        {"kept_samples", sr.kept_samples},
        {"trained_samples", double(up.samples)},
        {"trained_tokens", double(up.tokens)},
        {"clip_frac_low", up.clip_frac_low},
        {"clip_frac_high", up.clip_frac_high},
        {"clip_frac", up.clip_frac_low + up.clip_frac_high},
        {"ratio_mean", up.ratio_mean},
        {"approx_kl", up.approx_kl},
        {"sampler_logp_gap", up.sampler_logp_gap},
        {"gnorm", up.grad_norm},
        {"lr", lr},
        {"gen_tokens", sr.tokens},
        {"gen_tok_per_s", sr.generate_seconds > 0 ? sr.tokens / sr.generate_seconds : 0.0},
        {"gen_seconds", sr.generate_seconds},
        {"score_seconds", sr.score_seconds},
        {"update_seconds", up.seconds},
        {"step_seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t_step).count()}};
    if (o.update.loss.kl_coef > 0) m["ref_kl"] = up.ref_kl;
    for (const auto& [key, v] : up.optimizer) m[key] = v;
    progress.step(step, int64_t(sr.tokens), m);

    // dump / checkpoint
    if (dumps && step % o.dump_every == 0)
      dumper.write(trajectory_batch(batch, step, policy_algorithm_name(o.update.algorithm), m, o.filter));
    if (o.eval_every > 0 && step % o.eval_every == 0 && step < o.steps) evaluate(cat("step", step));
    if ((o.checkpoint_every > 0 && step % o.checkpoint_every == 0) || step == o.steps) save();
  }
  evaluate("final");
  if (root) log_info("rl done: ", step, " steps; groups dropped for zero variance ", refill.total_dropped());
  if (root && k.device_memory_reserved() >= 0)
    log_info("device memory: measured peak ", double(k.device_memory_reserved()) / double(int64_t(1) << 30),
             " GiB on rank 0");
  return 0;
}

}  // namespace temper
