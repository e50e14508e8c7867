// The subcommands (see subcommands.h): argument parsing around the mechanisms
// they drive (data/synthetic_tasks, model/hf_checkpoint, train/upscale,
// app/plan_command, deck printing).
#include "app/subcommands.h"

#include <filesystem>
#include <iostream>

#include "app/plan_command.h"
#include "core/log.h"
#include "data/synthetic_tasks.h"
#include "deck/deck.h"
#include "io/checkpoint.h"
#include "model/hf_checkpoint.h"
#include "train/model_setup.h"
#include "train/upscale.h"

namespace temper {

namespace {
// temper generate-tasks --out DIR [--seed N] [--train N] [--eval N]
int generate_tasks(const std::vector<std::string>& args, int rank) {
  std::string out;
  uint64_t seed = 1;
  int64_t n_train = 20000, n_eval = 200;
  for (size_t i = 0; i < args.size(); ++i) {
    auto value = [&]() -> std::string {
      TEMPER_CHECK(i + 1 < args.size(), "generate-tasks: ", args[i], " needs a value");
      return args[++i];
    };
    auto number = [&](const std::string& flag) -> int64_t {
      std::string v = value();
      try {
        size_t pos = 0;
        long long n = std::stoll(v, &pos);
        if (pos == v.size() && n >= 0) return n;
      } catch (const std::exception&) {}
      fail("generate-tasks: ", flag, " expects a non-negative integer, got '", v, "'");
    };
    if (args[i] == "--out") out = value();
    else if (args[i] == "--seed") seed = uint64_t(number("--seed"));
    else if (args[i] == "--train") n_train = number("--train");
    else if (args[i] == "--eval") n_eval = number("--eval");
    else fail("generate-tasks: unknown option '", args[i], "' (options: --out DIR --seed N --train N --eval N)");
  }
  TEMPER_CHECK(!out.empty(), "generate-tasks: --out DIR is required");
  if (rank == 0) {
    write_synthetic_datasets(out, seed, n_train, n_eval);
    std::cout << "generate-tasks: wrote sft_train.jsonl, sft_eval.jsonl, rl_prompts.jsonl, rl_eval.jsonl to "
              << out << "\n";
  }
  return 0;
}

// temper export --checkpoint PATH|DIR --out DIR [--dtype bf16|f32] [--tokenizer DIR] [--max-shard-mb N]
int export_checkpoint(const std::vector<std::string>& args, int rank) {
  const char* usage = "(options: --checkpoint PATH|DIR --out DIR --dtype bf16|f32 --tokenizer DIR --max-shard-mb N)";
  std::string ckpt, out;
  HfExportOptions opt;
  for (size_t i = 0; i < args.size(); ++i) {
    auto value = [&]() -> std::string {
      TEMPER_CHECK(i + 1 < args.size(), "export: ", args[i], " needs a value ", usage);
      return args[++i];
    };
    if (args[i] == "--checkpoint") ckpt = value();
    else if (args[i] == "--out") out = value();
    else if (args[i] == "--tokenizer") opt.tokenizer_dir = value();
    else if (args[i] == "--dtype") {
      const std::string v = value();
      TEMPER_CHECK(v == "bf16" || v == "f32", "export: --dtype must be bf16 or f32, got '", v, "'");
      opt.dtype = v == "bf16" ? DType::BF16 : DType::F32;
    } else if (args[i] == "--max-shard-mb") {
      const std::string v = value();
      size_t pos = 0;
      long long mb = 0;
      try {
        mb = std::stoll(v, &pos);
      } catch (const std::exception&) {}
      TEMPER_CHECK(pos == v.size() && mb > 0, "export: --max-shard-mb expects a positive integer, got '", v, "'");
      opt.max_shard_bytes = uint64_t(mb) << 20;
    } else {
      fail("export: unknown option '", args[i], "' ", usage);
    }
  }
  TEMPER_CHECK(!ckpt.empty() && !out.empty(), "export: --checkpoint and --out are required ", usage);
  if (rank != 0) return 0;
  namespace fs = std::filesystem;
  std::string path = ckpt;
  CheckpointState st;
  if (fs::is_directory(ckpt)) {
    // a checkpoint directory, or a run's output directory holding checkpoints/
    std::string dir = ckpt;
    if (CheckpointStore(dir, 0).list().empty() && fs::is_directory(fs::path(ckpt) / "checkpoints"))
      dir = (fs::path(ckpt) / "checkpoints").string();
    auto s = CheckpointStore(dir, 0).load_latest_valid(&path);
    TEMPER_CHECK(s.has_value(), "export: no valid checkpoint in '", dir, "'");
    st = std::move(*s);
  } else {
    st = CheckpointStore::load(ckpt);
  }
  std::map<std::string, Tensor> params;
  for (const auto& [name, t] : st.tensors)
    if (name.rfind("model/", 0) == 0) params[name.substr(6)] = t;
  auto embed = params.find("embed");
  TEMPER_CHECK(embed != params.end(), "export: '", path, "' holds no model weights (no tensor model/embed)");
  const Deck deck = Deck::parse(st.deck_text, path + " (stored deck)");
  // The checkpoint's own vocabulary stands in for the tokenizer's when the deck says vocab_size = 0.
  const ModelConfig cfg = model_config_from_deck(deck, int(embed->second.dim(0)));
  // End-of-turn id for generate(): <|im_end|> (chat models), else <|endoftext|>; unset when neither
  // exists or this build cannot read the deck's tokenizer.
  try {
    auto tok = tokenizer_from_deck(deck);
    for (const char* name : {"<|endoftext|>", "<|im_end|>"}) {
      try {
        opt.eos_token_id = tok->special_id(name);
      } catch (const Error&) {}
    }
  } catch (const Error& e) {
    log_warn("export: eos_token_id left unset (", e.what(), ")");
  }
  auto files = export_hf(cfg, params, out, opt);
  std::cout << "export: step " << st.step << " of '" << path << "' written to " << out << " as "
            << hf_architecture_for(cfg) << " (" << dtype_name(opt.dtype) << "):";
  for (const auto& f : files) std::cout << " " << f;
  std::cout << "\n";
  return 0;
}

// temper upscale --checkpoint PATH|DIR --out DIR --width-factor F [--head-factor H] [--signal-head-factor M]
//   [--untie-embeddings] (--depth N | --insert-layers i,j,...)
std::vector<int> parse_int_list(const std::string& flag, const std::string& v) {
  std::vector<int> out;
  size_t pos = 0;
  while (pos <= v.size()) {
    const size_t comma = std::min(v.find(',', pos), v.size());
    const std::string item = v.substr(pos, comma - pos);
    size_t used = 0;
    long long x = -1;
    try {
      x = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    TEMPER_CHECK(!item.empty() && used == item.size() && x >= 0 && x < (1 << 20), "upscale: ", flag,
                 " expects non-negative integers separated by commas, got '", v, "'");
    out.push_back(int(x));
    pos = comma + 1;
  }
  return out;
}

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

int upscale_command(const std::vector<std::string>& args, int rank) {
  const char* usage = "(options: --checkpoint PATH|DIR --out DIR --width-factor F --head-factor H "
                      "--signal-head-factor M --untie-embeddings --depth N | --insert-layers i,j,...)";
  std::string in, out;
  UpscaleOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    auto value = [&]() -> std::string {
      TEMPER_CHECK(i + 1 < args.size(), "upscale: ", args[i], " needs a value ", usage);
      return args[++i];
    };
    auto single = [&](const std::string& flag) {
      const auto v = parse_int_list(flag, value());
      TEMPER_CHECK(v.size() == 1, "upscale: ", flag, " takes one integer");
      return v[0];
    };
    if (args[i] == "--checkpoint") in = value();
    else if (args[i] == "--out") out = value();
    else if (args[i] == "--width-factor") o.width_factor = single("--width-factor");
    else if (args[i] == "--head-factor") o.head_factor = single("--head-factor");
    else if (args[i] == "--signal-head-factor") o.signal_head_factor = single("--signal-head-factor");
    else if (args[i] == "--untie-embeddings") o.untie_embeddings = true;
    else if (args[i] == "--depth") o.depth = single("--depth");
    else if (args[i] == "--insert-layers") o.insert_after = parse_int_list("--insert-layers", value());
    else fail("upscale: unknown option '", args[i], "' ", usage);
  }
  TEMPER_CHECK(!in.empty() && !out.empty(), "upscale: --checkpoint and --out are required ", usage);
  TEMPER_CHECK(o.width_factor >= 1, "upscale: --width-factor must be >= 1, got ", o.width_factor);
  if (rank != 0) return 0;
  namespace fs = std::filesystem;
  std::string path = in;
  CheckpointState st;
  if (fs::is_directory(in)) {
    auto latest = CheckpointStore(in, 0).load_latest_valid(&path);
    TEMPER_CHECK(latest.has_value(), "upscale: no valid checkpoint (ckpt_*.h5) in '", in, "'");
    st = std::move(*latest);
  } else {
    TEMPER_CHECK(fs::exists(in), "upscale: --checkpoint '", in, "' does not exist");
    st = CheckpointStore::load(in);
  }
  std::map<std::string, Tensor> params;
  for (const auto& [name, t] : st.tensors)
    if (name.rfind("model/", 0) == 0) params[name.substr(6)] = t;
  TEMPER_CHECK(params.count("embed"), "upscale: '", path, "' holds no model weights (no tensor model/embed)");
  const Deck deck = Deck::parse(st.deck_text, path + " (stored deck)");
  const ModelConfig cfg = model_config_from_deck(deck, int(params.at("embed").dim(0)));
  const UpscaledModel up = upscale_model(cfg, params, o);
  const ModelConfig& n = up.config;
  // The stored deck gets the new shape, every field spelled out (model.init = random: the shape is the deck's).
  const std::vector<std::string> ov = {
      "--model.init=random", "--model.vocab_size=" + std::to_string(n.vocab_size),
      "--model.d_model=" + std::to_string(n.d_model), "--model.n_layers=" + std::to_string(n.n_layers),
      "--model.n_heads=" + std::to_string(n.n_heads), "--model.n_kv_heads=" + std::to_string(n.n_kv_heads),
      "--model.head_dim=" + std::to_string(n.head_dim), "--model.ffn_dim=" + std::to_string(n.ffn_dim),
      "--model.rope_theta=" + num(n.rope_theta), "--model.norm_eps=" + num(n.norm_eps),
      "--model.init_std=" + num(n.init_std), std::string("--model.qk_norm=") + (n.qk_norm ? "true" : "false"),
      std::string("--model.qkv_bias=") + (n.qkv_bias ? "true" : "false"),
      std::string("--model.tie_embeddings=") + (n.tie_embeddings ? "true" : "false"),
      std::string("--model.attention=") + attention_kind_name(n.attention),
      "--model.gda_noise_heads=" + std::to_string(n.differential() ? n.n_noise_heads : 0)};
  CheckpointState w;
  w.step = 0;
  w.phase = "upscale";
  w.deck_text = Deck::parse(st.deck_text, path + " (stored deck)", ov).resolved_text();
  w.mesh = {1, 1, 1};
  for (const auto& [name, t] : up.params) w.tensors["model/" + name] = t;
  const std::string file = CheckpointStore(out, 0).write(w);
  std::cout << "upscale: " << path << " (" << cfg.n_layers << " layers, d_model " << cfg.d_model << ", "
            << cfg.param_count() << " parameters) -> " << file << " (" << n.n_layers << " layers, d_model "
            << n.d_model << ", " << n.n_heads << "/" << n.n_kv_heads << " heads, ffn " << n.ffn_dim << ", "
            << n.param_count() << " parameters" << (n.tie_embeddings && o.width_factor > 1 ?
            ", model.norm_eps " + num(n.norm_eps) : std::string()) << ")\n";
  return 0;
}

}  // namespace

int run_subcommand(const CommandLine& cl, int rank) {
  if (cl.subcommand == "generate-tasks") return generate_tasks(cl.args, rank);
  if (cl.subcommand == "export") return export_checkpoint(cl.args, rank);
  if (cl.subcommand == "plan") return run_plan_command(cl.args, rank);
  if (cl.subcommand == "upscale") return upscale_command(cl.args, rank);
  if (cl.subcommand == "help") {
    if (rank == 0) std::cout << usage_text() << "\n" << deck_help();
    return 0;
  }
  if (cl.subcommand == "print-deck") {
    // temper print-deck DECK [--section.key=value ...]: the fully resolved deck, checked, nothing run
    TEMPER_CHECK(!cl.args.empty(), "print-deck: name a deck file");
    std::vector<std::string> overrides(cl.args.begin() + 1, cl.args.end());
    Deck deck = Deck::load(cl.args[0], overrides);
    if (rank == 0) std::cout << deck.resolved_text();
    return 0;
  }
  fail("unknown subcommand '", cl.subcommand, "'");
}

}  // namespace temper
