// Math reward: extract the final answer (math_extract.cpp), parse it and the
// reference into expression trees (math_parse.cpp) and decide equivalence
// (math_equal.cpp). Model text is only ever parsed, never evaluated as code.
#include <algorithm>
#include <cctype>

#include "core/error.h"
#include "rl/rewards/math_expr.h"
#include "rl/rewards/math_extract.h"
#include "rl/rewards/reward.h"

namespace temper {
namespace {

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

}  // namespace

std::string normalize_math_answer(const std::string& answer) {
  auto r = mathx::parse_answer(answer);
  return r.expr ? mathx::to_string(*r.expr) : trim(answer);
}

MathJudgement judge_math_answers(const std::string& gold, const std::string& pred, const MathOptions& opt) {
  MathJudgement j;
  // A side that does not parse but is a chain "a = b = c": its last part (Math-Verify's fallback)
  auto parse = [](const std::string& s) {
    auto r = mathx::parse_answer(s);
    size_t eq = s.rfind('=');
    if (!r.expr && eq != std::string::npos && s.find('=') != eq && s.find(',') == std::string::npos &&
        s.find(';') == std::string::npos) {
      auto last = mathx::parse_answer(s.substr(eq + 1));
      if (last.expr) return last;
    }
    return r;
  };
  auto g = parse(gold), p = parse(pred);
  if (g.expr && p.expr) {
    mathx::CompareOptions co;
    co.float_rounding = opt.float_rounding;
    co.set_relation = opt.set_relation;
    switch (mathx::compare(*g.expr, *p.expr, co)) {
      case mathx::Cmp::Equal: j.equal = true; break;
      case mathx::Cmp::Unequal: break;
      case mathx::Cmp::Undecided: j.undecided = true; break;
    }
    j.why = mathx::to_string(*p.expr) + (j.equal ? " == " : j.undecided ? " ?= " : " != ") + mathx::to_string(*g.expr);
    return j;
  }
  // One side does not parse: only the same text (spaces aside) counts.
  auto squash = [](std::string s) {
    s.erase(std::remove_if(s.begin(), s.end(), [](char c) { return is_space(c); }), s.end());
    return s;
  };
  j.equal = !squash(gold).empty() && squash(gold) == squash(pred);
  j.undecided = !j.equal;
  j.why = "unparsed (" + (g.expr ? "answer: " + p.error : "reference: " + g.error) + "), compared as text";
  return j;
}

bool math_answers_equal(const std::string& a, const std::string& b) { return judge_math_answers(a, b).equal; }

RewardResult math_reward(const std::string& response, const nlohmann::json& ref, const MathOptions& opt) {
  // The reference answers: a string/number, an array of them, or {"answer": ...}.
  const nlohmann::json* ans = &ref;
  if (ref.is_object()) {
    TEMPER_CHECK(ref.contains("answer"), "math reward: the prompt record has no \"answer\" field");
    ans = &ref["answer"];
  }
  std::vector<std::string> refs;
  auto add = [&](const nlohmann::json& j) {
    TEMPER_CHECK(j.is_string() || j.is_number(), "math reward: \"answer\" must be a string, a number or an array of them, got ",
                 j.dump());
    std::string r = j.is_string() ? j.get<std::string>() : j.dump();
    bool found = false;
    if (auto boxed = mathx::boxed_answer(r, &found)) r = *boxed;  // references written with \boxed
    else if (size_t p = r.rfind("####"); p != std::string::npos) r = trim(r.substr(p + 4));  // GSM8K style
    refs.push_back(r);
  };
  if (ans->is_array()) {
    for (const auto& j : *ans) add(j);
  } else {
    add(*ans);
  }
  TEMPER_CHECK(!refs.empty(), "math reward: \"answer\" is an empty array");

  RewardResult res;
  auto body = strip_think(response);
  if (!body) {
    res.verdict = Verdict::Unparsable;
    res.detail = "unterminated <think> block";
    return res;
  }
  auto got = extract_math_answer(*body, opt);
  if (!got) {
    res.verdict = Verdict::Unparsable;
    res.detail = "no final answer";
    return res;
  }
  std::string why;
  for (const auto& r : refs) {
    MathJudgement j = judge_math_answers(r, *got, opt);
    if (j.equal) {
      res.reward = 1;
      res.verdict = Verdict::Correct;
      res.detail = cat("answer '", *got, "' matches '", r, "'");
      return res;
    }
    if (why.empty()) why = j.why;
  }
  res.verdict = Verdict::Wrong;
  res.detail = cat("answer '", *got, "' != '", refs[0], "' (", why, ")");
  return res;
}

}  // namespace temper
