// The verifiers on the public benchmark files (see ../shared/benchmarks/README.md):
// GSM8K's final numbers in the forms models write them, MATH-500's reference answers
// rewritten the ways models write them (and perturbed), IFEval's instructions all
// mapped to temper's checks. The files are found through $TEMPER_BENCHMARKS_DIR,
// default <repo>/../shared/benchmarks; without them each test skips and says so.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>

#include "rl/rewards/reward.h"

using namespace temper;
using nlohmann::json;

namespace {

std::string bench_dir() {
  const char* env = std::getenv("TEMPER_BENCHMARKS_DIR");
  return env && *env ? env : std::string(TEMPER_SOURCE_DIR) + "/../shared/benchmarks";
}

// The records of a benchmark file, or empty (the caller skips) when it is absent.
std::vector<json> load(const std::string& name) {
  std::ifstream in(bench_dir() + "/" + name);
  std::vector<json> out;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

#define LOAD_OR_SKIP(var, name)                                                                          \
  std::vector<json> var = load(name);                                                                    \
  if (var.empty()) GTEST_SKIP() << name << " not found in " << bench_dir() << " (set TEMPER_BENCHMARKS_DIR)"

std::string with_commas(const std::string& digits) {
  std::string sign = digits[0] == '-' ? "-" : "", d = digits.substr(sign.size()), out;
  for (size_t i = 0; i < d.size(); ++i) {
    if (i > 0 && (d.size() - i) % 3 == 0) out += ',';
    out += d[i];
  }
  return sign + out;
}

TEST(RewardsBenchmarks, Gsm8kFinalNumbersInModelForms) {
  LOAD_OR_SKIP(recs, "gsm8k_test.jsonl");
  MathOptions opt;
  opt.answer_prefixes = {"The answer is", "####"};
  std::map<std::string, int> pass, wrong_accepted;
  int n = 0;
  for (const json& r : recs) {
    const std::string ref = r["answer"];
    std::string num = ref.substr(ref.rfind("####") + 4);
    num.erase(std::remove_if(num.begin(), num.end(), [](char c) { return c == ',' || c == ' '; }), num.end());
    ++n;
    const std::map<std::string, std::string> forms = {
        {"\\boxed{1,234}", "so the total is \\boxed{" + with_commas(num) + "}."},
        {"\\boxed{\\$1234}", "\\boxed{\\$" + num + "}"},
        {"$1234 (prefix)", "The answer is $" + num + "."},
        {"1234.00", "\\boxed{" + num + ".00}"},
        {"The answer is 1234.", "Step by step...\nThe answer is " + num + "."},
        {"#### 1234", "work\n#### " + with_commas(num)},
    };
    long long v = std::stoll(num);
    const std::string wrong = std::to_string(v + 1);
    for (const auto& [form, text] : forms) {
      if (math_reward(text, r, opt).verdict == Verdict::Correct) ++pass[form];
      std::string bad = std::regex_replace(text, std::regex(num == "0" ? "\\b0\\b" : with_commas(num) + "|" + num),
                                           form == "\\boxed{1,234}" ? with_commas(wrong) : wrong);
      if (math_reward(bad, r, opt).verdict == Verdict::Correct) ++wrong_accepted[form];
    }
  }
  std::printf("GSM8K test: %d final numbers\n", n);
  for (const auto& [form, k] : pass) {
    std::printf("  %-22s accepted %4d / %d, the number + 1 accepted %d\n", form.c_str(), k, n, wrong_accepted[form]);
    EXPECT_EQ(k, n) << form;
    EXPECT_EQ(wrong_accepted[form], 0) << form;
  }
}

// ---- MATH-500 ---------------------------------------------------------------------

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

// The reference rewritten the ways models write it; empty when the rewrite does not apply.
std::map<std::string, std::string> rewrites(const std::string& a) {
  std::map<std::string, std::string> out;
  out["as given"] = a;
  if (a.find("\\frac") != std::string::npos) out["\\dfrac"] = replace_all(a, "\\frac", "\\dfrac");
  if (a.find("\\dfrac") != std::string::npos) out["\\frac"] = replace_all(a, "\\dfrac", "\\frac");
  std::string nospace;  // a space between two letters stays ("\cot x" is not "\cotx")
  auto letter = [](char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; };
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != ' ' || (i > 0 && i + 1 < a.size() && letter(a[i - 1]) && letter(a[i + 1]))) nospace += a[i];
  if (nospace != a) out["no spaces"] = nospace;
  std::string spaced = std::regex_replace(a, std::regex(R"(([+=]|,(?!\\!|\d{3}(?!\d))|\\cup))"), " $1 ");
  if (spaced != a) out["spaces"] = spaced;
  if (a.find('(') != std::string::npos && a.find("\\left") == std::string::npos && a.find("\\text") == std::string::npos)
    out["\\left( \\right)"] = replace_all(replace_all(a, "(", "\\left("), ")", "\\right)");
  out["trailing period"] = a + ".";
  bool relation = a.find('=') != std::string::npos || a.find('<') != std::string::npos ||
                  a.find("\\in") != std::string::npos || a.find("\\le") != std::string::npos ||
                  a.find("\\text") != std::string::npos || a.find(',') != std::string::npos;
  if (!relation) out["x = prefix"] = "x = " + a;
  if (a.find("^\\circ") != std::string::npos) {
    std::string bare = replace_all(a, "^\\circ", "");
    out["degrees dropped"] = bare;
    out["\\degree sign"] = replace_all(a, "^\\circ", "\xC2\xB0");
    out["degrees word"] = bare + " degrees";
  }
  return out;
}

// A wrong answer near the reference: its first digit changed, a word changed, or "+1".
std::string perturb(const std::string& a) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] >= '0' && a[i] <= '9') {
      std::string b = a;
      b[i] = a[i] == '9' ? '8' : static_cast<char>(a[i] + 1);
      return b;
    }
  }
  size_t t = a.find("\\text{");
  if (t != std::string::npos) return a.substr(0, t + 6) + "z" + a.substr(t + 6);
  return a + "+1";
}

TEST(RewardsBenchmarks, Math500ReferenceRewrites) {
  LOAD_OR_SKIP(recs, "math500_test.jsonl");
  std::map<std::string, std::pair<int, int>> per_form;  // form -> (accepted, tried)
  int perturbed_accepted = 0, undecided = 0, n = 0;
  std::vector<std::string> undecided_ids;
  for (const json& r : recs) {
    const std::string ref = r["answer"];
    ++n;
    bool any_undecided = false;
    for (const auto& [form, text] : rewrites(ref)) {
      RewardResult res = math_reward("... so the answer is $\\boxed{" + text + "}$", r);
      auto& c = per_form[form];
      ++c.second;
      if (res.verdict == Verdict::Correct) {
        ++c.first;
      } else {
        std::printf("  not accepted (%s) %s: %s\n", form.c_str(), r["unique_id"].get<std::string>().c_str(),
                    res.detail.c_str());
        any_undecided = any_undecided || judge_math_answers(ref, text).undecided;
      }
    }
    std::string bad = perturb(ref);
    MathJudgement j = judge_math_answers(ref, bad);
    if (j.equal) {
      ++perturbed_accepted;
      std::printf("  PERTURBED ACCEPTED %s: %s vs %s (%s)\n", r["unique_id"].get<std::string>().c_str(), ref.c_str(),
                  bad.c_str(), j.why.c_str());
    }
    any_undecided = any_undecided || j.undecided;
    if (any_undecided) {
      ++undecided;
      undecided_ids.push_back(r["unique_id"].get<std::string>() + " (" + ref + ")");
    }
  }
  std::printf("MATH-500: %d reference answers\n", n);
  for (const auto& [form, c] : per_form) std::printf("  %-18s accepted %3d / %3d\n", form.c_str(), c.first, c.second);
  std::printf("  perturbed answers accepted: %d;  items with an undecidable comparison: %d\n", perturbed_accepted,
              undecided);
  for (const auto& id : undecided_ids) std::printf("    undecidable: %s\n", id.c_str());
  EXPECT_EQ(perturbed_accepted, 0);
  EXPECT_EQ(per_form["as given"].first, n);
  for (const auto& [form, c] : per_form) EXPECT_EQ(c.first, c.second) << form;
}

// ---- IFEval ----------------------------------------------------------------------

// Every instruction of the 541 prompts maps to a temper constraint with its kwargs, in the
// form postproc/import_benchmark.py writes ({"type": instruction_id, ...kwargs}).
TEST(RewardsBenchmarks, IfevalEveryInstructionMapsToAConstraint) {
  LOAD_OR_SKIP(recs, "ifeval_input_data.jsonl");
  std::map<std::string, int> occurring, covered;
  int instructions = 0, mapped = 0, prompts_full = 0;
  for (const json& r : recs) {
    bool all = true;
    for (size_t i = 0; i < r["instruction_id_list"].size(); ++i) {
      json c = json::object();
      for (const auto& [k, v] : r["kwargs"][i].items())
        if (!v.is_null()) c[k] = v;
      c["type"] = r["instruction_id_list"][i];
      const std::string id = c["type"];
      ++occurring[id];
      ++instructions;
      try {
        ifeval_instruction_followed("A response.", c, false);
        ifeval_instruction_followed("A response.", c, true);
        ++covered[id];
        ++mapped;
      } catch (const std::exception& e) {
        all = false;
        std::printf("  not mapped: key %d %s: %s\n", r["key"].get<int>(), id.c_str(), e.what());
      }
    }
    prompts_full += all;
  }
  std::printf("IFEval: %zu/%zu instruction types covered, %d/%d instructions, %d/%zu prompts fully\n", covered.size(),
              occurring.size(), mapped, instructions, prompts_full, recs.size());
  EXPECT_EQ(covered.size(), occurring.size());
  EXPECT_EQ(mapped, instructions);
  EXPECT_EQ(prompts_full, static_cast<int>(recs.size()));
}

}  // namespace
