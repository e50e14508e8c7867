// phase = eval (see eval_phase.h).
#include "rl/eval_phase.h"

#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/file_write.h"
#include "core/log.h"
#include "core/progress.h"
#include "rl/heldout_eval.h"
#include "train/engine.h"
#include "train/phase_context.h"

namespace temper {

int run_eval_phase(PhaseContext& ctx, const EvalOptions& o, const Tokenizer& tok, ChatTemplate tmpl,
                   const InitialWeights& w) {
  Kernels& k = ctx.kernels();
  Mesh& mesh = ctx.mesh();
  EngineOptions eo;
  eo.trainable = false;
  Engine policy(w.config, k, mesh, eo, w, o.seed);  // any mesh: whole weights gathered for generation
  if (ctx.is_root()) log_info("eval: weights from ", w.description);

  const std::string& file = o.file;
  std::vector<RlPrompt> prompts = load_rl_prompts(file);
  if (o.prompts > 0 && int64_t(prompts.size()) > o.prompts) prompts.resize(size_t(o.prompts));
  check_scoring_can_run(prompts, o.scoring);  // code tasks: refused where unisolated, before any generation
  const RolloutOptions& opt = o.rollout;
  const ScoringOptions& scoring = o.scoring;

  std::filesystem::create_directories(ctx.output_dir());
  const std::string results =
      (std::filesystem::path(ctx.output_dir()) / cat("eval_results.rank", mesh.world_rank(), ".jsonl")).string();
  if (ctx.is_root())
    log_info("eval: ", prompts.size(), " prompts x ", opt.group_size, " samples from ", file, " (temperature ",
             opt.temperature, ", max_new_tokens ", opt.max_new_tokens, ")");
  policy.begin_generation();
  Generator gen(policy.decoder(), k, opt.max_batch, opt.stop_strings.empty() ? nullptr : &tok);
  gen.set_vocab_limit(tok.vocab_size());  // never sample ids the tokenizer lacks
  HeldoutResult r = evaluate_prompts(gen, tok, tmpl, prompts, opt, scoring, mesh.world(), results);
  policy.end_generation();

  if (ctx.is_root()) {
    std::string table = "| task | prompts | samples | accuracy (avg@n) | unparsable |\n|---|---:|---:|---:|---:|\n";
    auto row = [&](const std::string& name, const TaskScore& t) {
      char buf[256];
      std::snprintf(buf, sizeof buf, "| %s | %lld | %lld | %.2f %% | %.1f %% |\n", name.c_str(),
                    (long long)t.prompts, (long long)t.samples, 100.0 * t.accuracy(),
                    t.samples ? 100.0 * double(t.unparsable) / double(t.samples) : 0.0);
      table += buf;
    };
    nlohmann::json summary;
    for (const auto& [name, t] : r.tasks) {
      row(name, t);
      summary["tasks"][name] = {{"prompts", t.prompts}, {"samples", t.samples}, {"correct", t.correct},
                                {"unparsable", t.unparsable}, {"accuracy", t.accuracy()}};
    }
    row("all", r.total);
    summary["accuracy"] = r.total.accuracy();
    summary["samples_per_prompt"] = opt.group_size;
    summary["generated_tokens"] = r.generated_tokens;
    summary["seconds"] = r.seconds;
    summary["weights"] = w.description;
    write_file_atomic((std::filesystem::path(ctx.output_dir()) / "eval_summary.json").string(), summary.dump(1) + "\n");
    log_info("eval done in ", format_duration(r.seconds), " (", r.generated_tokens, " tokens generated):\n", table,
             "per-sample results: ", ctx.output_dir(), "/eval_results.rank*.jsonl; pass@k tables: "
             "python3 postproc/score_eval.py ", ctx.output_dir(), "/eval_results.rank*.jsonl");
  }
  return 0;
}

}  // namespace temper
