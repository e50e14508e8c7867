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
  EXPECT_EQ(normalize_math_answer(" \\left( 1 , 2 \\right) "), "(1, 2)");
  EXPECT_EQ(normalize_math_answer("\\dfrac12"), normalize_math_answer("\\frac{1}{2}"));
  EXPECT_EQ(normalize_math_answer("10 apples"), "10");
  EXPECT_EQ(normalize_math_answer("1,000,000"), "1000000");
  EXPECT_EQ(normalize_math_answer("1,2"), "list(1, 2)");  // not a thousands grouping: a list
  EXPECT_TRUE(math_answers_equal("\\frac{2}{4}", "0.5"));
  EXPECT_TRUE(math_answers_equal(".5", "1/2"));
  EXPECT_FALSE(math_answers_equal("1,2", "12"));
  EXPECT_FALSE(math_answers_equal("", ""));
  EXPECT_FALSE(extract_math_answer("\\boxedfoo{1}").has_value());
}

// Each rule of docs/rewards.md, with an answer that must be accepted and one that must not.
TEST(RewardsMath, EquivalenceRules) {
  struct Pair {
    const char *gold, *good, *bad;
  };
  const std::vector<Pair> pairs = {
      {"\\frac{3}{4}", "0.75", "0.7"},                               // exact rationals
      {"7\\frac{3}{4}", "7.75", "21/4"},                             // mixed numbers
      {"137 \\frac{1}{2}", "275/2", "137"},                          // mixed number with a space
      {"2\\sqrt{2}", "\\sqrt{8}", "\\sqrt{6}"},                      // roots, by value
      {"\\sqrt[3]{-8}", "-2", "2"},                                   // real odd roots
      {"2^{10}", "1024", "1023"},                                     // powers
      {"0.0025", "2.5\\times10^{-3}", "2.5\\times10^{-2}"},           // scientific notation
      {"2.5e-3", "0.0025", "0.025"},                                  // scientific notation, plain
      {"\\frac{1}{3}", "0.\\overline{3}", "0.3"},                     // repeating decimal
      {"\\frac{1}{3}", "0.333333", "0.33"},                           // decimals: 6 places (Math-Verify)
      {"8\\pi", "8 \\pi", "8"},                                       // pi
      {"\\frac{\\pi}{2}", "\\pi/2", "1.57"},                          // pi
      {"e^2", "\\mathrm{e}^{2}", "2e"},                               // e
      {"6 - 5i", "-5i + 6", "6 + 5i"},                                // complex numbers
      {"(1+i)^2", "2i", "2"},                                         // complex arithmetic
      {"30^\\circ", "30", "31"},                                      // degrees dropped
      {"20\\%", "20", "21"},                                          // percentages: x% is x
      {"0.2", "20\\%", "2\\%"},                                       //   ... or x/100
      {"15\\mbox{ cm}^2", "15", "16"},                                // units dropped
      {"5.4 \\text{ cents}", "5.4", "54"},                            // units dropped
      {"\\$32,\\!348", "32348", "32349"},                             // currency, thousands
      {"3500000", "3.5 million", "3.5"},                              // number words scale
      {"x^2+2x+1", "(x+1)^2", "(x-1)^2"},                             // polynomials at random points
      {"\\tan^2 y + 1", "\\sec^2 y", "\\sec y"},                      // trigonometry
      {"\\frac{x+2}{7}", "\\frac{x}{7}+\\frac{2}{7}", "\\frac{x}{7}+2"},  // rational functions
      {"|x|", "\\left|x\\right|", "x"},                               // abs is not x (negative points)
      {"\\{1,2\\}", "\\{2,1\\}", "\\{1,3\\}"},                        // sets unordered
      {"1, 2", "2, 1", "1, 2, 3"},                                    // bare lists unordered
      {"-2, 1", "1 \\text{ and } -2", "1"},                           // "and" lists
      {"(1, 2)", "(1,2)", "(2, 1)"},                                  // tuples ordered
      {"(3, 4]", "(3,4]", "[3, 4]"},                                  // intervals
      {"(-\\infty, 0] \\cup (1, 2)", "(1,2) \\cup (-\\infty,0]", "(-\\infty, 0) \\cup (1, 2)"},  // unions
      {"x \\ge 3", "3 \\le x", "x > 3"},                              // inequalities
      {"x < 1", "-x > -1", "x > -1"},                                 // inequality scaled by -1
      {"[-2, 7]", "-2 \\le x \\le 7", "-2 < x \\le 7"},               // relation vs interval
      {"y = 2x + 3", "2x + 3", "2x - 3"},                              // assignment: value
      {"5", "x = 2 + 3 = 5", "x = 5 = 6"},                             // last = of a chain
      {"2x+4y-3=0", "y=-\\frac{1}{2}x+\\frac{3}{4}", "y = 2x"},       // equations up to a factor
      {"x = 5", "x = 5", "y = 5"},                                     // both assignments: names count
      {"1 \\pm \\sqrt{19}", "1+\\sqrt{19}, 1-\\sqrt{19}", "1+\\sqrt{19}"},  // plus-minus
      {"\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{bmatrix}1\\\\2\\end{bmatrix}",
       "\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}"},                   // matrices in any environment
      {"\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
       "\\left[\\begin{array}{cc} -1 & 0 \\\\ 0 & -1 \\end{array}\\right]",
       "\\begin{pmatrix} -1 & 0 & 0 \\\\ 0 & -1 & 0 \\end{pmatrix}"},
      {"\\text{Evelyn}", "Evelyn", "Navin"},                           // text answers
      {"\\text{(C)}", "C", "(D)"},                                     // choices
      {"204_5", "204_{5}", "54"},                                      // numbers in a base
      {"12:00", "12:00", "1:00"},                                      // ratios / times
      {"f(2) < f(1) < f(4)", "f(2)<f(1)<f(4)", "f(1) < f(2) < f(4)"},  // undefined functions
  };
  for (const auto& p : pairs) {
    MathJudgement good = judge_math_answers(p.gold, p.good), bad = judge_math_answers(p.gold, p.bad);
    EXPECT_TRUE(good.equal) << p.gold << " vs " << p.good << ": " << good.why;
    EXPECT_FALSE(bad.equal) << p.gold << " vs " << p.bad << ": " << bad.why;
  }
}

TEST(RewardsMath, SeveralBoxesAndPrefixes) {
  // boxes listed together are one answer; an earlier box separated by prose is a first attempt
  EXPECT_EQ(extract_math_answer("so \\boxed{-2} and \\boxed{1}.").value(), "-2, 1");
  EXPECT_EQ(extract_math_answer("\\boxed{1}\\boxed{2}").value(), "1, 2");
  EXPECT_EQ(extract_math_answer("first \\boxed{3} but that was wrong so now \\boxed{4}").value(), "4");
  EXPECT_EQ(math_reward("\\boxed{3}, no wait, \\boxed{4}", json{{"answer", "4"}}).verdict, Verdict::Wrong);  // two answers
  EXPECT_EQ(math_reward("roots \\boxed{1}, \\boxed{-2}", json{{"answer", "-2, 1"}}).verdict, Verdict::Correct);
  EXPECT_EQ(math_reward("roots \\boxed{1}, \\boxed{-2}", json{{"answer", "1"}}).verdict, Verdict::Wrong);
  // prefixes: the rest of the line, its math span, or its leading number
  MathOptions opt;
  opt.answer_prefixes = {"The answer is", "####"};
  EXPECT_EQ(extract_math_answer("so...\nThe answer is 1234.", opt).value(), "1234");
  EXPECT_EQ(extract_math_answer("The answer is: $\\frac{1}{2}$.", opt).value(), "\\frac{1}{2}");
  EXPECT_EQ(extract_math_answer("The answer is 18 because 9*2 = 18", opt).value(), "18");
  EXPECT_FALSE(extract_math_answer("no marker here 42", opt).has_value());
  // without a box or prefix an RL answer is unparsable; free-text evaluation falls back
  opt.fallback = MathFallback::Both;
  EXPECT_EQ(extract_math_answer("no marker here, the total is $42$ apples", opt).value(), "42");
  EXPECT_EQ(extract_math_answer("Final Answer: The final answer is $28 \\%$. I hope it is correct.", opt).value(),
            "28 \\%");
}

// GSM8K: the number after "####" against the forms a model writes.
TEST(RewardsMath, Gsm8kForms) {
  MathOptions opt;
  opt.answer_prefixes = {"The answer is", "####"};
  const json ref = {{"answer", "He pays 617 + 617 = <<617+617=1234>>1234 dollars.\n#### 1234"}};
  for (const char* r : {"\\boxed{1,234}", "\\boxed{\\$1234}", "\\boxed{1234.00}", "So the total is 1234.\nThe answer is 1234.",
                        "The answer is $1,234.", "#### 1234", "\\boxed{1234 \\text{ dollars}}", "The answer is: 1234 dollars"}) {
    RewardResult res = math_reward(r, ref, opt);
    EXPECT_EQ(res.verdict, Verdict::Correct) << r << ": " << res.detail;
  }
  for (const char* r : {"\\boxed{1,235}", "\\boxed{12.34}", "The answer is 1 234 5.", "\\boxed{1, 234}", "\\boxed{-1234}"}) {
    RewardResult res = math_reward(r, ref, opt);
    EXPECT_NE(res.verdict, Verdict::Correct) << r << ": " << res.detail;
  }
}

TEST(RewardsMath, AdversarialInputsNeverThrowOrHang) {
  std::string deep(5000, '(');
  EXPECT_FALSE(math_answers_equal(deep + "1" + std::string(5000, ')'), "1"));  // too deep: refused, not a crash
  std::string nested;
  for (int i = 0; i < 300; ++i) nested = "\\frac{" + nested + "1}{2}";
  EXPECT_FALSE(math_answers_equal(nested, "0"));
  EXPECT_FALSE(math_answers_equal("x^{x^{x^{x^{x^{x^{x^{x}}}}}}}", "2"));
  EXPECT_FALSE(math_answers_equal("10^{10^{10^{10}}}", "1"));  // overflow: not equal, no hang
  EXPECT_FALSE(math_answers_equal("99!", "100"));
  std::string long_list;
  for (int i = 0; i < 300; ++i) long_list += std::to_string(i) + ", ";
  EXPECT_TRUE(math_answers_equal(long_list + "300", long_list + "300"));
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
    ASSERT_NO_THROW(judge_math_answers(s, s.substr(s.size() / 2))) << i;  // both sides arbitrary
    opt.fallback = MathFallback::Both;
    ASSERT_NO_THROW(extract_math_answer(s, opt)) << i;
  }
}

}  // namespace
