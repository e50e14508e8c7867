// RL / eval items are checked when they are read (issue 17 finding 8): every
// verifier field with its type, the file and line named; a batch in which every
// response fails in its verifier is an error, not 0 %; and an empty expected
// output of a code test is refused (finding 5).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "rl/task_rewards.h"

using namespace temper;
namespace fs = std::filesystem;

namespace {

// The message load_rl_prompts throws for a file whose line 1 is a good math item and
// line 2 a `task` item holding `fields`; prefixed with NOT ON LINE 2 unless it names line 2.
std::string line2_error(const std::string& task, const std::string& fields) {
  const fs::path p = fs::temp_directory_path() / ("temper_rl_items2_" + std::to_string(getpid()) + ".jsonl");
  std::ofstream(p) << "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],\"task\":\"math\",\"answer\":\"1\"}\n"
                   << "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],\"task\":\"" << task << "\"," << fields
                   << "}\n";
  std::string msg;
  try {
    load_rl_prompts(p.string());
  } catch (const Error& e) {
    msg = e.what();
  }
  fs::remove(p);
  return msg.find(p.filename().string() + ":2: ") == std::string::npos ? "NOT ON LINE 2: " + msg : msg;
}

TEST(RlItems, MathAnswerOfTheWrongTypeIsRefusedAtLoad) {
  for (const char* bad : {"{\"x\":1}", "null", "[]", "true", "[\"1\", {}]", "\"\"", "\"  \""}) {
    const std::string msg = line2_error("math", std::string("\"answer\":") + bad);
    EXPECT_EQ(msg.find("NOT ON LINE 2"), std::string::npos) << bad << ": " << msg;
    EXPECT_NE(msg.find("answer"), std::string::npos) << bad << ": " << msg;
  }
  EXPECT_NE(line2_error("math", "\"solution\":\"1\"").find("needs an \"answer\""), std::string::npos);
}

TEST(RlItems, GoodItemsOfEveryFamilyLoad) {
  const fs::path p = fs::temp_directory_path() / ("temper_rl_good_" + std::to_string(getpid()) + ".jsonl");
  const std::string m = "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],";
  std::ofstream(p) << m << "\"task\":\"math\",\"answer\":\"\\\\frac12\"}\n"
                   << m << "\"task\":\"gsm8k\",\"answer\":42}\n"
                   << m << "\"task\":\"aime\",\"answer\":[\"7\", 7]}\n"
                   << m << "\"task\":\"code\",\"tests\":[{\"input\":\"1\",\"expected_output\":\"2\"}]}\n"
                   << m << "\"task\":\"if\",\"constraints\":{\"type\":\"no_commas\"}}\n"
                   << m << "\"task\":\"arith\",\"answer\":\"551\"}\n"
                   << m << "\"task\":\"if_words\",\"answer\":\"a b\",\"constraints\":{\"words\":2}}\n";
  std::vector<RlPrompt> v;
  EXPECT_NO_THROW(v = load_rl_prompts(p.string()));
  EXPECT_EQ(v.size(), 7u);
  fs::remove(p);
}

TEST(RlItems, SyntheticAndInstructionFieldsAreTyped) {
  for (const char* bad : {"\"answer\":5", "\"answer\":null", "\"answer\":\"\""})
    EXPECT_EQ(line2_error("arith", bad).find("NOT ON LINE 2"), std::string::npos) << bad;
  EXPECT_NE(line2_error("if_words", "\"answer\":\"a b\",\"constraints\":{\"words\":\"two\"}").find("constraints.words"),
            std::string::npos);
  EXPECT_NE(line2_error("if_words", "\"answer\":\"a b\",\"constraints\":[2]").find("constraints"), std::string::npos);
  EXPECT_EQ(line2_error("if", "\"constraints\":{\"type\":\"no_such_check\"}").find("NOT ON LINE 2"), std::string::npos);
  EXPECT_EQ(line2_error("if", "\"constraints\":null").find("NOT ON LINE 2"), std::string::npos);
}

TEST(RlItems, CodeTestsAreTypedAndNeedAnExpectedOutput) {
  for (const char* bad : {"\"tests\":[]", "\"tests\":{}", "\"tests\":[{\"input\":\"1\"}]",
                          "\"tests\":[{\"input\":1,\"expected_output\":\"2\"}]",
                          "\"tests\":[{\"input\":\"1\",\"expected_output\":2}]"})
    EXPECT_EQ(line2_error("code", bad).find("NOT ON LINE 2"), std::string::npos) << bad;
  // Finding 5: an empty (or whitespace-only) expected output would reward any silent program.
  for (const char* empty : {"\"\"", "\"\\n\"", "\"  \\n\\n\""}) {
    const std::string msg =
        line2_error("code", std::string("\"tests\":[{\"input\":\"1\",\"expected_output\":\"3\"},{\"expected_output\":") +
                                empty + "}]");
    EXPECT_EQ(msg.find("NOT ON LINE 2"), std::string::npos) << empty << ": " << msg;
    EXPECT_NE(msg.find("tests[1]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("empty"), std::string::npos) << msg;
  }
}

// A record that slipped past the loader (built in memory) fails in its verifier; when
// every response of a batch does, the batch is an error, not a silent 0 %.
TEST(RlItems, BatchOfOnlyVerifierErrorsIsAnError) {
  RlPrompt bad;
  bad.task = "math";
  bad.family = RewardFamily::Math;
  bad.ref = {{"answer", {{"x", 1}}}};
  bad.source = "items.jsonl:3";
  RlPrompt good = bad;
  good.ref = {{"answer", "1"}};
  good.source = "items.jsonl:4";
  const std::vector<std::string> responses = {"\\boxed{1}", "\\boxed{1}"};
  std::string msg;
  try {
    score_responses({bad}, {0, 0}, responses, {0, 0}, ScoringOptions{});
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("every one of the 2 responses"), std::string::npos) << msg;
  EXPECT_NE(msg.find("items.jsonl:3"), std::string::npos) << msg;
  // One broken record among good ones: its responses are discarded, the rest scored.
  std::vector<ScoredResponse> s;
  ASSERT_NO_THROW(s = score_responses({bad, good}, {0, 1}, responses, {0, 0}, ScoringOptions{}));
  EXPECT_TRUE(s[0].discarded);
  EXPECT_NE(s[0].result.detail.find("verifier error"), std::string::npos);
  EXPECT_EQ(s[1].result.reward, 1.0);
  // Truncated responses are not verifier errors and do not count.
  EXPECT_NO_THROW(score_responses({bad}, {0, 0}, responses, {1, 1}, ScoringOptions{}));
}

}  // namespace
