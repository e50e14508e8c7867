#include "app/plan_command.h"

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "core/error.h"
#include "model/decoder.h"
#include "parallel/ulysses.h"
#include "train/model_setup.h"

namespace temper {

DeckPlan plan_from_deck(const Deck& d, const ModelConfig& cfg, int replicate) {
  DeckPlan p;
  MemoryPlanOptions& o = p.options;
  const bool cuda = d.get_string("run.backend") == "cuda";
  o.master_dtype = DType::F32;
  o.compute_dtype = cuda ? DType::BF16 : DType::F32;  // the backend's activation dtype
  o.stat_dtype = DType::F32;
  o.sp = int(d.get_int("parallel.sp"));
  o.shard = int(d.get_int("parallel.dp_shard"));
  o.replicate = replicate >= 0 ? replicate : int(d.get_int("parallel.dp_replicate"));
  o.shard_compute = o.shard > 1;  // parallel/dp_shard gathers parameters layer by layer
  o.checkpointing = checkpointing_from_deck(d);
  o.recompute = recompute_parts_from_deck(d);
  const std::string phase = d.get_string("run.phase");
  int64_t seq = d.get_int("data.seq_len");
  for (int64_t s : d.get_int_list("sft.stage_seq_len")) seq = std::max(seq, s);
  if (phase == "sft") o.tokens = d.get_int("data.micro_batch") * seq;
  else if (phase == "rl") o.tokens = d.get_int("rl.micro_batch_tokens");
  if (phase == "rl" || phase == "eval") {
    o.kv_slots = d.get_int("rl.max_batch");
    o.kv_length = d.get_int("data.seq_len");
  } else if (phase == "sft" && !d.get_string("data.eval_file").empty()) {
    o.kv_slots = 16;  // GreedyEval's batch
    o.kv_length = d.get_int("data.seq_len");
  }
  if (o.sp > 1) o.sp_buffer_bytes = Ulysses::scratch_bytes(cfg, (o.tokens + o.sp - 1) / o.sp, o.sp, o.compute_dtype);
  const MemoryPlan plan(cfg, o);
  p.total_bytes = plan.total();
  p.device_gib = d.get_float("parallel.device_memory_gib");
  const double total_gib = double(p.total_bytes) / double(int64_t(1) << 30);
  p.fits = total_gib <= p.device_gib;
  char verdict[256];
  if (p.fits)
    std::snprintf(verdict, sizeof verdict, "fits: %.2f GiB of %.0f GiB per rank (%.1f%%)\n", total_gib, p.device_gib,
                  100.0 * total_gib / p.device_gib);
  else
    std::snprintf(verdict, sizeof verdict,
                  "warning: the estimate (%.2f GiB per rank) exceeds parallel.device_memory_gib = %.0f GiB: raise "
                  "parallel.dp_shard or parallel.sp, use model.activation_checkpointing = full, or shorten the "
                  "micro-batch\n",
                  total_gib, p.device_gib);
  p.text = cat(cfg.summary(seq), "\n", "parameters by term:\n", cfg.param_terms(), plan.table(), verdict);
  return p;
}

int run_plan_command(const std::vector<std::string>& args, int rank) {
  TEMPER_CHECK(!args.empty(), "plan: name a deck file (temper plan DECK [--section.key=value ...])");
  std::vector<std::string> overrides(args.begin() + 1, args.end());
  const Deck deck = Deck::load(args[0], overrides);
  auto tok = tokenizer_from_deck(deck);
  const ModelConfig cfg = model_config_from_deck(deck, tok->vocab_size());
  const DeckPlan p = plan_from_deck(deck, cfg);
  if (rank == 0) {
    std::cout << p.text;
    if (!p.fits) std::cerr << "temper plan: warning: " << args[0] << " does not fit the device memory\n";
  }
  return 0;
}

}  // namespace temper
