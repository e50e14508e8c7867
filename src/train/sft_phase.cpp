#include "train/sft_phase.h"

#include <cmath>
#include <filesystem>
#include <memory>

#include "core/log.h"
#include "core/progress.h"
#include "core/signals.h"
#include "data/sft_dataset.h"
#include "model/batch.h"
#include "model/decoder.h"
#include "parallel/dp_shard.h"
#include "parallel/ulysses.h"
#include "train/adamw.h"
#include "train/optimizer.h"
#include "train/grad_clip.h"
#include "train/greedy_eval.h"
#include "train/lr_schedule.h"
#include "train/model_init.h"
#include "train/model_setup.h"
#include "train/model_state.h"
#include "train/plan_command.h"
#include "train/run_context.h"

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

int run_sft_phase(RunContext& ctx) {
  const Deck& d = ctx.deck();
  Kernels& k = ctx.kernels();
  Mesh& mesh = ctx.mesh();
  Comm& rep = mesh.replicate();
  Comm& spc = mesh.sp();
  Comm& shard = mesh.shard();

  auto tok = tokenizer_from_deck(d);
  const InitialWeights init = resolve_initial_weights(d, tok->vocab_size());
  const ModelConfig cfg = init.config;
  const std::vector<SftStage> stages = sft_stages(d);
  int64_t total_steps = 0;
  for (const auto& s : stages) total_steps += s.steps;

  Decoder model(cfg, k, DType::F32);
  // sp > 1: every rank of an SP group reads the same micro-batches and keeps its N/sp tokens.
  std::unique_ptr<Ulysses> ulysses = spc.size() > 1 ? std::make_unique<Ulysses>(spc, cfg) : nullptr;
  apply_initial_weights(init, model, k, uint64_t(d.get_int("run.seed")));
  if (ctx.is_root()) log_info("initial weights: ", init.description);
  model.set_checkpointing(checkpointing_from_deck(d), recompute_parts_from_deck(d));
  if (ctx.is_root()) log_info(plan_from_deck(d, cfg, mesh.shape().dp_replicate).text);  // model summary + per-rank memory plan

  // dp_shard > 1: ZeRO-3 sharding (parallel/dp_shard.h); the optimizer steps the shards.
  ShardedParams shards;
  for (const auto& p : model.params()) shards.shapes[p.name] = p.value.shape();  // before DpShard releases them
  std::unique_ptr<DpShard> sharded;
  if (shard.size() > 1) {
    sharded = std::make_unique<DpShard>(model, k, shard, &mesh.sp());
    shards.refs = sharded->param_refs();
    shards.shard = &shard;
  }
  std::unique_ptr<Optimizer> optp = make_optimizer(d, "sft", model, k, mesh.world(), sharded ? &shards : nullptr);
  Optimizer& opt = *optp;
  LrSchedule sched{d.get_float("sft.lr"), d.get_float("sft.min_lr"), d.get_int("sft.warmup_steps"), total_steps};
  const int64_t grad_accum = d.get_int("sft.grad_accum");
  const double clip = d.get_float("sft.grad_clip");
  const int64_t ckpt_every = d.get_int("checkpoint.every");
  const int64_t eval_every = d.get_int("sft.eval_every");

  SftDataOptions dopt;
  dopt.micro_batch = int(d.get_int("data.micro_batch"));
  dopt.seed = uint64_t(d.get_int("data.shuffle_seed"));
  dopt.overlong = overlong_from_name(d.get_string("data.overlong"));
  dopt.chat_template = chat_template_from_deck(d);
  std::unique_ptr<SftDataset> data;
  size_t data_stage = size_t(-1);
  auto open_stage = [&](size_t i) {
    dopt.seq_len = int(stages[i].seq_len);
    data = std::make_unique<SftDataset>(stages[i].files, *tok, dopt);
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
    if (sharded) {  // the checkpoint holds full tensors (any mesh): take this rank's slices
      std::map<std::string, Tensor> mine;
      opt.save(mine);  // the names of this optimizer's state
      std::vector<std::string> keys;
      for (const auto& kv : mine) keys.push_back(kv.first);
      sharded->load_model(st->tensors);
      opt.load(sharded->slice_moments(st->tensors, keys), step);
    } else {
      load_model_state(model, k, st->tensors);
      model.refresh_compute();
      opt.load(st->tensors, step);
    }
    auto pos = nlohmann::json::parse(st->strings.at("data_position"));
    open_stage(pos.at("stage").get<size_t>());
    data->restore(pos.at("loader").dump());
  }
  auto save = [&]() {
    CheckpointState s;
    s.step = step;
    s.phase = "sft";
    if (sharded) {  // gathered into full logical tensors; only the writing rank keeps them
      std::map<std::string, Tensor> moments;
      opt.save(moments);
      sharded->save_state(moments, s.tensors, ctx.is_root());
    } else {
      save_model_state(model, k, s.tensors);
      opt.save(s.tensors);
    }
    nlohmann::json pos;
    pos["stage"] = data_stage;
    pos["loader"] = nlohmann::json::parse(data->state());
    s.strings["data_position"] = pos.dump();
    s.strings["model_config"] = cfg.summary(stages[data_stage].seq_len);
    return ctx.write_checkpoint(s);
  };

  GreedyEval evaluator(d, *tok, mesh.world());
  auto evaluate = [&](const char* tag) {
    if (!evaluator.enabled()) return;
    if (sharded) sharded->gather_all();  // generation reads whole parameters
    auto r = evaluator.run(model, k, cat(tag, "_step", step));
    if (sharded) sharded->release_all();
    if (ctx.is_root())
      log_info("eval ", tag, " at step ", step, ": exact match ", r.correct, "/", r.total, " = ",
               100.0 * r.accuracy(), " % (", format_duration(r.seconds), ")");
  };
  if (step == 0) evaluate("before");

  Progress progress(total_steps, step, ctx.metrics_path(), int(d.get_int("log.every")));
  // Data parallel over dp_shard x dp_replicate: R ranks, this one is r.
  const int R = rep.size() * shard.size(), r = rep.rank() * shard.size() + shard.rank();
  std::vector<PackedBatch> mine;
  while (step < total_steps) {
    if (ctx.stop_requested(progress.elapsed())) {
      log_info("stopping at step ", step, ": ", ctx.stop_reason(), "; writing a checkpoint");
      save();
      return kExitRequeue;
    }
    StagePos sp = stage_of(stages, step);
    if (sp.stage != data_stage) open_stage(sp.stage);

    // The global batch is grad_accum × R micro-batches from one stream; rank r takes every R-th.
    mine.clear();
    for (int64_t i = 0; i < grad_accum * R; ++i) {
      PackedBatch b = data->next();
      if (i % R == r) mine.push_back(std::move(b));
    }
    int64_t local_tokens = 0, local_loss_tokens = 0;
    for (auto& b : mine) {
      local_tokens += int64_t(b.tokens.size());
      local_loss_tokens += b.loss_tokens;
      if (ulysses) pad_sequence(b.tokens, b.targets, b.positions, b.cu_seqlens, ulysses->size());
    }
    // Loss tokens of the global batch: each SP group counts its micro-batches once.
    const int64_t loss_tokens = rep.allreduce_sum_i64(shard.allreduce_sum_i64(local_loss_tokens));
    const int64_t tokens = rep.allreduce_sum_i64(shard.allreduce_sum_i64(local_tokens));

    if (sharded) sharded->zero_grad();
    else model.zero_grad();
    double local_loss = 0;
    for (const auto& pb : mine) {
      Batch whole = make_batch(k, pb.tokens, pb.targets, pb.positions, pb.cu_seqlens, cfg.vocab_size);
      Tensor dlogp = sft_dlogp(k, pb.targets, double(std::max<int64_t>(loss_tokens, 1)), DType::F32);
      Batch b = whole;
      if (ulysses) {  // this rank's tokens; the output head and loss stay on them
        b = ulysses->shard(whole);
        dlogp = dlogp.rows(int64_t(ulysses->rank()) * b.n_tokens, int64_t(ulysses->rank() + 1) * b.n_tokens);
      }
      Tensor logp = k.alloc({b.n_tokens}, DType::F32);
      model.forward_backward(b, dlogp, logp);  // one output-head pass
      for (double v : to_host_f64(k, logp)) local_loss -= v;
    }
    if (ulysses) {
      // each SP rank holds its tokens' share of every gradient (DpShard sums over sp itself)
      if (!sharded) allreduce_grads(model, spc);
      local_loss = spc.allreduce_sum(local_loss);
    }
    if (sharded) sharded->reduce_over(rep);  // the shards were reduce-scattered in backward
    else allreduce_grads(model, rep);
    const double loss = rep.allreduce_sum(shard.allreduce_sum(local_loss)) / double(std::max<int64_t>(loss_tokens, 1));
    const double norm = grad_norm(k, opt.params(), sharded ? &shard : nullptr);
    const double lr = sched.at(step + 1);
    opt.step(lr, clip_scale(norm, clip));
    model.refresh_compute();
    ++step;
    std::map<std::string, double> metrics{{"loss", loss}, {"lr", lr}, {"gnorm", norm}, {"loss_tokens", double(loss_tokens)}};
    for (const auto& [key, v] : opt.last_metrics()) metrics[key] = v;
    progress.step(step, tokens, metrics);
    TEMPER_CHECK(std::isfinite(loss), "loss is not finite at step ", step, " (lower sft.lr?)");
    if (eval_every > 0 && step % eval_every == 0 && step < total_steps) evaluate("step");
    if ((ckpt_every > 0 && step % ckpt_every == 0) || step == total_steps) save();
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
