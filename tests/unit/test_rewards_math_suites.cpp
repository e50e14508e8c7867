// The math verifier against the references' own test cases (tests/fixtures/math/):
// Math-Verify's test tables, the Hendrycks MATH equivalence tests, cases written from
// the prm800k grader's rules, and the false positives/negatives of issue 25. Prints
// the confusion counts per suite; fails on any false positive (temper rewards what the
// reference refuses) and when agreement drops under the targets.
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "rl/rewards/reward.h"

using namespace temper;
using nlohmann::json;

namespace {

struct Tally {
  int tp = 0, tn = 0, fp = 0, fn = 0, deviations = 0;
  int total() const { return tp + tn + fp + fn + deviations; }
  double agreement() const { return total() ? double(tp + tn) / total() : 1; }
};

std::vector<json> load(const std::string& name) {
  std::ifstream in(std::string(TEMPER_SOURCE_DIR) + "/tests/fixtures/math/" + name);
  EXPECT_TRUE(in.good()) << name;
  std::vector<json> out;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

// Math-Verify's harness: compare_strings(gold, pred, match_types, precision, ...) parses both
// sides from free text with the same extraction; temper's fallbacks play that role.
MathOptions options_for(const json& c) {
  MathOptions o;
  std::string match = c.value("match", "answer");
  o.use_boxed = match != "expr";
  if (match == "latex") o.fallback = MathFallback::Latex;
  if (match == "expr") o.fallback = MathFallback::Number;
  if (match == "latex+expr" || match == "default") o.fallback = MathFallback::Both;
  o.float_rounding = c.value("precision", 6);
  o.set_relation = c.value("allow_set_relation_comp", match == "answer");
  return o;
}

bool temper_verdict(const json& c, std::string* why) {
  MathOptions o = options_for(c);
  std::string gold = c["gold"], pred = c["pred"];
  if (c.value("match", "answer") != "answer") {  // free text: extract both sides first
    auto g = extract_math_answer(gold, o), p = extract_math_answer(pred, o);
    if (!g || !p) {
      *why = std::string("no answer extracted from the ") + (g ? "prediction" : "gold");
      return false;
    }
    gold = *g;
    pred = *p;
  }
  MathJudgement j = judge_math_answers(gold, pred, o);
  *why = "'" + gold + "' vs '" + pred + "': " + j.why;
  return j.equal;
}

Tally run_suite(const std::string& file, bool print_disagreements) {
  Tally t;
  for (const json& c : load(file)) {
    std::string why;
    bool got = temper_verdict(c, &why);
    bool want = c["expected"].get<int>() == 1;
    if (got != want && c.contains("deviation")) {
      ++t.deviations;
      continue;
    }
    if (got && want) ++t.tp;
    if (!got && !want) ++t.tn;
    if (got && !want) ++t.fp;
    if (!got && want) ++t.fn;
    if (got != want && print_disagreements)
      std::printf("  %s %s\n    %s\n", got ? "FALSE POSITIVE" : "false negative", c["source"].get<std::string>().c_str(),
                  why.substr(0, 400).c_str());
  }
  std::printf("%-22s cases %3d  agree %3d (%.1f %%)  TP %3d TN %3d  FP %d  FN %d  deliberate deviations %d\n",
              file.c_str(), t.total(), t.tp + t.tn, 100 * t.agreement(), t.tp, t.tn, t.fp, t.fn, t.deviations);
  return t;
}

TEST(RewardsMathSuites, MathVerifyTests) {
  Tally t = run_suite("math_verify.jsonl", true);
  EXPECT_EQ(t.fp, 0);
  EXPECT_GE(t.agreement(), 0.95);
}

TEST(RewardsMathSuites, HendrycksEquivalenceTests) {
  Tally t = run_suite("hendrycks_math.jsonl", true);
  EXPECT_EQ(t.fp, 0);
  EXPECT_EQ(t.fn, 0);
}

TEST(RewardsMathSuites, Prm800kGraderRules) {
  Tally t = run_suite("prm800k_grader.jsonl", true);
  EXPECT_EQ(t.fp, 0);
  EXPECT_EQ(t.fn, 0);
}

TEST(RewardsMathSuites, Issue25Cases) {
  Tally t = run_suite("issue25.jsonl", true);
  EXPECT_EQ(t.fp, 0);
  EXPECT_EQ(t.fn, 0);
}

}  // namespace
