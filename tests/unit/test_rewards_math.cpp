// Tests of the math reward: answer extraction, normalisation, exact comparison,
// <think> handling, and robustness to arbitrary bytes.
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "rl/rewards/reward.h"

using namespace temper;
using nlohmann::json;

namespace {

struct Case {
  const char* response;
  json answer;
  Verdict want;
};

TEST(RewardsMath, TrickyCaseTable) {
  const std::vector<Case> cases = {
      {"The answer is \\boxed{42}.", "42", Verdict::Correct},
      {"so \\boxed{\\frac{1}{2}}", "0.5", Verdict::Correct},
      {"so \\boxed{\\dfrac{1}{2}}", "1/2", Verdict::Correct},
      {"so \\boxed{\\tfrac12}", "\\frac{1}{2}", Verdict::Correct},
      {"so \\boxed{0.50}", "\\frac12", Verdict::Correct},
      {"\\boxed{\\frac{3}{4}}", "0.7", Verdict::Wrong},
      {"Total: \\boxed{1,000}", "1000", Verdict::Correct},
      {"Total: \\boxed{1{,}000}", "1000", Verdict::Correct},
      {"Total: \\boxed{1\\,000\\,000}", "1000000", Verdict::Correct},
      {"\\boxed{12\\text{ cm}}", "12", Verdict::Correct},
      {"\\boxed{12 \\mbox{apples}}", "12", Verdict::Correct},
      {"\\boxed{\\text{Monday}}", "monday", Verdict::Correct},
      {"\\boxed{-7}", "-7", Verdict::Correct},
      {"\\boxed{-7}", "7", Verdict::Wrong},
      {"\\boxed{-\\frac{3}{2}}", "-1.5", Verdict::Correct},
      {"\\boxed{\\frac{-3}{2}}", "-3/2", Verdict::Correct},
      {"\\boxed{+5}", "5", Verdict::Correct},
      {"\\boxed{5.0}", "5", Verdict::Correct},
      {"\\boxed{50\\%}", "50", Verdict::Correct},
      {"\\boxed{30^\\circ}", "30", Verdict::Correct},
      {"$\\boxed{\\left(1, 2\\right)}$", "(1,2)", Verdict::Correct},
      {"\\boxed{(0.5, 3)}", "(\\frac{1}{2}, 3)", Verdict::Correct},
      {"\\boxed{\\{1, 2\\}}", "\\{1,2\\}", Verdict::Correct},
      {"nested: \\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}", Verdict::Correct},
      {"\\boxed{\\sqrt{2}}", "\\sqrt{3}", Verdict::Wrong},
      {"first \\boxed{3} then corrected \\boxed{4}", "4", Verdict::Correct},
      {"first \\boxed{4} then corrected \\boxed{3}", "4", Verdict::Wrong},
      {"short form \\boxed 5", "5", Verdict::Correct},
      {"$x = \\boxed{x=9}$", "9", Verdict::Correct},
      {"\\boxed{\\$18.00}", "18", Verdict::Correct},
      {"\\boxed{(B)}", "B", Verdict::Correct},
      {"\\boxed{\\pi}", "\\pi", Verdict::Correct},
      {"I think it is 42.", "42", Verdict::Unparsable},
      {"truncated \\boxed{\\frac{1}{2", "0.5", Verdict::Unparsable},
      {"empty \\boxed{}", "0", Verdict::Unparsable},
      {"\\boxed{1/0}", "1/0", Verdict::Correct},  // same string, not a number: no division
      {"\\boxed{2}", json::array({"two", "2"}), Verdict::Correct},
      {"\\boxed{99999999999999999999999}", "99999999999999999999999", Verdict::Correct},
      {"\\boxed{99999999999999999999999}", "99999999999999999999998", Verdict::Wrong},
      {"<think>maybe \\boxed{1}</think> final \\boxed{2}", "2", Verdict::Correct},
      {"<think>maybe \\boxed{1}", "1", Verdict::Unparsable},
      {"reasoning only, template opened think</think>\\boxed{8}", "8", Verdict::Correct},
  };
  ASSERT_GE(cases.size(), 25u);
  for (size_t i = 0; i < cases.size(); ++i) {
    RewardResult r = math_reward(cases[i].response, json{{"answer", cases[i].answer}});
    EXPECT_EQ(verdict_name(r.verdict), std::string(verdict_name(cases[i].want)))
        << "case " << i << ": " << cases[i].response << " vs " << cases[i].answer.dump() << " -> " << r.detail;
    EXPECT_EQ(r.reward, cases[i].want == Verdict::Correct ? 1.0 : 0.0) << "case " << i;
  }
}

TEST(RewardsMath, ConfiguredAnswerPrefixes) {
  MathOptions opt;
  opt.use_boxed = false;
  opt.answer_prefixes = {"####", "Answer:"};
  EXPECT_EQ(math_reward("work...\n#### 1,234", json{{"answer", "1234"}}, opt).verdict, Verdict::Correct);
  EXPECT_EQ(math_reward("Answer: 3/4.\n", json{{"answer", "0.75"}}, opt).verdict, Verdict::Correct);
  EXPECT_EQ(math_reward("answer: 5\nANSWER: 6", json{{"answer", "6"}}, opt).verdict, Verdict::Correct);
  EXPECT_EQ(math_reward("\\boxed{6}", json{{"answer", "6"}}, opt).verdict, Verdict::Unparsable);
  EXPECT_EQ(math_reward("#### ", json{{"answer", "6"}}, opt).verdict, Verdict::Unparsable);
  // Boxed wins over prefixes when enabled; prefixes are the fallback.
  opt.use_boxed = true;
  EXPECT_EQ(math_reward("#### 5 but \\boxed{7}", json{{"answer", "7"}}, opt).verdict, Verdict::Correct);
  EXPECT_EQ(math_reward("#### 5", json{{"answer", "5"}}, opt).verdict, Verdict::Correct);
}

TEST(RewardsMath, ReferenceForms) {
  EXPECT_EQ(math_reward("\\boxed{72}", json(72)).verdict, Verdict::Correct);
  EXPECT_EQ(math_reward("\\boxed{0.25}", json{{"answer", 0.25}}).verdict, Verdict::Correct);
  EXPECT_EQ(math_reward("\\boxed{18}", json{{"answer", "Janet makes 9*2 = 18 dollars.\n#### 18"}}).verdict,
            Verdict::Correct);
  EXPECT_EQ(math_reward("\\boxed{3}", json{{"answer", "so \\boxed{3}"}}).verdict, Verdict::Correct);
  EXPECT_THROW(math_reward("\\boxed{3}", json{{"solution", "3"}}), Error);
  EXPECT_THROW(math_reward("\\boxed{3}", json{{"answer", json::object()}}), Error);
}

TEST(RewardsMath, Normalisation) {
  EXPECT_EQ(normalize_math_answer(" \\left( 1 , 2 \\right) "), "(1,2)");
  EXPECT_EQ(normalize_math_answer("\\dfrac12"), "\\frac{1}{2}");
  EXPECT_EQ(normalize_math_answer("10 apples"), "10");
  EXPECT_EQ(normalize_math_answer("1,000,000"), "1000000");
  EXPECT_EQ(normalize_math_answer("1,2"), "1,2");  // not a thousands grouping: a list
  EXPECT_TRUE(math_answers_equal("\\frac{2}{4}", "0.5"));
  EXPECT_TRUE(math_answers_equal(".5", "1/2"));
  EXPECT_FALSE(math_answers_equal("1,2", "12"));
  EXPECT_FALSE(math_answers_equal("", ""));
  EXPECT_EQ(extract_math_answer("\\boxed{a{b}c} and \\boxed{\\frac{x}{y}}").value(), "\\frac{x}{y}");
  EXPECT_FALSE(extract_math_answer("\\boxedfoo{1}").has_value());
}

TEST(RewardsMath, RandomBytesNeverThrow) {
  std::mt19937 rng(7);
  const std::string alphabet = "\\{}$boxed0123456789.,/-+ frac text<think></think>\n#%";
  for (int i = 0; i < 2000; ++i) {
    std::string s(rng() % 200, '\0');
    for (auto& c : s) c = (i % 2) ? static_cast<char>(rng() & 0xff) : alphabet[rng() % alphabet.size()];
    if (i % 3 == 0) s = "\\boxed{" + s;
    MathOptions opt;
    opt.answer_prefixes = {"####"};
    RewardResult r;
    ASSERT_NO_THROW(r = math_reward(s, json{{"answer", "12"}}, opt)) << i;
    EXPECT_TRUE(r.reward == 0.0 || r.reward == 1.0);
  }
}

}  // namespace
