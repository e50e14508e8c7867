// The one table of deck keys (type, default, range, help) and the lookups,
// typo suggestions and help listing built on it.
#include "deck/schema.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <unordered_map>

#include <boost/program_options.hpp>

#include "core/error.h"

namespace temper {
namespace {

// Fluent declaration of one key: k("lr", Float, "3e-4", "...").at_least(0).
class Decl {
 public:
  explicit Decl(KeySpec& s) : s_(s) {}
  Decl& at_least(double v) { s_.range.has_min = true; s_.range.min = v; return *this; }
  Decl& above(double v) { at_least(v); s_.range.min_open = true; return *this; }
  Decl& at_most(double v) { s_.range.has_max = true; s_.range.max = v; return *this; }
  Decl& below(double v) { at_most(v); s_.range.max_open = true; return *this; }
  Decl& within(double lo, double hi) { at_least(lo); return at_most(hi); }
  Decl& one_of(std::vector<std::string> c) { s_.choices = std::move(c); return *this; }
  Decl& alias(std::vector<std::string> a) { s_.aliases = std::move(a); return *this; }

 private:
  KeySpec& s_;
};

class Builder {
 public:
  void section(const std::string& name, const std::string& help) {
    sections_.push_back({name, help});
    current_ = name;
  }
  Decl k(const std::string& name, KeyType type, const std::string& def, const std::string& help) {
    KeySpec s;
    s.section = current_;
    s.name = name;
    s.type = type;
    s.default_text = def;
    s.help = help;
    keys_.push_back(std::move(s));
    return Decl(keys_.back());
  }
  std::vector<SectionSpec> sections_;
  std::vector<KeySpec> keys_;

 private:
  std::string current_;
};

constexpr KeyType Int = KeyType::Int, Float = KeyType::Float, Bool = KeyType::Bool,
                  Str = KeyType::String, List = KeyType::List, IntList = KeyType::IntList;

Builder build_schema() {
  Builder b;
  b.section("run", "what to run and where its output goes");
  b.k("phase", Str, "sft", "what to run; toy is a trivial optimisation for smoke tests")
      .one_of({"sft", "rl", "eval", "toy"});
  b.k("output_dir", Str, "out", "directory for checkpoints, metrics and dumps (relative to the working directory)");
  b.k("seed", Int, "1234", "global random seed (initialisation, sampling)").at_least(0);
  b.k("backend", Str, "cpu", "compute backend (kokkos: when built with Kokkos)").one_of({"cpu", "cuda", "kokkos"});
  b.k("deterministic", Bool, "true",
      "bitwise-reproducible training on cuda (a resumed run equals the uninterrupted one): the attention "
      "backward for head dims 64/128 runs cuDNN's deterministic graph or temper's atomic-free kernels (except "
      "where that graph's workspace, quadratic in the document length, exceeds TEMPER_CUDNN_MAX_WORKSPACE_MB: "
      "one 16K-token document at 12 heads; there cuDNN's nondeterministic graph runs and says so); false "
      "= the faster tensor-core kernels, whose f32 atomics vary the last bits from run to run");
  b.k("walltime", Int, "0",
      "wall-clock seconds this run may take, counted from process start (the job scripts pass what the "
      "allocation has left); 0 = none").at_least(0);
  b.k("walltime_margin", Int, "300",
      "seconds before walltime at which to write a checkpoint and stop").at_least(0);

  b.section("model", "architecture and initialisation");
  b.k("vocab_size", Int, "0", "vocabulary size; 0 = take it from the tokenizer").at_least(0);
  b.k("d_model", Int, "256", "hidden size").above(0);
  b.k("n_layers", Int, "4", "number of decoder layers").above(0);
  b.k("n_heads", Int, "4", "number of query heads (with differential attention: signal heads; Motif-2-12.7B 32)")
      .above(0);
  b.k("n_kv_heads", Int, "4", "number of key/value heads (grouped-query attention); must divide n_heads. "
      "With differential attention: key heads per path (signal keys and noise keys each) and value heads of "
      "width 2 head_dim (Motif-2-12.7B 8; its config.json's num_key_value_heads is twice that)")
      .above(0).alias({"num_key_value_heads", "kv_heads"});
  b.k("head_dim", Int, "0", "dimension of one head; 0 = d_model / n_heads").at_least(0);
  b.k("ffn_dim", Int, "768", "hidden size of the (SwiGLU) feed-forward block")
      .above(0).alias({"intermediate_size", "d_ff"});
  b.k("rope_theta", Float, "10000", "RoPE base frequency").above(0);
  b.k("qk_norm", Bool, "false", "RMS-normalise queries and keys per head before RoPE");
  b.k("qkv_bias", Bool, "false", "add a bias to the q, k, v projections");
  b.k("tie_embeddings", Bool, "true", "share the input embedding with the output projection")
      .alias({"tie_word_embeddings"});
  b.k("norm_eps", Float, "1e-6", "epsilon of RMSNorm").above(0).alias({"rms_norm_eps", "eps"});
  b.k("init", Str, "random",
      "initial weights: 'random', 'hf:DIR' (Hugging Face safetensors + config.json) or a checkpoint path");
  b.k("activation_checkpointing", Str, "none",
      "what training recomputes instead of keeping: none; selective (the parts in model.recompute); "
      "full (whole blocks from their input)").one_of({"none", "selective", "full"})
      .alias({"checkpointing"});
  b.k("recompute", List, "mlp",
      "with activation_checkpointing = selective, the parts recomputed in backward: mlp (gate|up and SwiGLU "
      "outputs), attention (the attention core's output and log-sum-exp, from the kept q, k, v); e.g. 'attention, mlp'")
      .alias({"recompute_parts"});
  b.k("init_std", Float, "0.02", "standard deviation of the random initialisation").above(0);
  b.k("attention", Str, "standard",
      "attention of every layer: standard (GQA); differential (Diff Transformer, Motif-2.6B: every head has a "
      "noise-control head, out = RMSNorm(A1 - lambda A2) (1 - lambda_init) with 2 head_dim wide values); "
      "grouped_differential (Motif-2-12.7B's GDA: fewer noise-control heads, each shared by n_heads/noise-heads "
      "signal heads). Both in the released layout (docs/motif.md)")
      .one_of({"standard", "differential", "grouped_differential"});
  b.k("gda_ratio", Int, "4",
      "grouped_differential: signal heads per noise-control head (n_heads / gda_ratio noise heads; "
      "e.g. 3 or 4); ignored when gda_noise_heads is set").above(0);
  b.k("gda_noise_heads", Int, "0",
      "grouped_differential: number of noise-control heads; 0 = n_heads / gda_ratio. Must divide n_heads "
      "and be a multiple of n_kv_heads").at_least(0);
  b.k("diff_lambda_init", Float, "-1",
      "differential attention lambda_init; negative = Motif's schedule 0.8 - 0.6 exp(-0.3 (l - 1)) for the 0-based "
      "layer l (what its released models use)")
      .below(1);
  b.k("diff_norm_eps", Float, "1e-5",
      "differential attention: epsilon of the per-head sub-layer RMSNorm (Motif's attn_rms_norm_eps)").above(0);
  b.k("mlp_activation", Str, "swiglu",
      "MLP activation on the gate|up projection: swiglu (silu(gate) * up) or polynorm "
      "((w0 N(g^3) + w1 N(g^2) + w2 N(g) + b) * up, N = RMS normalisation over the hidden dimension)")
      .one_of({"swiglu", "polynorm"});

  b.section("parallel", "process mesh: world = sp x dp_shard x dp_replicate");
  b.k("sp", Int, "1", "sequence-parallel (Ulysses) group size")
      .above(0);
  b.k("dp_shard", Int, "1", "ranks that shard parameters, gradients and optimizer state").above(0);
  b.k("dp_replicate", Int, "0", "data-parallel replicas; 0 = fill the rest of the world").at_least(0);
  b.k("ranks_per_node", Int, "0", "ranks per node; 0 = detect from the MPI shared-memory split")
      .at_least(0);
  b.k("allow_cross_node", Bool, "false", "allow sp and dp_shard groups to span nodes");
  b.k("device_comm", Str, "auto",
      "communicators for device tensors with backend = cuda: auto (NCCL on the axes of more than one rank when "
      "every rank has a GPU of its own, else mpi), nccl (NCCL on every axis, also of one rank), mpi (MPI with "
      "device tensors staged through host memory; several ranks may share one GPU)")
      .one_of({"auto", "nccl", "mpi"});
  b.k("comm_timeout", Float, "600", "seconds a collective may take before the job aborts naming it and the ranks "
      "that did not arrive (MPI and NCCL)")
      .above(0);
  b.k("device_memory_gib", Float, "80",
      "memory of one device in GiB; the memory plan (temper plan, and the start of training) warns above it")
      .above(0);

  b.section("data", "training data, tokenizer and batching");
  b.k("train_files", List, "", "JSONL training files, comma-separated (used when sft.stage_files is empty)");
  b.k("eval_file", Str, "", "JSONL evaluation file; empty = no evaluation set");
  b.k("tokenizer", Str, "byte",
      "'byte' (256 byte tokens + specials), 'hf:DIR' or DIR (a Hugging Face tokenizer.json there), "
      "or the path of a tokenizer.json");
  b.k("chat_template", Str, "auto",
      "chat template: chatml, qwen3 (ChatML with <think> blocks), llama3; auto = from the tokenizer's "
      "tokenizer_config.json (chatml for the byte tokenizer)").one_of({"auto", "chatml", "qwen3", "llama3"});
  b.k("seq_len", Int, "1024", "tokens per packed training sequence").above(0)
      .alias({"max_seq_len", "seq_length", "context_length"});
  b.k("micro_batch", Int, "1", "sequences per micro-step on each data-parallel rank").above(0)
      .alias({"batch_size", "micro_batch_size"});
  b.k("shuffle_seed", Int, "0", "seed of the document shuffle").at_least(0);
  b.k("overlong", Str, "truncate", "documents longer than seq_len: truncate them, or split them")
      .one_of({"truncate", "split"});

  b.section("sft", "supervised fine-tuning (phase = sft)");
  b.k("steps", Int, "1000", "optimizer steps (with stage_steps set: their sum); at least 1 when run.phase = sft").at_least(0)
      .alias({"max_steps", "num_steps", "train_steps"});
  b.k("grad_accum", Int, "1", "micro-steps per optimizer step").above(0)
      .alias({"gradient_accumulation_steps", "accum_steps"});
  b.k("optimizer", Str, "adamw",
      "adamw, or muon: Newton-Schulz-orthogonalised momentum for the 2-D hidden matrices, AdamW for "
      "embeddings, output head, norms and biases (same lr: Muon's update RMS is matched to AdamW's)")
      .one_of({"adamw", "muon"});
  b.k("muon_momentum", Float, "0.95", "Muon momentum").at_least(0).below(1);
  b.k("muon_nesterov", Bool, "true", "Muon: Nesterov momentum (orthogonalise g + mu m instead of m)");
  b.k("muon_ns_steps", Int, "5", "Muon: quintic Newton-Schulz iterations").within(1, 20);
  b.k("muon_update_scale", Float, "0.2",
      "Muon: update = lr * this * sqrt(max(rows, cols)) * orthogonalised momentum (RMS this * lr, like AdamW's)")
      .above(0);
  b.k("qk_clip_tau", Float, "0",
      "QK-clip (MuonClip): after each step, heads whose max pre-softmax logit exceeded this get W_q, W_k "
      "rescaled so it becomes this (differential attention: signal and noise-control heads alike; any "
      "parallel.sp); 0 = off").at_least(0);
  b.k("lr", Float, "3e-4", "peak learning rate").at_least(0).alias({"learning_rate"});
  b.k("min_lr", Float, "3e-5", "learning rate at the end of the cosine decay").at_least(0)
      .alias({"final_lr", "lr_min"});
  b.k("warmup_steps", Int, "100", "steps of linear warmup from 0 to lr").at_least(0)
      .alias({"warmup"});
  b.k("weight_decay", Float, "0.1", "decoupled weight decay").at_least(0).alias({"wd"});
  b.k("beta1", Float, "0.9", "Adam beta1").within(0, 1).below(1);
  b.k("beta2", Float, "0.95", "Adam beta2").within(0, 1).below(1);
  b.k("adam_eps", Float, "1e-8", "Adam epsilon").above(0).alias({"eps", "epsilon"});
  b.k("grad_clip", Float, "1.0", "global gradient-norm clip; 0 = off").at_least(0)
      .alias({"max_grad_norm", "clip_grad"});
  b.k("stage_files", List, "",
      "curriculum: one entry per stage, the files of a stage joined by '+', e.g. 'a.jsonl+b.jsonl, c.jsonl'");
  b.k("stage_seq_len", IntList, "", "seq_len of each stage; empty = data.seq_len for all").above(0);
  b.k("stage_steps", IntList, "", "steps of each stage; empty = sft.steps split evenly").at_least(0);
  b.k("eval_every", Int, "0", "evaluate every this many steps; 0 = only at the end").at_least(0);
  b.k("eval_samples", Int, "64", "evaluation prompts per evaluation").at_least(0);
  b.k("eval_max_new_tokens", Int, "256", "generation budget per evaluation sample").above(0);

  b.section("rl", "reinforcement learning (phase = rl)");
  b.k("algorithm", Str, "grpo", "policy loss: grpo (token-level ratios) or gspo (sequence-level ratio)")
      .one_of({"grpo", "gspo"});
  b.k("prompts_file", Str, "", "JSONL prompts with task type and verifier data");
  b.k("steps", Int, "100", "RL steps (each: generate, score, reuse_steps updates)").at_least(0);
  b.k("prompts_per_step", Int, "32", "prompts drawn per step (over all ranks)").above(0);
  b.k("group_size", Int, "8", "responses sampled per prompt").above(0)
      .alias({"num_generations", "n_samples"});
  b.k("reuse_steps", Int, "1", "optimizer updates per generated batch").above(0);
  b.k("eps_low", Float, "0.2", "lower clip: ratio >= 1 - eps_low (gspo: about 3e-4)").at_least(0);
  b.k("eps_high", Float, "0.28", "upper clip: ratio <= 1 + eps_high (gspo: about 4e-4)").at_least(0);
  b.k("loss_agg", Str, "token-mean", "how token losses are averaged over a batch")
      .one_of({"token-mean", "seq-mean-token-mean"});
  b.k("kl_coef", Float, "0", "coefficient of the KL penalty to the initial policy; 0 = none").at_least(0);
  b.k("temperature", Float, "1.0", "sampling temperature").above(0);
  b.k("top_p", Float, "1.0", "nucleus sampling mass; 1 = off").above(0).at_most(1);
  b.k("top_k", Int, "0", "sample from the k most likely tokens; 0 = off").at_least(0);
  b.k("max_new_tokens", Int, "1024", "generation budget per response").above(0);
  b.k("lr", Float, "1e-6", "learning rate (constant)").at_least(0).alias({"learning_rate"});
  b.k("filter", Bool, "false", "difficulty-aware filtering: calibrate pass rates, keep prompts inside the band")
      .alias({"difficulty_filter"});
  b.k("filter_rollouts", Int, "5", "samples per prompt used to estimate its pass rate").above(0);
  b.k("filter_low", Float, "0.0", "keep prompts whose pass rate is >= this (alpha)").within(0, 1);
  b.k("filter_high", Float, "0.8", "keep prompts whose pass rate is <= this (beta)").within(0, 1);
  b.k("filter_bands", List, "",
      "per-task bands overriding filter_low/high, like 'math:0-0.8, code:0-0.8, if:0-0.4'");
  b.k("filter_prompts", Int, "0", "prompts calibrated by the filter; 0 = the whole prompts file").at_least(0);
  b.k("drop_zero_variance", Bool, "true", "drop groups whose rewards are all equal and draw replacements");
  b.k("refill_rounds", Int, "2", "extra generation rounds per step to replace dropped groups").at_least(0);
  b.k("std_normalize", Bool, "true", "divide group-centred rewards by the group's standard deviation");
  b.k("behaviour_logp", Str, "recompute",
      "log-probs the ratios use as the behaviour policy: 'recompute' (training forward right after "
      "generation) or 'sampler' (recorded while sampling)").one_of({"recompute", "sampler"});
  b.k("task_mix", List, "",
      "task weights like 'math:0.5, code:0.25, if:0.25'; empty = as the prompts file comes");
  b.k("dump_every", Int, "0", "write the step's trajectories every this many steps; 0 = never")
      .at_least(0);
  b.k("micro_batch_tokens", Int, "8192", "tokens per forward/backward micro-batch in the updates").above(0);
  b.k("max_batch", Int, "256", "sequences decoded together by the generation engine").above(0);
  b.k("plan_prompt_tokens", Int, "1024",
      "prompt length (tokens) the memory plan assumes for generation and training (temper plan)").at_least(0);
  b.k("stop_strings", List, "", "extra strings that end a response (besides the end-of-turn token)");
  b.k("grad_clip", Float, "1.0", "clip the global gradient norm to this; 0 = off").at_least(0);
  b.k("weight_decay", Float, "0.0", "AdamW decoupled weight decay").at_least(0);
  b.k("optimizer", Str, "adamw", "adamw or muon (as sft.optimizer)").one_of({"adamw", "muon"});
  b.k("beta1", Float, "0.9", "Adam beta1").within(0, 1).below(1);
  b.k("beta2", Float, "0.95", "Adam beta2").within(0, 1).below(1);
  b.k("adam_eps", Float, "1e-8", "Adam epsilon").above(0);
  b.k("muon_momentum", Float, "0.95", "Muon momentum (rl.optimizer = muon)").at_least(0).below(1);
  b.k("muon_nesterov", Bool, "true", "Muon: Nesterov momentum");
  b.k("muon_ns_steps", Int, "5", "Muon: quintic Newton-Schulz iterations").within(1, 20);
  b.k("muon_update_scale", Float, "0.2", "Muon: update RMS relative to lr (as sft.muon_update_scale)").above(0);
  b.k("qk_clip_tau", Float, "0", "QK-clip threshold as sft.qk_clip_tau; 0 = off").at_least(0);
  b.k("warmup_steps", Int, "0", "linear learning-rate warm-up steps").at_least(0);
  b.k("eval_file", Str, "", "held-out prompts (RL prompt JSONL) scored before, every eval_every, and at the end");
  b.k("eval_every", Int, "0", "evaluate every this many RL steps; 0 = before and after only").at_least(0);
  b.k("eval_samples", Int, "0", "held-out prompts per evaluation; 0 = all").at_least(0);
  b.k("eval_temperature", Float, "0", "sampling temperature of the held-out evaluation; 0 = greedy")
      .at_least(0);
  b.k("code_command", Str, "python3", "interpreter that runs code answers in the sandbox ('{src}' = file)");
  b.k("code_workers", Int, "4", "code sandboxes run concurrently").above(0);
  b.k("code_timeout", Float, "5", "wall-clock seconds per code test run").above(0);
  b.k("code_batch", Int, "1",
      "test-code answers (humaneval, mbpp) scored per sandboxed interpreter, each in its own forked process")
      .above(0);
  b.k("code_unisolated", Bool, "false",
      "where namespaces are unavailable, run code answers unisolated (they can then read the run's files and "
      "see other processes; a warning at start) instead of refusing");
  b.k("code_ro_paths", List, "",
      "more host paths code answers see read-only (an interpreter outside /usr and its libraries)");
  b.k("if_loose", Bool, "false", "instruction following checked in IFEval's loose mode");
  b.k("answer_prefixes", List, "", "math answer markers tried when there is no \\boxed{}, like '####, Answer:'");

  b.section("eval", "benchmark evaluation (phase = eval): prompts x samples scored by the RL verifiers");
  b.k("file", Str, "", "benchmark JSONL (RL prompt format: messages, task, answer / tests / constraints)");
  b.k("samples", Int, "1", "samples per prompt (n for pass@k)").above(0).alias({"n"});
  b.k("temperature", Float, "0", "sampling temperature; 0 = greedy").at_least(0);
  b.k("top_p", Float, "1.0", "nucleus sampling mass; 1 = off").above(0).at_most(1);
  b.k("top_k", Int, "0", "top-k sampling; 0 = off").at_least(0);
  b.k("max_new_tokens", Int, "1024", "generation budget per response").above(0);
  b.k("max_batch", Int, "256", "sequences decoded together").above(0);
  b.k("prompts", Int, "0", "evaluate only the first this many prompts; 0 = all").at_least(0);

  b.section("toy", "trivial optimisation used by foundation tests (phase = toy)");
  b.k("steps", Int, "100", "optimizer steps").at_least(0);
  b.k("dim", Int, "16", "parameter vector length").above(0);
  b.k("lr", Float, "0.1", "learning rate").at_least(0);
  b.k("sleep_ms", Int, "0", "pause after each step (milliseconds), so tests can signal a running job")
      .at_least(0);

  b.section("checkpoint", "saving and resuming");
  b.k("dir", Str, "{run.output_dir}/checkpoints", "checkpoint directory");
  b.k("every", Int, "500", "save every this many steps; 0 = only at the end and at walltime")
      .at_least(0).alias({"save_every", "interval"});
  b.k("keep_last", Int, "2", "checkpoints kept; 0 = keep all").at_least(0);
  b.k("resume", Str, "auto", "'auto' (latest in dir if any), 'never', or a checkpoint path");
  b.k("async", Bool, "true",
      "write periodic checkpoints in a background thread while training continues (signal and walltime "
      "saves are synchronous)");

  b.section("log", "logging and metrics");
  b.k("level", Str, "info", "log level").one_of({"debug", "info", "warn", "error"});
  b.k("every", Int, "10", "print a metrics line every this many steps").above(0);
  b.k("metrics", Bool, "true", "write JSONL metrics (one file per rank) under run.output_dir");
  return b;
}

const Builder& schema_tables() {
  static const Builder tables = build_schema();
  return tables;
}

}  // namespace

std::string format_number(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {  // whole numbers without an exponent
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  for (int p = 1; p <= 17; ++p) {
    std::snprintf(buf, sizeof buf, "%.*g", p, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  // "1e-06" -> "1e-6", "1e+20" -> "1e20"
  std::string s = buf;
  const size_t e = s.find('e');
  if (e == std::string::npos) return s;
  std::string mant = s.substr(0, e), exp = s.substr(e + 1);
  const bool neg = exp[0] == '-';
  if (exp[0] == '-' || exp[0] == '+') exp = exp.substr(1);
  exp.erase(0, std::min(exp.find_first_not_of('0'), exp.size() - 1));
  return mant + "e" + (neg ? "-" : "") + exp;
}

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// How far a typo may be from a word and still be suggested.
size_t typo_budget(const std::string& word) { return std::max<size_t>(2, word.size() / 2); }

}  // namespace

const char* key_type_name(KeyType t) {
  switch (t) {
    case KeyType::Int: return "int";
    case KeyType::Float: return "float";
    case KeyType::Bool: return "bool";
    case KeyType::String: return "string";
    case KeyType::List: return "list";
    case KeyType::IntList: return "int-list";
  }
  return "?";
}

bool Range::contains(double v) const {
  if (has_min && (min_open ? !(v > min) : !(v >= min))) return false;
  if (has_max && (max_open ? !(v < max) : !(v <= max))) return false;
  return true;
}

std::string Range::describe() const {
  if (has_min && has_max) {
    return cat("in ", min_open ? "(" : "[", format_number(min), ", ", format_number(max),
               max_open ? ")" : "]");
  }
  if (has_min) return cat(min_open ? "> " : ">= ", format_number(min));
  if (has_max) return cat(max_open ? "< " : "<= ", format_number(max));
  return "";
}

std::string KeySpec::constraint() const {
  if (!choices.empty()) {
    std::string s = "one of ";
    for (size_t i = 0; i < choices.size(); ++i) s += (i ? "|" : "") + choices[i];
    return s;
  }
  return range.describe();
}

const std::vector<SectionSpec>& deck_sections() { return schema_tables().sections_; }
const std::vector<KeySpec>& deck_schema() { return schema_tables().keys_; }

int deck_key_index(const std::string& full_name) {
  static const std::unordered_map<std::string, int> index = [] {
    std::unordered_map<std::string, int> m;
    const auto& keys = deck_schema();
    for (size_t i = 0; i < keys.size(); ++i) m[keys[i].full_name()] = static_cast<int>(i);
    return m;
  }();
  auto it = index.find(full_name);
  return it == index.end() ? -1 : it->second;
}

bool deck_has_section(const std::string& name) {
  for (const auto& s : deck_sections())
    if (s.name == name) return true;
  return false;
}

size_t edit_distance(const std::string& a_in, const std::string& b_in) {
  const std::string a = lower(a_in), b = lower(b_in);
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({sub, prev[j] + 1, cur[j - 1] + 1});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string suggest_word(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::numeric_limits<size_t>::max();
  for (const auto& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best_d) best_d = d, best = c;
  }
  return best_d <= typo_budget(word) ? best : "";
}

std::string suggest_key(const std::string& unknown) {
  const size_t dot = unknown.find('.');
  const std::string bare = dot == std::string::npos ? unknown : unknown.substr(dot + 1);
  std::string best;
  size_t best_d = std::numeric_limits<size_t>::max();
  auto consider = [&](const std::string& candidate, const std::string& target) {
    size_t d = edit_distance(unknown, candidate);
    if (d < best_d) best_d = d, best = target;
  };
  for (const auto& k : deck_schema()) {
    consider(k.full_name(), k.full_name());
    for (const auto& a : k.aliases) consider(k.section + "." + a, k.full_name());
  }
  return best_d <= typo_budget(bare) ? best : "";
}

std::string deck_help() {
  namespace po = boost::program_options;
  std::string out =
      "temper input deck: INI sections of 'key = value' lines ('#' starts a comment).\n"
      "Any key can be overridden on the command line as --section.key=value.\n"
      "Types: int, float, bool (true/false/yes/no/on/off/1/0), string, list (comma-separated),\n"
      "int-list (comma-separated integers). Defaults are shown as (=...).\n";
  for (const auto& sec : deck_sections()) {
    po::options_description desc(cat("[", sec.name, "]  ", sec.help), 110, 55);
    for (const auto& k : deck_schema()) {
      if (k.section != sec.name) continue;
      // The constraint goes first so that line wrapping never splits it.
      const std::string c = k.constraint();
      const std::string help = c.empty() ? k.help : "[" + c + "] " + k.help;
      auto* v = po::value<std::string>()
                    ->value_name(key_type_name(k.type))
                    ->default_value(k.default_text, k.default_text);
      desc.add_options()(k.full_name().c_str(), v, help.c_str());
    }
    std::ostringstream os;
    os << "\n" << desc;
    out += os.str();
  }
  return out;
}

}  // namespace temper
