// phase = rl: the RL loop of the Motif-2 recipe (see rl_phase.h).
#include "rl/rl_phase.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>

#include <nlohmann/json.hpp>

#include "core/log.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/signals.h"
#include "rl/advantages.h"
#include "rl/difficulty_filter.h"
#include "rl/heldout_eval.h"
#include "rl/policy_update.h"
#include "rl/task_mix.h"
#include "rl/trajectory_dump.h"
#include "train/lr_schedule.h"
#include "train/engine.h"
#include "train/phase_context.h"

namespace temper {

namespace fs = std::filesystem;

namespace {

// This rank's share of a global list: positions i with i % R == r.
std::vector<size_t> my_positions(size_t n, const Comm& c) {
  std::vector<size_t> out;
  for (size_t i = 0; i < n; ++i)
    if (int(i % size_t(c.size())) == c.rank()) out.push_back(i);
  return out;
}

// Difficulty-aware filtering: pass rates of the first `limit` prompts from n
// rollouts each, kept per band; the kept list and the histogram are written to
// <output_dir>/difficulty_filter/.
void calibrate_filter(DifficultyFilter& filter, Generator& gen, const Tokenizer& tok, ChatTemplate tmpl,
                      const std::vector<RlPrompt>& prompts, int64_t limit, const RolloutOptions& base,
                      const ScoringOptions& scoring, Comm& comm, const std::string& out_dir, bool root) {
  const size_t n = limit > 0 ? std::min(prompts.size(), size_t(limit)) : prompts.size();
  const auto mine = my_positions(n, comm);
  std::vector<int64_t> which(mine.begin(), mine.end());
  RolloutOptions opt = base;
  opt.seed = mix64(base.seed, 0xF117E5ULL);
  if (root)
    log_info("difficulty filter: ", n, " prompts x ", opt.group_size, " rollouts to estimate pass rates");
  Rollouts r;
  if (!which.empty()) r = generate_rollouts(gen, tok, tmpl, prompts, which, opt, scoring);
  std::vector<double> counts(2 * n, 0.0);  // correct, unparsable per prompt
  for (size_t j = 0; j < r.samples(); ++j) {
    const size_t p = size_t(r.prompt_of_sample(j));
    counts[2 * p] += r.scores[j].result.verdict == Verdict::Correct ? 1 : 0;
    counts[2 * p + 1] += r.scores[j].discarded ? 1 : 0;
  }
  Tensor c = Tensor::wrap(counts.data(), {int64_t(counts.size())}, DType::F64);
  comm.allreduce(c);
  std::vector<PromptRollouts> pr(n);
  for (size_t p = 0; p < n; ++p) {
    pr[p].prompt_index = int64_t(p);
    pr[p].task = prompts[p].task;
    const int correct = int(counts[2 * p]), unparsable = int(counts[2 * p + 1]);
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

struct StepSamples {  // this rank's kept samples of one step, plus what the dump wants
  std::vector<std::vector<int32_t>> prompt_ids, response_ids;
  std::vector<std::vector<double>> sampler_logp;
  std::vector<int64_t> prompt_index;
  std::vector<int32_t> group;
  std::vector<double> reward, advantage;
  std::vector<Verdict> verdict;
  std::vector<uint8_t> discarded;
  std::vector<std::string> task, finish;
};

}  // namespace

int run_rl_phase(PhaseContext& ctx, const RlOptions& o, const Tokenizer& tokr, ChatTemplate tmpl,
                 const InitialWeights& w) {
  Kernels& k = ctx.kernels();
  Mesh& mesh = ctx.mesh();
  Comm& rep = mesh.replicate();
  TEMPER_CHECK(mesh.shape().sp == 1 && mesh.shape().dp_shard == 1,
               "RL with sp > 1 or dp_shard > 1 is not available yet: use dp_replicate only");
  const bool root = ctx.is_root();
  const uint64_t seed = o.seed;
  const Tokenizer* tok = &tokr;
  const EngineOptions& eo = o.engine;
  Engine policy(w.config, k, mesh, eo, w, seed);
  const UpdateOptions& uo = o.update;
  std::unique_ptr<Engine> ref;
  if (uo.loss.kl_coef > 0) {  // the frozen initial policy
    EngineOptions ro = eo;
    ro.trainable = false;
    ref = std::make_unique<Engine>(w.config, k, mesh, ro, w, seed);
  }
  if (root) log_info("rl: ", policy_algorithm_name(uo.algorithm), " from ", w.description, "\n",
                     w.config.summary(o.rollout.max_new_tokens));

  const int64_t total_steps = o.steps;
  LrSchedule sched{o.lr, o.lr, o.warmup_steps, std::max<int64_t>(total_steps, 1)};

  const std::vector<RlPrompt> prompts = load_rl_prompts(o.prompts_file);
  const ScoringOptions& scoring = o.scoring;
  const RolloutOptions& ro = o.rollout;
  const AdvantageOptions& aopt = o.advantages;
  const int P = o.prompts_per_step;

  DifficultyFilter filter(o.filter_band, o.filter_bands);
  const bool use_filter = o.filter;
  const bool drop_zero_var = o.drop_zero_variance;
  ZeroVarianceRefill refill(P, 1 + o.refill_rounds);

  Generator gen(policy.decoder(), k, ro.max_batch, ro.stop_strings.empty() ? nullptr : tok);
  int64_t step = 0;
  std::optional<CheckpointState> st = ctx.resume_state();
  bool calibrated = false;
  if (st) {
    TEMPER_CHECK(st->phase == "rl", "checkpoint phase is '", st->phase,
                 "', this run is 'rl' (start RL from an SFT checkpoint with model.init = PATH instead)");
    step = st->step;
    policy.load(*st);
    if (use_filter) {
      filter.restore_state(RlSavedState::unpack(st->u64.at("rl/filter"), "rl/filter"));
      calibrated = true;
    }
    refill.restore_state(RlSavedState::unpack(st->u64.at("rl/refill"), "rl/refill"));
  } else if (use_filter) {
    RolloutOptions co = ro;
    co.group_size = o.filter_rollouts;
    calibrate_filter(filter, gen, *tok, tmpl, prompts, o.filter_prompts, co, scoring, rep,
                     ctx.output_dir(), root);
    calibrated = true;
  }

  // Per-task pools of trainable prompts and their mixing weights.
  std::map<std::string, std::vector<int64_t>> pools;
  if (calibrated) {
    for (int64_t i : filter.kept_indices()) pools[prompts[size_t(i)].task].push_back(i);
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
  TaskMixer mixer(weights, pools, mix64(seed, 0x7A5CULL));
  if (st) mixer.restore_state(RlSavedState::unpack(st->u64.at("rl/mix"), "rl/mix"));

  auto save = [&]() {
    CheckpointState s;
    s.step = step;
    s.phase = "rl";
    policy.save(s, root);
    if (use_filter) s.u64["rl/filter"] = filter.save_state().pack();
    s.u64["rl/mix"] = mixer.save_state().pack();
    s.u64["rl/refill"] = refill.save_state().pack();
    s.strings["model_config"] = policy.config().summary(o.rollout.max_new_tokens);
    return ctx.write_checkpoint(s);
  };

  // Held-out evaluation (greedy unless rl.eval_temperature > 0).
  std::vector<RlPrompt> eval_prompts;
  if (!o.eval_file.empty()) {
    eval_prompts = load_rl_prompts(o.eval_file);
    const int64_t n = o.eval_samples;
    if (n > 0 && int64_t(eval_prompts.size()) > n) eval_prompts.resize(size_t(n));
  }
  Progress progress(total_steps, step, ctx.metrics_path(), o.log_every);
  auto evaluate = [&](const std::string& tag) {
    if (eval_prompts.empty()) return;
    RolloutOptions eo = ro;
    eo.group_size = 1;
    eo.temperature = o.eval_temperature;
    eo.seed = mix64(seed, 0xE7A1ULL);
    fs::create_directories(ctx.output_dir());
    const std::string path =
        (fs::path(ctx.output_dir()) / cat("rl_eval_", tag, ".rank", mesh.world_rank(), ".jsonl")).string();
    HeldoutResult r = evaluate_prompts(gen, *tok, tmpl, eval_prompts, eo, scoring, mesh.world(), path);
    if (root)
      log_info("eval ", tag, ": accuracy ", r.total.correct, "/", r.total.samples, " = ",
               100.0 * r.total.accuracy(), " % (", r.summary(), "; ", format_duration(r.seconds), ")");
    std::map<std::string, double> ev = {{"step", double(step)}, {"accuracy", r.total.accuracy()}};
    for (const auto& [task, t] : r.tasks) ev["accuracy_" + task] = t.accuracy();
    progress.event("eval_" + tag, ev);
  };
  if (step == 0) evaluate("before");

  const int64_t ckpt_every = o.checkpoint_every, eval_every = o.eval_every, dump_every = o.dump_every;
  const TrajectoryDumper dumper((fs::path(ctx.output_dir()) / "trajectories" / cat("rank", mesh.world_rank())).string());
  const int G = ro.group_size;

  while (step < total_steps) {
    if (ctx.stop_requested(progress.elapsed())) {
      log_info("stopping at step ", step, ": ", ctx.stop_reason(), "; writing a checkpoint");
      save();
      return kExitRequeue;
    }
    const auto t_step = std::chrono::steady_clock::now();
    refill.begin_step();
    StepSamples ss;
    // generation statistics over every sampled response of the step (global sums)
    double gen_samples = 0, gen_correct = 0, gen_unparsable = 0, gen_truncated = 0, gen_reward = 0, gen_len = 0,
           gen_tokens = 0, gen_seconds = 0, score_seconds = 0, groups_seen = 0, groups_dropped = 0;
    int need = P;
    for (int round = 0; need > 0; ++round) {
      const std::vector<MixDraw> draws = mixer.draw(step, need);
      const auto mine = my_positions(draws.size(), rep);
      std::vector<int64_t> which;
      for (size_t i : mine) which.push_back(draws[i].prompt);
      RolloutOptions o = ro;
      o.seed = mix64(mix64(seed, uint64_t(step)), uint64_t(round));
      Rollouts r;
      if (!which.empty()) r = generate_rollouts(gen, *tok, tmpl, prompts, which, o, scoring);
      const GroupAdvantages adv =
          group_advantages(r.rewards(), discarded_from_verdicts(r.verdicts()), G, aopt);
      std::vector<double> flags(draws.size(), 0.0);
      for (size_t g = 0; g < mine.size(); ++g) flags[mine[g]] = adv.zero_variance[g];
      Tensor ft = Tensor::wrap(flags.data(), {int64_t(flags.size())}, DType::F64);
      rep.allreduce(ft);
      std::vector<uint8_t> zv(flags.size());
      for (size_t i = 0; i < flags.size(); ++i) zv[i] = flags[i] > 0.5;
      std::vector<uint8_t> keep(draws.size(), 0);
      RefillDecision dec;
      if (drop_zero_var) {
        dec = refill.add_round(zv);
        for (int g : dec.keep_groups) keep[size_t(g)] = 1;
      } else {
        std::fill(keep.begin(), keep.end(), 1);
      }
      for (size_t g = 0; g < mine.size(); ++g) {
        if (!keep[mine[g]]) continue;
        for (int s = 0; s < G; ++s) {
          const size_t j = g * size_t(G) + size_t(s);
          ss.prompt_ids.push_back(r.prompt_ids[g]);
          ss.response_ids.push_back(r.response_ids[j]);
          ss.sampler_logp.push_back(r.sampler_logp[j]);
          ss.prompt_index.push_back(r.prompts[g]);
          ss.group.push_back(int32_t(mine[g]) + 100000 * round);
          ss.reward.push_back(r.scores[j].result.reward);
          ss.advantage.push_back(adv.advantages[j]);
          ss.verdict.push_back(r.scores[j].result.verdict);
          ss.discarded.push_back(r.scores[j].discarded);
          ss.task.push_back(prompts[size_t(r.prompts[g])].task);
          ss.finish.push_back(r.finish[j]);
        }
      }
      for (size_t j = 0; j < r.samples(); ++j) {
        gen_samples += 1;
        gen_correct += r.scores[j].result.verdict == Verdict::Correct;
        gen_unparsable += r.scores[j].discarded;
        gen_truncated += r.truncated[j];
        gen_reward += r.scores[j].result.reward;
        gen_len += double(r.response_ids[j].size());
      }
      gen_tokens += double(r.generated_tokens);
      gen_seconds = std::max(gen_seconds, r.generate_seconds);
      score_seconds = std::max(score_seconds, r.score_seconds);
      groups_seen += double(mine.size());
      int64_t zero = 0;
      for (uint8_t z : zv) zero += z;
      groups_dropped += drop_zero_var ? double(zero) : 0.0;
      need = drop_zero_var && dec.generate_more ? dec.still_needed : 0;
    }
    std::vector<double> sums = {gen_samples, gen_correct, gen_unparsable, gen_truncated, gen_reward,
                                gen_len,     gen_tokens,  groups_seen};
    Tensor sums_t = Tensor::wrap(sums.data(), {int64_t(sums.size())}, DType::F64);
    rep.allreduce(sums_t);
    gen_seconds = rep.allreduce_max(gen_seconds);
    score_seconds = rep.allreduce_max(score_seconds);

    std::vector<UpdateSample> us(ss.response_ids.size());
    for (size_t i = 0; i < us.size(); ++i) {
      us[i].prompt = &ss.prompt_ids[i];
      us[i].response = &ss.response_ids[i];
      us[i].sampler_logp = ss.sampler_logp[i];
      us[i].advantage = ss.advantage[i];
      us[i].discarded = ss.discarded[i];
    }
    const double step_lr = sched.at(step + 1);
    UpdateStats up = policy_update(policy, ref.get(), us, uo, step_lr);
    ++step;

    const double n = std::max(1.0, sums[0]);
    std::map<std::string, double> m = {
        {"loss", up.loss},
        {"reward", sums[4] / n},
        {"acc", sums[1] / n},
        {"resp_len", sums[5] / n},
        {"unparsable", sums[2]},
        {"truncated", sums[3]},
        {"groups", sums[7]},
        {"groups_dropped", groups_dropped},
        {"kept_samples", double(rep.allreduce_sum_i64(int64_t(us.size())))},
        {"trained_samples", double(up.samples)},
        {"trained_tokens", double(up.tokens)},
        {"clip_frac_low", up.clip_frac_low},
        {"clip_frac_high", up.clip_frac_high},
        {"clip_frac", up.clip_frac_low + up.clip_frac_high},
        {"ratio_mean", up.ratio_mean},
        {"approx_kl", up.approx_kl},
        {"sampler_logp_gap", up.sampler_logp_gap},
        {"gnorm", up.grad_norm},
        {"lr", step_lr},
        {"gen_tokens", sums[6]},
        {"gen_tok_per_s", gen_seconds > 0 ? sums[6] / gen_seconds : 0.0},
        {"gen_seconds", gen_seconds},
        {"score_seconds", score_seconds},
        {"update_seconds", up.seconds},
        {"step_seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t_step).count()}};
    if (uo.loss.kl_coef > 0) m["ref_kl"] = up.ref_kl;
    progress.step(step, int64_t(sums[6]), m);

    if (dump_every > 0 && step % dump_every == 0) {
      TrajectoryBatch tb;
      tb.step = step;
      tb.algorithm = policy_algorithm_name(uo.algorithm);
      tb.prompt_index = ss.prompt_index;
      tb.group = ss.group;
      tb.task = ss.task;
      tb.prompt_tokens = ss.prompt_ids;
      tb.response_tokens = ss.response_ids;
      auto to_f = [](const std::vector<std::vector<double>>& v) {
        std::vector<std::vector<float>> o(v.size());
        for (size_t i = 0; i < v.size(); ++i) o[i].assign(v[i].begin(), v[i].end());
        return o;
      };
      tb.behaviour_logp = to_f(up.behaviour_logp);
      tb.current_logp = to_f(up.current_logp);
      for (size_t i = 0; i < tb.current_logp.size(); ++i)  // untrained samples: no current log-probs
        if (tb.current_logp[i].size() != tb.behaviour_logp[i].size()) tb.current_logp[i] = tb.behaviour_logp[i];
      tb.reward = ss.reward;
      tb.verdict = ss.verdict;
      tb.discarded = ss.discarded;
      tb.advantage = ss.advantage;
      tb.finish_reason = ss.finish;
      if (use_filter) {
        std::map<int64_t, double> rate;
        for (size_t i = 0; i < filter.kept_indices().size(); ++i)
          rate[filter.kept_indices()[i]] = filter.kept_rates()[i];
        for (int64_t p : ss.prompt_index) tb.pass_rate.push_back(rate.count(p) ? rate[p] : -1.0);
      }
      tb.metrics = m;
      dumper.write(tb);
    }
    if (eval_every > 0 && step % eval_every == 0 && step < total_steps) evaluate(cat("step", step));
    if ((ckpt_every > 0 && step % ckpt_every == 0) || step == total_steps) save();
  }
  evaluate("final");
  if (root) log_info("rl done: ", step, " steps; groups dropped for zero variance ", refill.total_dropped());
  if (root && k.device_memory_reserved() >= 0)
    log_info("device memory: measured peak ", double(k.device_memory_reserved()) / double(int64_t(1) << 30),
             " GiB on rank 0");
  return 0;
}

}  // namespace temper
