#include "train/phases.h"

#include <iostream>

#include "core/log.h"
#include "data/synthetic_tasks.h"
#include "deck/deck.h"
#include "train/run_context.h"
#include "train/sft_phase.h"

namespace temper {

int run_phase(const std::string& phase, RunContext& ctx) {
  if (phase == "sft") return run_sft_phase(ctx);
  fail("phase '", phase, "' is not implemented in this build yet (available: sft, toy)");
}

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
}  // namespace

int run_subcommand(const CommandLine& cl, int rank) {
  if (cl.subcommand == "generate-tasks") return generate_tasks(cl.args, rank);
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
