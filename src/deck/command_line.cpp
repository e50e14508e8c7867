// The temper command line: a deck and its overrides, --help/--version, or a
// subcommand with its own arguments.
#include <filesystem>

#include "core/error.h"
#include "deck/deck.h"

namespace temper {

const std::vector<std::string>& known_subcommands() {
  static const std::vector<std::string> words = {"generate-tasks", "print-deck", "export", "plan", "upscale", "help"};
  return words;
}

std::string usage_text() {
  std::string s =
      "usage: temper [--help] [--version] DECK [--section.key=value ...]\n"
      "       temper SUBCOMMAND [args ...]\n"
      "subcommands:";
  for (const auto& w : known_subcommands()) s += " " + w;
  return s + "\n"
             "  temper export --checkpoint PATH|DIR --out DIR [--dtype bf16|f32] [--tokenizer DIR] [--max-shard-mb N]\n"
             "      writes a Hugging Face model directory (config.json, safetensors, tokenizer files)\n"
             "  temper plan DECK [--section.key=value ...]\n"
             "      prints the per-rank memory plan of the deck's training run (nothing is trained)\n"
             "  temper upscale --checkpoint PATH|DIR --out DIR [--width-factor F] [--head-factor H]\n"
             "      [--signal-head-factor M] [--untie-embeddings] [--depth N | --insert-layers i,j]\n"
             "      a wider (hypercloned) and/or deeper (identity layers) model computing the same function\n";
}

CommandLine parse_command_line(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return parse_command_line(args);
}

CommandLine parse_command_line(const std::vector<std::string>& args) {
  CommandLine cl;
  const auto& subs = known_subcommands();
  if (!args.empty()) {
    for (const auto& w : subs) {
      if (args[0] != w) continue;
      cl.subcommand = w;
      cl.args.assign(args.begin() + 1, args.end());
      return cl;
    }
  }
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") {
      cl.help = true;
    } else if (a == "--version" || a == "-V") {
      cl.version = true;
    } else if (a.rfind("--", 0) == 0) {
      const size_t eq = a.find('=');
      TEMPER_CHECK(eq != std::string::npos && eq > 2, "command line: '", a,
                   "' is not an override of the form --section.key=value\n", usage_text());
      cl.overrides.push_back(a);
    } else if (a.size() > 1 && a[0] == '-') {
      fail("command line: unknown option '", a, "'\n", usage_text());
    } else if (cl.deck_path.empty()) {
      // A word that is not a file but is close to a subcommand is most likely a typo of it.
      std::error_code ec;
      if (!std::filesystem::exists(a, ec) && a.find_first_of("./") == std::string::npos) {
        const std::string s = suggest_word(a, subs);
        TEMPER_CHECK(s.empty(), "command line: '", a, "' is neither a deck file nor a subcommand (did you mean '",
                     s, "'?)");
      }
      cl.deck_path = a;
    } else {
      fail("command line: two deck files given ('", cl.deck_path, "' and '", a,
           "'); give one deck and put changes in --section.key=value overrides");
    }
  }
  TEMPER_CHECK(cl.help || cl.version || !cl.deck_path.empty(), "command line: no deck file given\n",
               usage_text());
  return cl;
}

}  // namespace temper
