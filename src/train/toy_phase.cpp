#include "train/toy_phase.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <thread>

#include "core/file_write.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/signals.h"
#include "train/adamw.h"
#include "train/phase_context.h"

namespace temper {

int run_toy_phase(PhaseContext& ctx, const ToyOptions& o) {
  Kernels& k = ctx.kernels();
  const int64_t steps = o.steps, dim = o.dim;
  const uint64_t seed = o.seed;
  Comm& rep = ctx.mesh().replicate();

  Tensor x = Tensor::zeros({dim}, DType::F32), g = Tensor::zeros({dim}, DType::F32);
  std::vector<float> target(dim);
  for (int64_t i = 0; i < dim; ++i) target[i] = float(std::sin(double(i) + double(seed)));
  AdamWConfig cfg;
  cfg.weight_decay = 0;
  AdamW opt(k, {{"x", x, g, false}}, cfg);
  Rng rng(mix64(seed, uint64_t(ctx.mesh().world_rank())));

  int64_t step = 0;
  if (auto st = ctx.resume_state()) {
    TEMPER_CHECK(st->phase == "toy", "checkpoint is of phase '", st->phase, "', this run is 'toy'");
    step = st->step;
    k.copy(x, st->read_tensor("x"));
    opt.load(st->read_tensors("optim/"), step);
    const auto& all = st->u64.at("rng_all");
    TEMPER_CHECK(all.size() == size_t(4 * ctx.mesh().world_size()), "toy checkpoint was written by ",
                 all.size() / 4, " ranks; this run has ", ctx.mesh().world_size());
    const uint64_t* mine = all.data() + 4 * ctx.mesh().world_rank();
    rng.set_state({mine[0], mine[1], mine[2], mine[3]});
  }

  auto save = [&]() {
    CheckpointState s;
    s.step = step;
    s.phase = "toy";
    s.tensors["x"] = to_host(k, x);
    opt.save(s.tensors);
    // every rank has its own noise stream: store them all
    std::vector<uint64_t> all(4 * ctx.mesh().world_size());
    Tensor mine = Tensor::empty({4}, DType::I64), gathered = Tensor::wrap(all.data(), {int64_t(all.size())}, DType::I64);
    auto st = rng.state();
    std::memcpy(mine.raw(), st.data(), 32);
    ctx.mesh().world().all_gather(gathered, mine);
    s.u64["rng_all"] = all;
    return ctx.write_checkpoint(s);
  };

  const double lr = o.lr;
  const int64_t every = o.checkpoint_every;
  const int sleep_ms = o.sleep_ms;
  Progress progress(steps, step, ctx.metrics_path(), o.log_every);
  while (step < steps) {
    if (ctx.stop_requested()) {
      log_info("stopping at step ", step, ": ", ctx.stop_reason(), "; writing a checkpoint");
      save();
      return kExitRequeue;
    }
    float* xp = x.data<float>();
    float* gp = g.data<float>();
    double loss = 0;
    for (int64_t i = 0; i < dim; ++i) {
      float diff = xp[i] - target[i];
      loss += 0.5 * double(diff) * diff;
      gp[i] = diff + 0.1f * rng.normal();
    }
    rep.allreduce(g);
    double norm = std::sqrt(k.sum_squares(g)) / rep.size();
    opt.step(lr, 1.0 / rep.size());
    ++step;
    progress.step(step, dim, {{"loss", loss}, {"lr", lr}, {"gnorm", norm}});
    if (sleep_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
    if ((every > 0 && step % every == 0) || step == steps) save();
  }
  if (ctx.is_root()) {
    // the final parameters, for tests and users
    std::string text;
    char buf[32];
    for (int64_t i = 0; i < dim; ++i) {
      std::snprintf(buf, sizeof buf, "%.9g\n", double(x.data<float>()[i]));
      text += buf;
    }
    write_file_atomic((std::filesystem::path(ctx.output_dir()) / "toy_result.txt").string(), text);
  }
  log_info("toy phase done: ", steps, " steps");
  return 0;
}

}  // namespace temper
