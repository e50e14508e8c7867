// Synthetic reasoning tasks: determinism, answer checking, dataset files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "data/jsonl.h"
#include "data/synthetic_tasks.h"

using namespace temper;
namespace fs = std::filesystem;

TEST(Synthetic, DeterministicFromSeed) {
  for (const std::string& task : synthetic_task_names()) {
    Rng a(42), b(42), c(43);
    std::set<std::string> distinct;
    bool differs = false;
    for (int i = 0; i < 20; ++i) {
      SyntheticExample x = make_synthetic_example(task, a), y = make_synthetic_example(task, b),
                       z = make_synthetic_example(task, c);
      EXPECT_EQ(sft_record(x).dump(), sft_record(y).dump());
      differs |= sft_record(x).dump() != sft_record(z).dump();
      distinct.insert(x.prompt.back().content);
    }
    EXPECT_TRUE(differs) << task;
    EXPECT_GE(distinct.size(), 10u) << task;
  }
  Rng r(1);
  EXPECT_THROW(make_synthetic_example("poetry", r), Error);
}

TEST(Synthetic, ReferenceResponsesPassTheirOwnCheckAndAreShort) {
  Rng rng(2024);
  for (const std::string& task : synthetic_task_names()) {
    for (int i = 0; i < 300; ++i) {
      SyntheticExample ex = make_synthetic_example(task, rng);
      ASSERT_TRUE(check_answer(task, ex.answer, ex.response, ex.constraints)) << task << ": " << ex.response;
      EXPECT_GE(ex.response.size(), 10u) << ex.response;
      EXPECT_LE(ex.response.size(), 150u) << ex.response;
      EXPECT_EQ(ex.prompt.back().role, "user");
    }
  }
}

TEST(Synthetic, ArithmeticAnswersAreCorrectSums) {
  Rng rng(5);
  for (int i = 0; i < 200; ++i) {
    SyntheticExample ex = make_synthetic_example("arith", rng);
    int a = 0, b = 0;
    ASSERT_EQ(sscanf(ex.prompt.back().content.c_str(), "Compute %d+%d.", &a, &b), 2) << ex.prompt.back().content;
    EXPECT_EQ(ex.answer, std::to_string(a + b));
  }
  Rng r2(6);
  SyntheticExample ex = make_synthetic_example("count", r2);
  const std::string& q = ex.prompt.back().content;  // How many 'x' in 'word'?
  const char letter = q[10];
  const std::string word = q.substr(17, q.size() - 19);
  EXPECT_EQ(ex.answer, std::to_string(std::count(word.begin(), word.end(), letter))) << q;
}

TEST(Synthetic, WrongAnswersFail) {
  EXPECT_TRUE(check_answer("arith", "125", "8+7=15 c1. \\boxed{125}"));
  EXPECT_FALSE(check_answer("arith", "125", "8+7=15 c1. \\boxed{124}"));
  EXPECT_FALSE(check_answer("arith", "125", "the answer is 125"));                 // no box
  EXPECT_FALSE(check_answer("arith", "125", "\\boxed{125} no wait \\boxed{126}"));  // last box counts
  EXPECT_TRUE(check_answer("arith", "125", "\\boxed{126} no wait \\boxed{ 125 }"));
  EXPECT_TRUE(check_answer("sort", "7, 19, 42", "\\boxed{7,19,42}"));
  EXPECT_FALSE(check_answer("sort", "7, 19, 42", "\\boxed{7, 42, 19}"));
  EXPECT_FALSE(check_answer("count", "3", "\\boxed{3"));  // unclosed
  EXPECT_FALSE(check_answer("word", "12", "\\boxed{12.0}"));
  EXPECT_TRUE(check_answer("if_upper", "TAC", "CAT REVERSED: T-A-C. \\boxed{TAC}", {{"case", "upper"}}));
  EXPECT_FALSE(check_answer("if_upper", "TAC", "cat reversed: T-A-C. \\boxed{TAC}", {{"case", "upper"}}));
  EXPECT_FALSE(check_answer("if_upper", "TAC", "CAT REVERSED. \\boxed{tac}", {{"case", "upper"}}));
  EXPECT_TRUE(check_answer("if_words", "seven eight nine", "\\boxed{seven  eight nine}", {{"words", 3}}));
  EXPECT_FALSE(check_answer("if_words", "seven eight nine", "\\boxed{seven eight}", {{"words", 3}}));
  EXPECT_FALSE(check_answer("if_words", "seven eight nine", "\\boxed{seven eight nine}", {{"words", 4}}));
  EXPECT_THROW(check_answer("poetry", "x", "\\boxed{x}"), Error);
  bool found = true;
  EXPECT_EQ(last_boxed("\\boxed{a{b}c} tail", &found), "a{b}c");
  EXPECT_TRUE(found);
  last_boxed("nothing", &found);
  EXPECT_FALSE(found);
}

TEST(Synthetic, WritesFourDatasetsWithHeldOutPrompts) {
  fs::path dir = fs::temp_directory_path() / ("temper_synth_" + std::to_string(getpid())) / "sub";
  write_synthetic_datasets(dir.string(), 77, 120, 30);
  auto sft_train = read_jsonl((dir / "sft_train.jsonl").string());
  auto sft_eval = read_jsonl((dir / "sft_eval.jsonl").string());
  auto rl = read_jsonl((dir / "rl_prompts.jsonl").string());
  auto rl_eval = read_jsonl((dir / "rl_eval.jsonl").string());
  EXPECT_EQ(sft_train.size(), 120u);
  EXPECT_EQ(rl.size(), 120u);
  EXPECT_EQ(sft_eval.size(), 30u);
  EXPECT_EQ(rl_eval.size(), 30u);
  std::set<std::string> held_out, tasks;
  for (auto* set : {&sft_eval, &rl_eval})
    for (auto& c : *set) held_out.insert(c.messages.back().role == "assistant" ? c.messages[c.messages.size() - 2].content
                                                                              : c.messages.back().content);
  for (auto& c : sft_train) {
    ASSERT_EQ(c.messages.back().role, "assistant");
    const std::string task = c.extra.at("task");
    tasks.insert(task);
    const nlohmann::json cons = c.extra.value("constraints", nlohmann::json());
    EXPECT_EQ(cons.is_null(), task.rfind("if_", 0) != 0) << task;
    EXPECT_TRUE(check_answer(task, c.extra.at("answer"), c.messages.back().content, cons));
    EXPECT_EQ(held_out.count(c.messages[c.messages.size() - 2].content), 0u) << "eval prompt in training data";
  }
  EXPECT_EQ(tasks.size(), 6u);
  for (auto& c : rl) {
    EXPECT_NE(c.messages.back().role, "assistant");
    EXPECT_TRUE(c.extra.contains("answer"));
    EXPECT_EQ(held_out.count(c.messages.back().content), 0u);
  }
  // Same seed, same files.
  fs::path dir2 = dir.parent_path() / "again";
  write_synthetic_datasets(dir2.string(), 77, 120, 30);
  std::ifstream f1(dir / "sft_train.jsonl"), f2(dir2 / "sft_train.jsonl");
  std::string s1((std::istreambuf_iterator<char>(f1)), {}), s2((std::istreambuf_iterator<char>(f2)), {});
  EXPECT_EQ(s1, s2);
  fs::remove_all(dir.parent_path());
}
