// HumanEval and MBPP through the whole path a user takes: postproc/import_benchmark.py
// converts the published file, load_rl_prompts reads the result, score_responses
// runs each response with the benchmark's test code in the sandbox. Proves the
// verifier on reference solutions: every HumanEval canonical solution passes and a
// body that only `pass`es fails; every MBPP test-split reference program passes its
// asserts and a wrong one fails. Runs on the fixtures always and on the full files
// in $TEMPER_BENCHMARKS_DIR (default: shared/benchmarks beside the checkout) when they
// are there, skipping with a message otherwise. Needs /usr/bin/python3.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <regex>

#include "rl/task_rewards.h"

using namespace temper;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const char* kPython = "/usr/bin/python3";

fs::path fixtures_dir() { return fs::path(TEMPER_SOURCE_DIR) / "tests/fixtures/benchmarks"; }

fs::path shared_dir() {
  const char* env = std::getenv("TEMPER_BENCHMARKS_DIR");
  if (env && *env) return env;
  return fs::path(TEMPER_SOURCE_DIR).parent_path() / "shared/benchmarks";
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::map<std::string, json> raw_by_id(const fs::path& path, const char* id_key) {
  std::map<std::string, json> m;
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) {
      json j = json::parse(line);
      m[j[id_key].dump()] = j;
    }
  return m;
}

std::string fenced(const std::string& code) { return "Here it is.\n```python\n" + code + "\n```\n"; }

// The reference program with every top-level function redefined to return None.
std::string mbpp_wrong(const std::string& code) {
  std::string out = code + "\n\n";
  static const std::regex def(R"(^def\s+(\w+)\s*\()", std::regex::multiline);
  for (auto it = std::sregex_iterator(code.begin(), code.end(), def); it != std::sregex_iterator(); ++it)
    out += "def " + (*it)[1].str() + "(*args, **kwargs):\n    return None\n";
  return out;
}

std::string failures(const std::vector<RlPrompt>& prompts, const std::vector<ScoredResponse>& s, Verdict unexpected) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i)
    if (s[i].result.verdict == unexpected) out += prompts[i].ref["id"].dump() + ": " + s[i].result.detail + "\n";
  return out;
}

// A scratch directory traversable by the sandbox user, removed at the end.
class BenchmarkCode : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(kPython, X_OK) != 0) GTEST_SKIP() << kPython << " not found: the code rewards run Python";
    char tmpl[] = "/tmp/temper-bench-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    chmod(root_.c_str(), 0755);
  }
  void TearDown() override {
    if (!root_.empty()) fs::remove_all(root_);
  }

  // Converts `input` with the importer, returns the loaded prompts.
  std::vector<RlPrompt> import(const fs::path& input, const std::string& args = "") {
    const std::string out = root_ + "/" + input.stem().string() + ".temper.jsonl";
    const std::string cmd = std::string(kPython) + " " + TEMPER_SOURCE_DIR + "/postproc/import_benchmark.py '" +
                            input.string() + "' --out '" + out + "' " + args + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    std::string log;
    char buf[512];
    while (p && fgets(buf, sizeof buf, p)) log += buf;
    const int rc = p ? pclose(p) : -1;
    EXPECT_EQ(rc, 0) << cmd << "\n" << log;
    return load_rl_prompts(out);
  }

  ScoringOptions scoring() const {
    ScoringOptions o;
    o.sandbox.run_command = {"python3"};
    o.sandbox.wall_timeout_s = 60;  // generous: a loaded CI machine must not turn a pass into a fail
    o.sandbox.cpu_seconds = 30;
    o.sandbox.workers = 2;
    o.sandbox.test_code_batch = 16;  // 16 jobs per interpreter start, each in its own forked process
    o.sandbox.tmp_root = root_;
    return o;
  }

  // Scores one response per prompt; returns how many were Correct.
  size_t count_correct(const std::vector<RlPrompt>& prompts, const std::function<std::string(const RlPrompt&)>& response,
                       std::vector<ScoredResponse>* scored = nullptr) {
    std::vector<int64_t> prompt_of;
    std::vector<std::string> responses;
    for (size_t i = 0; i < prompts.size(); ++i) {
      prompt_of.push_back(int64_t(i));
      responses.push_back(response(prompts[i]));
    }
    auto s = score_responses(prompts, prompt_of, responses, std::vector<uint8_t>(prompts.size(), 0), scoring());
    size_t n = 0;
    for (auto& r : s) n += r.result.verdict == Verdict::Correct;
    if (scored) *scored = std::move(s);
    return n;
  }

  // HumanEval: canonical solutions pass, `pass` bodies fail.
  void check_humaneval(const fs::path& file, const std::vector<RlPrompt>& prompts, size_t expect_n) {
    ASSERT_EQ(prompts.size(), expect_n);
    auto raw = raw_by_id(file, "task_id");
    double t0 = now_s();
    std::vector<ScoredResponse> s;
    size_t good = count_correct(
        prompts, [&](const RlPrompt& p) { return fenced(raw.at(p.ref["id"].dump())["canonical_solution"]); }, &s);
    EXPECT_EQ(good, expect_n) << failures(prompts, s, Verdict::Wrong);
    size_t bad = count_correct(prompts, [](const RlPrompt&) { return fenced("    pass"); }, &s);
    EXPECT_EQ(bad, 0u) << failures(prompts, s, Verdict::Correct);
    std::cout << "HumanEval " << file << ": canonical solutions pass " << good << "/" << expect_n
              << ", `pass` bodies fail " << expect_n - bad << "/" << expect_n << " (" << now_s() - t0 << " s)\n";
  }

  std::string root_;
};

}  // namespace

TEST_F(BenchmarkCode, HumanEvalFixturesThroughImporter) {
  const fs::path file = fixtures_dir() / "humaneval.jsonl";
  auto prompts = import(file);
  ASSERT_EQ(prompts.size(), 4u);
  EXPECT_EQ(prompts[0].task, "humaneval");
  EXPECT_EQ(prompts[0].family, RewardFamily::Code);
  EXPECT_EQ(prompts[0].ref["id"], "HumanEval/0");
  auto raw = raw_by_id(file, "task_id");
  std::vector<ScoredResponse> s;
  // The canonical body, the whole function written again, a `pass` body, no code block.
  const std::string whole = "from typing import List\n\ndef has_close_elements(numbers, threshold):\n"
                            "    return any(abs(a - b) < threshold for i, a in enumerate(numbers)"
                            " for b in numbers[i + 1:])\n";
  std::vector<std::string> responses = {fenced(raw.at("\"HumanEval/0\"")["canonical_solution"]), fenced(whole),
                                        fenced("    pass"), "no code"};
  auto r = score_responses({prompts[0]}, {0, 0, 0, 0}, responses, {0, 0, 0, 0}, scoring());
  EXPECT_EQ(r[0].result.verdict, Verdict::Correct) << r[0].result.detail;
  EXPECT_EQ(r[1].result.verdict, Verdict::Correct) << r[1].result.detail;
  EXPECT_EQ(r[2].result.verdict, Verdict::Wrong) << r[2].result.detail;
  EXPECT_NE(r[2].result.detail.find("AssertionError"), std::string::npos) << r[2].result.detail;
  EXPECT_EQ(r[3].result.verdict, Verdict::Unparsable);
  EXPECT_TRUE(r[3].discarded);
  check_humaneval(file, prompts, 4);
}

TEST_F(BenchmarkCode, MbppFixturesThroughImporter) {
  const fs::path file = fixtures_dir() / "mbpp.jsonl";
  auto prompts = import(file);  // the test split: 11, 17, 367 (not 2 or 600)
  ASSERT_EQ(prompts.size(), 3u);
  EXPECT_EQ(prompts[0].ref["id"], 11);
  EXPECT_EQ(prompts[2].ref["id"], 367);
  EXPECT_EQ(import(file, "--split all").size(), 5u);
  auto raw = raw_by_id(file, "task_id");
  std::vector<ScoredResponse> s;
  EXPECT_EQ(count_correct(prompts, [&](const RlPrompt& p) { return fenced(raw.at(p.ref["id"].dump())["code"]); }, &s), 3u)
      << failures(prompts, s, Verdict::Wrong);
  EXPECT_EQ(count_correct(prompts, [&](const RlPrompt& p) { return fenced(mbpp_wrong(raw.at(p.ref["id"].dump())["code"])); },
                          &s),
            0u);
  // Per-test results: a remove_Occ that only handles the first test's case passes 1 of 3.
  const std::string partial = "def remove_Occ(s, ch):\n    return 'heo' if s == 'hello' else s\n";
  auto r = score_responses(prompts, {0}, {fenced(partial)}, {0}, scoring());
  EXPECT_EQ(r[0].result.verdict, Verdict::Wrong);
  EXPECT_NEAR(r[0].result.reward, 1.0 / 3.0, 1e-12) << r[0].result.detail;
  EXPECT_NE(r[0].result.detail.find("passed 1/3; test 1: AssertionError"), std::string::npos) << r[0].result.detail;
}

// Every benchmark's converted records load as RL/eval prompts and reach their verifier.
TEST_F(BenchmarkCode, MathAndIfevalRecordsLoadAndScore) {
  auto gsm = import(fixtures_dir() / "gsm8k_test.jsonl");
  ASSERT_EQ(gsm.size(), 3u);
  EXPECT_EQ(gsm[0].family, RewardFamily::Math);
  auto math = import(fixtures_dir() / "math500_test.jsonl");
  EXPECT_EQ(math[0].family, RewardFamily::Math);
  auto ifeval = import(fixtures_dir() / "ifeval_input_data.jsonl");
  ASSERT_EQ(ifeval.size(), 3u);
  EXPECT_EQ(ifeval[0].family, RewardFamily::Instruction);
  auto r = score_responses(gsm, {0, 0, 0}, {"So she makes \\boxed{18} dollars.", "\\boxed{19}", "eighteen"},
                           {0, 0, 0}, scoring());
  EXPECT_EQ(r[0].result.verdict, Verdict::Correct) << r[0].result.detail;
  EXPECT_EQ(r[1].result.verdict, Verdict::Wrong) << r[1].result.detail;
  EXPECT_EQ(r[2].result.verdict, Verdict::Unparsable) << r[2].result.detail;
  auto m = score_responses(math, {0, 0}, {"\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\boxed{(3, \\pi)}"},
                           {0, 0}, scoring());
  EXPECT_EQ(m[0].result.verdict, Verdict::Correct) << m[0].result.detail;
  EXPECT_EQ(m[1].result.verdict, Verdict::Wrong) << m[1].result.detail;
  // Record 1000: no commas, 3 highlighted sections, at least 300 words.
  std::string ok = "*one* *two* *three*";
  for (int i = 0; i < 300; ++i) ok += " word";
  auto f = score_responses(ifeval, {0, 0}, {ok, "*one*, *two* *three* short"}, {0, 0}, scoring());
  EXPECT_EQ(f[0].result.verdict, Verdict::Correct) << f[0].result.detail;
  EXPECT_EQ(f[1].result.verdict, Verdict::Wrong) << f[1].result.detail;
}

TEST_F(BenchmarkCode, HumanEvalReferenceSolutions) {
  const fs::path file = shared_dir() / "humaneval.jsonl";
  if (!fs::exists(file))
    GTEST_SKIP() << file << " not found: set TEMPER_BENCHMARKS_DIR to the folder of the benchmark files to run this check";
  auto prompts = import(file);
  check_humaneval(file, prompts, 164);
}

TEST_F(BenchmarkCode, MbppReferenceSolutions) {
  const fs::path file = shared_dir() / "mbpp.jsonl";
  if (!fs::exists(file))
    GTEST_SKIP() << file << " not found: set TEMPER_BENCHMARKS_DIR to the folder of the benchmark files to run this check";
  auto prompts = import(file);
  ASSERT_EQ(prompts.size(), 500u);
  for (size_t i = 0; i < prompts.size(); ++i) ASSERT_EQ(prompts[i].ref["id"], int64_t(11 + i));
  auto raw = raw_by_id(file, "task_id");
  double t0 = now_s();
  std::vector<ScoredResponse> s;
  size_t good = count_correct(prompts, [&](const RlPrompt& p) { return fenced(raw.at(p.ref["id"].dump())["code"]); }, &s);
  EXPECT_EQ(good, 500u) << failures(prompts, s, Verdict::Wrong);
  size_t bad =
      count_correct(prompts, [&](const RlPrompt& p) { return fenced(mbpp_wrong(raw.at(p.ref["id"].dump())["code"])); }, &s);
  EXPECT_EQ(bad, 0u) << failures(prompts, s, Verdict::Correct);
  std::cout << "MBPP " << file << " (test split, task ids 11-510): reference code passes " << good
            << "/500, wrong programs fail " << 500 - bad << "/500 (" << now_s() - t0 << " s)\n";
}
