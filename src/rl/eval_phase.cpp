// phase = eval (see eval_phase.h).
#include "rl/eval_phase.h"

#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/file_write.h"
#include "core/log.h"
#include "core/progress.h"
#include "rl/heldout_eval.h"
#include "rl/rl_options.h"
#include "train/model_init.h"
#include "train/model_setup.h"
#include "train/run_context.h"

namespace temper {

int run_eval_phase(RunContext& ctx) {
  const Deck& d = ctx.deck();
  Kernels& k = ctx.kernels();
  Mesh& mesh = ctx.mesh();
  auto tok = tokenizer_from_deck(d);
  const ChatTemplate tmpl = chat_template_from_deck(d);
  InitialWeights w = resolve_initial_weights(d, tok->vocab_size());
  Decoder model(w.config, k, DType::F32);
  apply_initial_weights(w, model, k, uint64_t(d.get_int("run.seed")));
  if (ctx.is_root()) log_info("eval: weights from ", w.description);

  const std::string file = d.get_string("eval.file");
  TEMPER_CHECK(!file.empty(), d.source(), ": phase = eval needs eval.file (a benchmark JSONL)");
  std::vector<RlPrompt> prompts = load_rl_prompts(file);
  const int64_t limit = d.get_int("eval.prompts");
  if (limit > 0 && int64_t(prompts.size()) > limit) prompts.resize(size_t(limit));

  RolloutOptions opt;
  opt.group_size = int(d.get_int("eval.samples"));
  opt.temperature = float(d.get_float("eval.temperature"));
  opt.top_p = float(d.get_float("eval.top_p"));
  opt.top_k = int(d.get_int("eval.top_k"));
  opt.max_new_tokens = int(d.get_int("eval.max_new_tokens"));
  opt.max_batch = int(d.get_int("eval.max_batch"));
  opt.stop_strings = d.get_list("rl.stop_strings");
  opt.seed = uint64_t(d.get_int("run.seed"));
  const ScoringOptions scoring = scoring_options_from_deck(d);

  std::filesystem::create_directories(ctx.output_dir());
  const std::string results =
      (std::filesystem::path(ctx.output_dir()) / cat("eval_results.rank", mesh.world_rank(), ".jsonl")).string();
  if (ctx.is_root())
    log_info("eval: ", prompts.size(), " prompts x ", opt.group_size, " samples from ", file, " (temperature ",
             opt.temperature, ", max_new_tokens ", opt.max_new_tokens, ")");
  Generator gen(model, k, opt.max_batch, opt.stop_strings.empty() ? nullptr : tok.get());
  HeldoutResult r = evaluate_prompts(gen, *tok, tmpl, prompts, opt, scoring, mesh.world(), results);

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
