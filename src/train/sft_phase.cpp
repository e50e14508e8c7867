#include "train/sft_phase.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "core/log.h"
#include "core/progress.h"
#include "core/signals.h"
#include "model/batch.h"
#include "train/lr_schedule.h"
#include "train/phase_context.h"

namespace temper {

namespace fs = std::filesystem;

namespace {

struct StagePos {
  size_t stage = 0;
  int64_t first_step = 0;  // global step at which the stage starts
};

StagePos stage_of(const std::vector<SftStage>& stages, int64_t step) {
  int64_t begin = 0;
  for (size_t i = 0; i < stages.size(); ++i) {
    if (step < begin + stages[i].steps) return {i, begin};
    begin += stages[i].steps;
  }
  return {stages.size() - 1, begin - stages.back().steps};
}

}  // namespace

namespace {
std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f s", s);
  return buf;
}
}  // namespace

int run_sft_phase(PhaseContext& ctx, const SftOptions& o, const Tokenizer& tok, const InitialWeights& init) {
  Kernels& k = ctx.kernels();
  Mesh& mesh = ctx.mesh();
  const ModelConfig& cfg = init.config;
  const std::vector<SftStage>& stages = o.stages;
  int64_t total_steps = 0;
  for (const auto& s : stages) total_steps += s.steps;

  const auto t_init = std::chrono::steady_clock::now();
  Engine engine(cfg, k, mesh, o.engine, init, o.seed);
  if (ctx.is_root())
    log_info("initial weights: ", init.description, " (engine set up in ",
             seconds_text(std::chrono::duration<double>(std::chrono::steady_clock::now() - t_init).count()), ")");
  if (ctx.is_root() && !o.plan.empty()) log_info(o.plan);  // model summary + per-rank memory plan
  LrSchedule sched{o.lr, o.min_lr, o.warmup_steps, total_steps};
  SftDataOptions dopt = o.data;
  std::unique_ptr<SftDataset> data;
  size_t data_stage = size_t(-1);
  auto open_stage = [&](size_t i) {
    dopt.seq_len = int(stages[i].seq_len);
    data = std::make_unique<SftDataset>(stages[i].files, tok, dopt);
    data_stage = i;
    if (ctx.is_root())
      log_info("stage ", i + 1, "/", stages.size(), ": ", data->num_documents(), " conversations, seq_len ",
               stages[i].seq_len, ", ", stages[i].steps, " steps",
               data->skipped_no_assistant() ? cat(" (", data->skipped_no_assistant(), " without assistant turn skipped)")
                                            : std::string());
  };

  int64_t step = 0;
  if (auto st = ctx.resume_state()) {
    TEMPER_CHECK(st->phase == "sft", "checkpoint phase is '", st->phase, "', this run is 'sft'");
    step = st->step;
    engine.load(*st);
    auto pos = nlohmann::json::parse(st->strings.at("data_position"));
    open_stage(pos.at("stage").get<size_t>());
    data->restore(pos.at("loader").dump());
  }
  auto save = [&]() {
    const auto t0 = std::chrono::steady_clock::now();
    const double previous = ctx.wait_for_checkpoint_write();  // at most one write in flight
    CheckpointState s;
    s.step = step;
    s.phase = "sft";
    engine.save(s);
    nlohmann::json pos;
    pos["stage"] = data_stage;
    pos["loader"] = nlohmann::json::parse(data->state());
    s.strings["data_position"] = pos.dump();
    s.strings["model_config"] = cfg.summary(stages[data_stage].seq_len);
    const std::string path = ctx.write_checkpoint(s);
    if (ctx.is_root())
      log_info("checkpoint step ", step, ": training waited ",
               seconds_text(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()),
               " (of which ", seconds_text(previous), " for the previous write)");
    return path;
  };

  GreedyEval evaluator(o.eval, tok, mesh.world());
  auto evaluate = [&](const char* tag) {
    if (!evaluator.enabled()) return;
    engine.begin_generation();  // generation reads whole parameters
    auto r = evaluator.run(engine.decoder(), k, cat(tag, "_step", step));
    engine.end_generation();
    if (ctx.is_root())
      log_info("eval ", tag, " at step ", step, ": exact match ", r.correct, "/", r.total, " = ",
               100.0 * r.accuracy(), " % (", format_duration(r.seconds), ")");
  };
  if (step == 0) evaluate("before");

  Progress progress(total_steps, step, ctx.metrics_path(), o.log_every);
  // Data parallel over dp_shard x dp_replicate: R ranks, this one is r.
  const int R = engine.dp_size(), r = engine.dp_rank();
  std::vector<PackedBatch> mine;
  while (step < total_steps) {
    if (ctx.stop_requested()) {
      log_info("stopping at step ", step, ": ", ctx.stop_reason(), "; writing a checkpoint");
      save();
      return kExitRequeue;
    }
    StagePos sp = stage_of(stages, step);
    if (sp.stage != data_stage) open_stage(sp.stage);

    // The global batch is grad_accum × R micro-batches from one stream; rank r takes every R-th.
    mine.clear();
    for (int64_t i = 0; i < o.grad_accum * R; ++i) {
      PackedBatch b = data->next();
      if (i % R == r) mine.push_back(std::move(b));
    }
    int64_t local_tokens = 0, local_loss_tokens = 0;
    for (const auto& b : mine) {
      local_tokens += int64_t(b.tokens.size());
      local_loss_tokens += b.loss_tokens;
    }
    // Loss tokens of the global batch: each SP group counts its micro-batches once.
    const int64_t loss_tokens = engine.dp_sum(local_loss_tokens);
    const int64_t tokens = engine.dp_sum(local_tokens);
    const double den = double(std::max<int64_t>(loss_tokens, 1));

    engine.zero_grad();
    double local_loss = 0;
    for (const auto& pb : mine) {
      std::vector<double> coef(pb.targets.size());
      for (size_t i = 0; i < coef.size(); ++i) coef[i] = pb.targets[i] >= 0 ? -1.0 / den : 0.0;
      for (double v : engine.forward_backward({pb.tokens, pb.targets, pb.positions, pb.cu_seqlens}, coef))
        local_loss -= v;
    }
    const double loss = engine.dp_sum(local_loss) / den;
    const double lr = sched.at(step + 1);
    const EngineStepStats es = engine.step(lr);
    const double norm = es.grad_norm;
    ++step;
    std::map<std::string, double> metrics{{"loss", loss}, {"lr", lr}, {"gnorm", norm}, {"loss_tokens", double(loss_tokens)}};
    for (const auto& [key, v] : es.metrics) metrics[key] = v;
    progress.step(step, tokens, metrics);
    TEMPER_CHECK(std::isfinite(loss), "loss is not finite at step ", step, " (lower sft.lr?)");
    if (o.eval_every > 0 && step % o.eval_every == 0 && step < total_steps) evaluate("step");
    if ((o.checkpoint_every > 0 && step % o.checkpoint_every == 0) || step == total_steps) save();
  }
  evaluate("final");
  if (ctx.is_root()) {
    const auto& st = data->stats();
    log_info("sft done: ", step, " steps; documents truncated ", st.truncated, ", split ", st.split);
    if (k.device_memory_reserved() >= 0)
      log_info("device memory: measured peak ", double(k.device_memory_reserved()) / double(int64_t(1) << 30),
               " GiB on rank 0 (the plan at the start lists the items)");
  }
  return 0;
}

}  // namespace temper
