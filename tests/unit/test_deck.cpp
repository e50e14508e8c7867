// Tests of the input deck: defaults, precedence, the resolved echo, every
// class of bad input (message names file, line, key, suggestion), help, CLI.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include "deck/deck.h"

namespace temper {
namespace {

// The message of the temper::Error that `f` throws ("" when it throws none).
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Parsing `text` as "q.deck" fails with a message holding every piece.
void expect_deck_error(const std::string& text, const std::vector<std::string>& pieces,
                       const std::vector<std::string>& overrides = {}) {
  const std::string msg = error_of([&] { Deck::parse(text, "q.deck", overrides); });
  ASSERT_FALSE(msg.empty()) << "no error for:\n" << text;
  for (const auto& p : pieces) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
}

const std::string kToy = "[run]\nphase = toy\n";

TEST(Deck, DefaultsComeFromTheSchema) {
  const Deck d = Deck::parse(kToy, "q.deck");
  EXPECT_EQ(d.get_string("run.phase"), "toy");
  EXPECT_FALSE(d.is_default("run.phase"));
  EXPECT_EQ(d.get_int("model.d_model"), 256);
  EXPECT_DOUBLE_EQ(d.get_float("sft.lr"), 3e-4);
  EXPECT_DOUBLE_EQ(d.get_float("model.norm_eps"), 1e-6);
  EXPECT_TRUE(d.get_bool("model.tie_embeddings"));
  EXPECT_FALSE(d.get_bool("model.qk_norm"));
  EXPECT_TRUE(d.get_list("data.train_files").empty());
  EXPECT_EQ(d.get_string("checkpoint.dir"), "out/checkpoints");
  for (const auto& k : deck_schema()) {
    if (k.full_name() == "run.phase") continue;
    EXPECT_TRUE(d.is_default(k.full_name())) << k.full_name();
    EXPECT_EQ(d.where(k.full_name()), "default") << k.full_name();
  }
  EXPECT_EQ(d.source(), "q.deck");
}

TEST(Deck, EveryDefaultSatisfiesItsOwnRange) {
  const Deck d = Deck::defaults();
  EXPECT_EQ(d.source(), "<defaults>");
  for (const auto& k : deck_schema()) {
    if (k.type == KeyType::Int) {
      EXPECT_TRUE(k.range.contains(double(d.get_int(k.full_name())))) << k.full_name();
    } else if (k.type == KeyType::Float) {
      EXPECT_TRUE(k.range.contains(d.get_float(k.full_name()))) << k.full_name();
    } else if (!k.choices.empty()) {
      const std::string v = d.get_string(k.full_name());
      EXPECT_NE(std::find(k.choices.begin(), k.choices.end(), v), k.choices.end()) << k.full_name();
    }
  }
}

TEST(Deck, OverrideBeatsFileBeatsDefault) {
  const std::string text = "[sft]\nlr = 1e-4\nsteps = 50\n[model]\nn_layers = 2\n";
  const Deck d = Deck::parse(text, "q.deck", {"--sft.lr=2e-4", "--model.n_layers=3", "--model.n_layers=6"});
  EXPECT_DOUBLE_EQ(d.get_float("sft.lr"), 2e-4);
  EXPECT_EQ(d.origin("sft.lr"), Deck::Origin::Override);
  EXPECT_EQ(d.where("sft.lr"), "override --sft.lr=2e-4");
  EXPECT_EQ(d.get_int("model.n_layers"), 6);  // the later override wins
  EXPECT_EQ(d.get_int("sft.steps"), 50);
  EXPECT_EQ(d.origin("sft.steps"), Deck::Origin::File);
  EXPECT_EQ(d.where("sft.steps"), "q.deck:3");
  EXPECT_EQ(d.get_int("sft.warmup_steps"), 100);
  EXPECT_TRUE(d.is_default("sft.warmup_steps"));
}

TEST(Deck, ValueSyntax) {
  const std::string text =
      "# comment\r\n; another\r\n[run]   # trailing comment\r\n  phase=toy\r\n"
      "output_dir = \"my out # dir\"   # quoted keeps '#'\n"
      "[data]\ntrain_files = a.jsonl , b.jsonl,c.jsonl  # three\neval_file = x#y\n"
      "[model]\nqk_norm = YES\nqkv_bias = off\ntie_embeddings = 0\n"
      "[sft]\nstage_files = a+b, c\nstage_seq_len = 128, 256\nstage_steps = 10,30\n";
  const Deck d = Deck::parse(text, "q.deck");
  EXPECT_EQ(d.get_string("run.phase"), "toy");
  EXPECT_EQ(d.get_string("run.output_dir"), "my out # dir");
  EXPECT_EQ(d.get_string("checkpoint.dir"), "my out # dir/checkpoints");
  EXPECT_EQ(d.get_list("data.train_files"), (std::vector<std::string>{"a.jsonl", "b.jsonl", "c.jsonl"}));
  EXPECT_EQ(d.get_string("data.eval_file"), "x#y");  // '#' not after a space is text
  EXPECT_TRUE(d.get_bool("model.qk_norm"));
  EXPECT_FALSE(d.get_bool("model.qkv_bias"));
  EXPECT_FALSE(d.get_bool("model.tie_embeddings"));
  EXPECT_EQ(d.get_int_list("sft.stage_seq_len"), (std::vector<int64_t>{128, 256}));
  EXPECT_EQ(d.get_int("sft.steps"), 40);  // derived: sum of stage_steps
  EXPECT_NE(d.where("sft.steps").find("sum of sft.stage_steps"), std::string::npos);
  const auto stages = sft_stages(d);
  ASSERT_EQ(stages.size(), 2u);
  EXPECT_EQ(stages[0].files, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(stages[1].files, (std::vector<std::string>{"c"}));
  EXPECT_EQ(stages[1].seq_len, 256);
  EXPECT_EQ(stages[0].steps, 10);
}

TEST(Deck, StagesWithoutStepsSplitSftStepsEvenly) {
  const Deck d = Deck::parse("[sft]\nsteps = 10\nstage_files = a, b, c\n[data]\nseq_len = 64\n", "q.deck");
  const auto st = sft_stages(d);
  ASSERT_EQ(st.size(), 3u);
  EXPECT_EQ(st[0].steps + st[1].steps + st[2].steps, 10);
  EXPECT_EQ(st[0].steps, 4);
  EXPECT_EQ(st[2].steps, 3);
  EXPECT_EQ(st[2].seq_len, 64);
  const auto one = sft_stages(Deck::parse("[data]\ntrain_files = x.jsonl\n", "q.deck"));
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].files, std::vector<std::string>{"x.jsonl"});
  EXPECT_EQ(one[0].steps, 1000);
}

TEST(Deck, TaskMix) {
  const Deck d = Deck::parse("[rl]\ntask_mix = math:0.5, code:0.25,if:0.25\n", "q.deck");
  const auto mix = rl_task_mix(d);
  ASSERT_EQ(mix.size(), 3u);
  EXPECT_EQ(mix[1].first, "code");
  EXPECT_DOUBLE_EQ(mix[1].second, 0.25);
  expect_deck_error("[rl]\ntask_mix = math:0.5, code\n", {"q.deck:2", "rl.task_mix", "'code'", "task:weight"});
  expect_deck_error("[rl]\ntask_mix = math:-1\n", {"rl.task_mix", "'-1'"});
  expect_deck_error("[rl]\ntask_mix = math:1, math:2\n", {"rl.task_mix", "twice"});
}

TEST(Deck, ResolvedTextRoundTrips) {
  const std::string text =
      "[run]\nphase = rl\noutput_dir = \" padded \"\n[data]\ntrain_files = a.jsonl,b.jsonl\n"
      "eval_file = e#1.jsonl\n[rl]\ntask_mix = math:0.5,code:0.5\nprompts_file = p.jsonl\n"
      "[sft]\nstage_files = a+b, c\nstage_steps = 3, 4\nlr = 0.0001234567\n";
  const Deck a = Deck::parse(text, "q.deck", {"--model.d_model=512", "--data.eval_file=has \"quote\""});
  const std::string echo = a.resolved_text();
  EXPECT_NE(echo.find("q.deck:3"), std::string::npos);
  EXPECT_NE(echo.find("override --model.d_model=512"), std::string::npos);
  const Deck b = Deck::parse(echo, "echo.deck");
  for (const auto& k : deck_schema()) {
    EXPECT_EQ(a.get_string(k.full_name()), b.get_string(k.full_name())) << k.full_name();
    EXPECT_EQ(b.origin(k.full_name()), Deck::Origin::File) << k.full_name();
  }
  EXPECT_DOUBLE_EQ(b.get_float("sft.lr"), 0.0001234567);
  EXPECT_EQ(b.get_string("run.output_dir"), " padded ");
  // and the echo of the echo is the same text, except for the sources
  const Deck c = Deck::parse(Deck::defaults().resolved_text(), "d.deck");
  for (const auto& k : deck_schema())
    EXPECT_EQ(c.get_string(k.full_name()), Deck::defaults().get_string(k.full_name()));
}

TEST(Deck, LoadReadsAFile) {
  const std::string path = ::testing::TempDir() + "/deck_load_test.deck";
  std::ofstream(path) << "[toy]\nsteps = 7\n";
  const Deck d = Deck::load(path, {"--toy.lr=0.5"});
  EXPECT_EQ(d.get_int("toy.steps"), 7);
  EXPECT_DOUBLE_EQ(d.get_float("toy.lr"), 0.5);
  EXPECT_EQ(d.where("toy.steps"), path + ":2");
  std::remove(path.c_str());
}

TEST(DeckErrors, Files) {
  const std::string dir = ::testing::TempDir();
  const std::string missing = dir + "/no_such_deck.deck";
  std::string msg = error_of([&] { Deck::load(missing); });
  EXPECT_NE(msg.find(missing), std::string::npos) << msg;
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
  msg = error_of([&] { Deck::load(dir); });
  EXPECT_NE(msg.find("is a directory"), std::string::npos) << msg;
  const std::string empty = dir + "/empty.deck";
  std::ofstream(empty) << "\n  # only a comment\n\n";
  msg = error_of([&] { Deck::load(empty); });
  EXPECT_NE(msg.find(empty), std::string::npos) << msg;
  EXPECT_NE(msg.find("is empty"), std::string::npos) << msg;
  std::remove(empty.c_str());
  expect_deck_error("", {"q.deck", "is empty"});
  if (geteuid() != 0) {  // root reads anything
    const std::string locked = dir + "/locked.deck";
    std::ofstream(locked) << "[run]\n";
    std::filesystem::permissions(locked, std::filesystem::perms::none);
    msg = error_of([&] { Deck::load(locked); });
    EXPECT_NE(msg.find("cannot be read"), std::string::npos) << msg;
    std::remove(locked.c_str());
  }
}

TEST(DeckErrors, Structure) {
  expect_deck_error("[run]\nphase = toy\n\n[sft]\nsteps = 3\nlerning_rate = 1e-4\n",
                    {"q.deck:6: unknown key 'sft.lerning_rate' (did you mean 'sft.lr'?)"});
  expect_deck_error("[model]\nd_modle = 3\n", {"q.deck:2", "'model.d_modle'", "did you mean 'model.d_model'"});
  expect_deck_error("[model]\nzzzzzzzz = 3\n", {"q.deck:2", "'model.zzzzzzzz'", "temper --help"});
  expect_deck_error("[sft]\ntemperature = 1\n", {"q.deck:2", "did you mean 'rl.temperature'"});
  expect_deck_error("[run]\n[stf]\nlr = 1\n", {"q.deck:2", "unknown section '[stf]'", "did you mean '[sft]'"});
  expect_deck_error("lr = 1\n[sft]\n", {"q.deck:1", "'lr'", "outside any section", "[sft]"});
  expect_deck_error("[sft]\nlr = 1e-4\nsteps = 3\nlr = 2e-4\n",
                    {"q.deck:4", "duplicate key 'sft.lr'", "line 2", "line 4"});
  expect_deck_error("[sft]\n[rl]\n[sft]\nlr = 1e-4\n[sft]\nlr = 2e-4\n", {"q.deck:6", "'sft.lr'", "line 4"});
  expect_deck_error("[sft\nlr = 1\n", {"q.deck:1", "malformed section header"});
  expect_deck_error("[sft]\nlr 1e-4\n", {"q.deck:2", "expected 'key = value'"});
  expect_deck_error("[sft]\n = 3\n", {"q.deck:2", "missing key"});
  expect_deck_error("[run]\noutput_dir = \"abc\n", {"q.deck:2", "unterminated quote", "run.output_dir"});
}

TEST(DeckErrors, Values) {
  expect_deck_error("[sft]\nsteps = abc\n", {"q.deck:2", "'sft.steps' = 'abc' is not an integer"});
  expect_deck_error("[sft]\nsteps = 1.5\n", {"q.deck:2", "'sft.steps'", "not an integer"});
  expect_deck_error("[sft]\nsteps =\n", {"q.deck:2", "'sft.steps' has no value"});
  expect_deck_error("[sft]\nlr = 1e-4x\n", {"q.deck:2", "'sft.lr'", "not a number"});
  expect_deck_error("[sft]\nlr = nan\n", {"q.deck:2", "'sft.lr'", "finite"});
  expect_deck_error("[model]\nqk_norm = maybe\n", {"q.deck:2", "'model.qk_norm'", "bool"});
  expect_deck_error("[model]\nd_model = -8\n", {"q.deck:2", "'model.d_model' = -8 is out of range", "> 0"});
  expect_deck_error("[sft]\nadam_eps = 0\n", {"q.deck:2", "'sft.adam_eps'", "> 0"});
  expect_deck_error("[sft]\nadam_eps = -1e-8\n", {"q.deck:2", "'sft.adam_eps'", "out of range"});
  expect_deck_error("[rl]\ntop_p = 1.5\n", {"q.deck:2", "'rl.top_p'", "in (0, 1]"});
  expect_deck_error("[run]\nphase = sfft\n", {"q.deck:2", "'run.phase' = 'sfft' is not one of sft|rl|eval|toy",
                                              "did you mean 'sft'"});
  expect_deck_error("[sft]\nstage_files = a,b\nstage_seq_len = 64, x\n",
                    {"q.deck:3", "'sft.stage_seq_len'", "'x' is not an integer"});
  expect_deck_error("[data]\ntrain_files = a,,b\n", {"q.deck:2", "'data.train_files'", "empty element"});
}

TEST(DeckErrors, AcrossKeys) {
  expect_deck_error("[model]\nd_model = 250\nn_heads = 4\n",
                    {"q.deck", "model.d_model = 250 (q.deck:2)", "model.n_heads = 4 (q.deck:3)"});
  expect_deck_error("[model]\nn_kv_heads = 3\n", {"model.n_kv_heads = 3 (q.deck:2)", "model.n_heads"});
  expect_deck_error("[sft]\nstage_files = a, b\nstage_steps = 1, 2, 3\n",
                    {"sft.stage_steps", "q.deck:3", "3 entries", "2 stages"});
  expect_deck_error("[sft]\nsteps = 5\nstage_files = a, b\nstage_steps = 1, 2\n", {"sft.steps = 5 (q.deck:2)"});
  expect_deck_error("[sft]\nstage_steps = 1, 2\n", {"sft.stage_files is empty", "q.deck:2"});
  expect_deck_error("[sft]\nmin_lr = 0.1\nlr = 0.01\n", {"sft.min_lr = 0.1 (q.deck:2)", "sft.lr"});
  expect_deck_error("[run]\nwalltime = 100\nwalltime_margin = 100\n", {"run.walltime_margin", "q.deck:3"});
  expect_deck_error("[rl]\nfilter = on\nfilter_low = 0.6\nfilter_high = 0.5\n", {"rl.filter_low", "q.deck:3"});
}

TEST(DeckErrors, Overrides) {
  expect_deck_error(kToy, {"'--foo'", "expected --section.key=value"}, {"--foo"});
  expect_deck_error(kToy, {"sft.lr=1", "expected --section.key=value"}, {"sft.lr=1"});
  expect_deck_error(kToy, {"'--sft.lerning_rate=1'", "unknown key 'sft.lerning_rate' (did you mean 'sft.lr'?)"},
                    {"--sft.lerning_rate=1"});
  expect_deck_error(kToy, {"'--sft.steps=abc'", "'sft.steps' = 'abc' is not an integer"}, {"--sft.steps=abc"});
  expect_deck_error(kToy, {"'--lr=1'", "section.key"}, {"--lr=1"});
}

TEST(Deck, GettersRejectUndeclaredKeysAndWrongTypes) {
  const Deck d = Deck::defaults();
  EXPECT_NE(error_of([&] { d.get_int("sft.lerning_rate"); }).find("did you mean 'sft.lr'"), std::string::npos);
  EXPECT_NE(error_of([&] { d.get_float("nope"); }).find("'nope'"), std::string::npos);
  EXPECT_NE(error_of([&] { d.get_int("sft.lr"); }).find("float"), std::string::npos);
  EXPECT_FALSE(error_of([&] { d.get_bool("sft.steps"); }).empty());
  EXPECT_FALSE(error_of([&] { d.get_int_list("data.train_files"); }).empty());
  EXPECT_EQ(d.get_string("sft.steps"), "1000");  // any type reads as its canonical text
}

TEST(Deck, HelpListsEveryKey) {
  const std::string help = deck_help();
  for (const auto& s : deck_sections()) EXPECT_NE(help.find("[" + s.name + "]"), std::string::npos) << s.name;
  for (const auto& k : deck_schema()) {
    EXPECT_NE(help.find("--" + k.full_name() + " "), std::string::npos) << k.full_name();
    EXPECT_FALSE(k.help.empty()) << k.full_name();
  }
  EXPECT_NE(help.find("one of sft|rl|eval|toy"), std::string::npos);
  EXPECT_NE(help.find("(=3e-4)"), std::string::npos);
}

TEST(Deck, SchemaDeclaresEveryKeyOnce) {
  std::set<std::string> seen;
  for (const auto& k : deck_schema()) {
    EXPECT_TRUE(seen.insert(k.full_name()).second) << k.full_name();
    EXPECT_TRUE(deck_has_section(k.section)) << k.full_name();
    EXPECT_EQ(deck_key_index(k.full_name()) >= 0, true);
  }
  for (const char* key : {"run.walltime_margin", "model.init_std", "parallel.allow_cross_node", "data.overlong",
                          "sft.eval_max_new_tokens", "rl.dump_every", "toy.dim", "checkpoint.resume", "log.metrics"})
    EXPECT_GE(deck_key_index(key), 0) << key;
  EXPECT_EQ(deck_key_index("sft.nothing"), -1);
}

TEST(Schema, RangesNumbersAndSuggestions) {
  Range r;
  r.has_min = true;
  r.min_open = true;
  EXPECT_FALSE(r.contains(0.0));
  EXPECT_TRUE(r.contains(1e-9));
  EXPECT_EQ(r.describe(), "> 0");
  r.has_max = true;
  r.max = 1;
  EXPECT_TRUE(r.contains(1.0));
  EXPECT_FALSE(r.contains(1.5));
  EXPECT_EQ(r.describe(), "in (0, 1]");
  EXPECT_EQ(format_number(3e-4), "0.0003");
  EXPECT_EQ(format_number(1e-8), "1e-8");
  EXPECT_EQ(format_number(10000), "10000");
  EXPECT_EQ(format_number(0.1), "0.1");
  EXPECT_EQ(format_number(1e20), "1e20");
  EXPECT_EQ(std::strtod(format_number(0.0001234567).c_str(), nullptr), 0.0001234567);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("LR", "lr"), 0u);
  EXPECT_EQ(suggest_word("sfft", {"sft", "rl", "toy"}), "sft");
  EXPECT_EQ(suggest_word("zzzzzz", {"sft", "rl"}), "");
  EXPECT_EQ(suggest_key("rl.temprature"), "rl.temperature");
  EXPECT_EQ(suggest_key("model.intermediate_size"), "model.ffn_dim");  // an alias
}

TEST(CommandLine, DeckOverridesAndSubcommands) {
  CommandLine c = parse_command_line({"run.deck", "--sft.lr=1e-4", "--model.d_model=64"});
  EXPECT_EQ(c.deck_path, "run.deck");
  EXPECT_EQ(c.overrides, (std::vector<std::string>{"--sft.lr=1e-4", "--model.d_model=64"}));
  EXPECT_FALSE(c.help);
  c = parse_command_line({"--help"});
  EXPECT_TRUE(c.help);
  c = parse_command_line({"--version"});
  EXPECT_TRUE(c.version);
  c = parse_command_line({"print-deck", "ckpt", "--out=x"});
  EXPECT_EQ(c.subcommand, "print-deck");
  EXPECT_EQ(c.args, (std::vector<std::string>{"ckpt", "--out=x"}));
  char a0[] = "temper", a1[] = "x.deck", a2[] = "--toy.steps=3";
  char* argv[] = {a0, a1, a2};
  c = parse_command_line(3, argv);
  EXPECT_EQ(c.deck_path, "x.deck");
  EXPECT_EQ(c.overrides.size(), 1u);

  auto err = [](std::vector<std::string> a) { return error_of([&] { parse_command_line(a); }); };
  EXPECT_NE(err({}).find("no deck file"), std::string::npos);
  EXPECT_NE(err({"a.deck", "--sft.lr"}).find("'--sft.lr'"), std::string::npos);
  EXPECT_NE(err({"a.deck", "b.deck"}).find("two deck files"), std::string::npos);
  EXPECT_NE(err({"-x", "a.deck"}).find("unknown option '-x'"), std::string::npos);
  EXPECT_NE(err({"prnt-deck"}).find("did you mean 'print-deck'"), std::string::npos);
}

// Issue 17 finding 11: a NUL byte is reported with its line and column (it used to cut
// the message short), CR-only line ends are line ends (the deck used to be "empty").
TEST(Deck, NulByteIsNamedNotCutShort) {
  const std::string text = std::string("[run]\nphase = toy") + '\0' + "junk\n";
  const std::string msg = error_of([&] { Deck::parse(text, "q.deck"); });
  EXPECT_NE(msg.find("q.deck:2: the line holds a NUL byte (column 12)"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\0'), std::string::npos);
}

TEST(Deck, CrOnlyAndMixedLineEndsAreLineEnds) {
  const Deck cr = Deck::parse("# old Mac editor\r[run]\rphase = toy\r[toy]\rsteps = 7\r", "q.deck");
  EXPECT_EQ(cr.get_int("toy.steps"), 7);
  EXPECT_EQ(cr.where("toy.steps"), "q.deck:5");
  const Deck mixed = Deck::parse("[run]\r\nphase = toy\n[toy]\rsteps = 9\r\n", "q.deck");
  EXPECT_EQ(mixed.get_int("toy.steps"), 9);
  EXPECT_EQ(mixed.where("toy.steps"), "q.deck:4");
  expect_deck_error("[run]\rphase = toy\r[toy]\rstep = 3\r", {"q.deck:4:", "toy.step"});
}

// Issue 17 finding 9: sft.steps = 0 used to crash (SIGSEGV) after the evaluation.
TEST(Deck, SftNeedsAtLeastOneStep) {
  expect_deck_error("[run]\nphase = sft\n[sft]\nsteps = 0\n", {"q.deck:4", "sft.steps = 0", "run.phase = eval"});
  expect_deck_error("[run]\nphase = sft\n", {"sft.steps = 0", "override --sft.steps=0"}, {"--sft.steps=0"});
  expect_deck_error("[run]\nphase = sft\n[sft]\nstage_files = a, b\nstage_steps = 0, 0\n", {"sft.steps = 0"});
  EXPECT_NO_THROW(Deck::parse("[run]\nphase = toy\n[sft]\nsteps = 0\n", "q.deck"));  // not an SFT run
}

}  // namespace
}  // namespace temper
