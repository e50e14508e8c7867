// Tests of rl/difficulty_filter (pass rates, bands per task, kept-set JSONL,
// histogram, zero-variance drop/refill), rl/task_mix (largest-remainder counts,
// no repeats within an epoch, determinism) and the saved-state round trips.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "core/error.h"
#include "rl/difficulty_filter.h"
#include "rl/rl_state.h"
#include "rl/task_mix.h"

namespace fs = std::filesystem;
using namespace temper;

namespace {

std::vector<Verdict> verdicts(int correct, int wrong, int unparsable) {
  std::vector<Verdict> v;
  v.insert(v.end(), correct, Verdict::Correct);
  v.insert(v.end(), wrong, Verdict::Wrong);
  v.insert(v.end(), unparsable, Verdict::Unparsable);
  return v;
}

PromptRollouts prompt(int64_t idx, const std::string& task, int correct, int n, int unparsable = 0) {
  return {idx, "uid" + std::to_string(idx), task, verdicts(correct, n - correct - unparsable, unparsable)};
}

std::string temp_dir() {
  std::string tmpl = (fs::current_path() / "rl_filter_test_XXXXXX").string();
  EXPECT_NE(mkdtemp(&tmpl[0]), nullptr);
  return tmpl;
}

}  // namespace

// ---- pass rates and bands ---------------------------------------------------------

TEST(RlFilter, PassRateCountsUnparsableAsNotCorrect) {
  EXPECT_DOUBLE_EQ(pass_rate(verdicts(2, 1, 2)), 0.4);
  EXPECT_DOUBLE_EQ(pass_rate(verdicts(0, 0, 5)), 0.0);
  EXPECT_THROW(pass_rate({}), Error);
}

TEST(RlFilter, DefaultBandIsInclusive) {
  DifficultyFilter f(PassBand{0.2, 0.8});
  std::vector<PromptRollouts> ps;
  for (int c = 0; c <= 5; ++c) ps.push_back(prompt(c, "math", c, 5));
  auto e = f.calibrate(ps);
  ASSERT_EQ(e.size(), 6u);
  const std::vector<bool> want = {false, true, true, true, true, false};  // 0 .2 .4 .6 .8 1
  for (int c = 0; c <= 5; ++c) EXPECT_EQ(e[c].kept, want[c]) << "rate " << e[c].rate;
  EXPECT_EQ(f.kept_indices(), (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_DOUBLE_EQ(f.kept_rates()[3], 0.8);
}

TEST(RlFilter, PerTaskBands) {
  auto bands = parse_task_bands("math=0:0.4, code = 0.6:1", "rl.filter_task_bands");
  ASSERT_EQ(bands.size(), 2u);
  EXPECT_DOUBLE_EQ(bands["code"].alpha, 0.6);
  DifficultyFilter f(PassBand{0.2, 0.8}, bands);
  auto e = f.calibrate({prompt(0, "math", 0, 5), prompt(1, "math", 3, 5), prompt(2, "code", 5, 5),
                        prompt(3, "code", 2, 5), prompt(4, "if", 0, 5), prompt(5, "if", 2, 5, 3)});
  EXPECT_TRUE(e[0].kept);   // math 0.0 in [0, 0.4]
  EXPECT_FALSE(e[1].kept);  // math 0.6
  EXPECT_TRUE(e[2].kept);   // code 1.0 in [0.6, 1]
  EXPECT_FALSE(e[3].kept);  // code 0.4
  EXPECT_FALSE(e[4].kept);  // if: default band
  EXPECT_TRUE(e[5].kept);
  EXPECT_EQ(e[5].unparsable, 3);
  EXPECT_EQ(f.band("if").beta, 0.8);
}

TEST(RlFilter, BandParsingErrors) {
  EXPECT_THROW(parse_pass_band("0.9:0.1", "k"), Error);
  EXPECT_THROW(parse_pass_band("0.5", "k"), Error);
  EXPECT_THROW(parse_pass_band("a:1", "k"), Error);
  EXPECT_THROW(parse_task_bands("math:0.1:0.2", "k"), Error);
  EXPECT_THROW(parse_task_bands("math=0:1,math=0:0.5", "k"), Error);
  EXPECT_THROW(DifficultyFilter(PassBand{-0.1, 0.5}), Error);
  EXPECT_TRUE(parse_task_bands("", "k").empty());
}

TEST(RlFilter, KeptJsonlRoundTripAndHistogram) {
  DifficultyFilter f(PassBand{0.2, 0.8});
  auto e = f.calibrate({prompt(10, "math", 0, 5), prompt(11, "math", 1, 5), prompt(12, "math", 5, 5),
                        prompt(13, "code", 2, 5), prompt(14, "code", 4, 5), prompt(15, "code", 3, 4)});
  const std::string dir = temp_dir();
  const std::string path = dir + "/kept.jsonl";
  write_kept_jsonl(path, e);
  auto back = read_kept_jsonl(path);
  ASSERT_EQ(back.size(), 4u);
  EXPECT_EQ(back[0].prompt_index, 11);
  EXPECT_EQ(back[0].uid, "uid11");
  EXPECT_EQ(back[3].task, "code");
  EXPECT_EQ(back[3].n, 4);
  EXPECT_DOUBLE_EQ(back[3].rate, 0.75);

  auto h = pass_rate_histogram(e, 5);
  EXPECT_EQ(h.all["math"], (std::vector<int64_t>{1, 1, 0, 0, 1}));  // rate 1.0 in the last bin
  EXPECT_EQ(h.kept["math"], (std::vector<int64_t>{0, 1, 0, 0, 0}));
  EXPECT_EQ(h.all["code"], (std::vector<int64_t>{0, 0, 1, 1, 1}));  // 0.4→bin 2, 0.75→3, 0.8→4
  EXPECT_EQ(h.kept["code"], (std::vector<int64_t>{0, 0, 1, 1, 1}));
  const std::string table = format_histogram(h);
  EXPECT_NE(table.find("math all/kept"), std::string::npos);
  EXPECT_NE(table.find("total"), std::string::npos);
  EXPECT_NE(table.find("3/1"), std::string::npos);  // math total: 3 prompts, 1 kept
  write_histogram(dir + "/hist.txt", h);
  std::ifstream in(dir + "/hist.txt");
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), table);
  EXPECT_THROW(read_kept_jsonl(dir + "/missing.jsonl"), Error);
  std::ofstream(dir + "/bad.jsonl") << "{\"uid\": 3}\n";
  EXPECT_THROW(read_kept_jsonl(dir + "/bad.jsonl"), Error);
  fs::remove_all(dir);
}

TEST(RlFilter, StateRoundTrip) {
  DifficultyFilter f(PassBand{0.2, 0.8});
  f.calibrate({prompt(3, "m", 1, 5), prompt(4, "m", 4, 5), prompt(5, "m", 0, 5)});
  RlSavedState s = RlSavedState::unpack(f.save_state().pack(), "rl/filter");
  DifficultyFilter g(PassBand{0.2, 0.8});
  g.restore_state(s);
  EXPECT_EQ(g.kept_indices(), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(g.kept_rates(), f.kept_rates());
}

// ---- in-training zero-variance drop / refill -----------------------------------------

TEST(RlRefill, DropsZeroVarianceGroupsAndRefills) {
  ZeroVarianceRefill r(4, 3);
  r.begin_step();
  RefillDecision d = r.add_round({1, 0, 0, 1, 0});
  EXPECT_EQ(d.keep_groups, (std::vector<int>{1, 2, 4}));
  EXPECT_EQ(d.dropped, 2);
  EXPECT_EQ(d.still_needed, 1);
  EXPECT_TRUE(d.generate_more);
  d = r.add_round({0, 0, 1});
  EXPECT_EQ(d.keep_groups, (std::vector<int>{0}));
  EXPECT_EQ(d.surplus, 1);
  EXPECT_EQ(d.dropped, 1);
  EXPECT_EQ(d.have, 4);
  EXPECT_FALSE(d.generate_more);
  EXPECT_EQ(r.total_dropped(), 3);
  EXPECT_EQ(r.total_groups(), 8);
  EXPECT_EQ(r.short_steps(), 0);
}

TEST(RlRefill, StopsAfterMaxRoundsAndCountsShortSteps) {
  ZeroVarianceRefill r(2, 2);
  r.begin_step();
  EXPECT_TRUE(r.add_round({1, 1}).generate_more);
  RefillDecision d = r.add_round({1, 0});
  EXPECT_FALSE(d.generate_more);
  EXPECT_EQ(d.still_needed, 1);
  EXPECT_EQ(r.short_steps(), 1);
  EXPECT_THROW(r.add_round({0}), Error);  // forgot begin_step
  r.begin_step();
  EXPECT_EQ(r.add_round({0, 0}).keep_groups.size(), 2u);

  ZeroVarianceRefill back(2, 2);
  back.restore_state(RlSavedState::unpack(r.save_state().pack(), "rl/refill"));
  EXPECT_EQ(back.total_rounds(), 3);
  EXPECT_EQ(back.total_dropped(), 3);
  EXPECT_EQ(back.short_steps(), 1);
  EXPECT_THROW(back.restore_state(RlSavedState{{1, 2}, {}}), Error);
}

// ---- task mix ------------------------------------------------------------------------

TEST(RlTaskMix, ParseWeights) {
  auto w = parse_task_weights("math:0.5, code:0.25 ,if:0.25", "rl.task_mix");
  EXPECT_EQ(w.size(), 3u);
  EXPECT_DOUBLE_EQ(w["code"], 0.25);
  EXPECT_THROW(parse_task_weights("math=0.5", "k"), Error);
  EXPECT_THROW(parse_task_weights("math:-1", "k"), Error);
  EXPECT_THROW(parse_task_weights("", "k"), Error);
  EXPECT_THROW(parse_task_weights("a:1,a:2", "k"), Error);
}

TEST(RlTaskMix, LargestRemainderIsExactWhenPossible) {
  std::map<std::string, double> w = {{"math", 0.5}, {"code", 0.25}, {"if", 0.25}};
  auto c = apportion(w, 8, 1);
  EXPECT_EQ(c["math"], 4);
  EXPECT_EQ(c["code"], 2);
  EXPECT_EQ(c["if"], 2);
  // 0.3 * 10 must give exactly 3 despite round-off in the quota
  auto d = apportion({{"a", 0.3}, {"b", 0.7}}, 10, 5);
  EXPECT_EQ(d["a"], 3);
  EXPECT_EQ(d["b"], 7);
  // unnormalised weights, largest remainder wins: quotas 1.43, 2.86, 2.71 → 1, 3, 3
  auto e = apportion({{"x", 1}, {"y", 2}, {"z", 1.9}}, 7, 0);
  EXPECT_EQ(e["x"], 1);
  EXPECT_EQ(e["y"], 3);
  EXPECT_EQ(e["z"], 3);
  // ties (10 * 0.25 = 2.5 each) go one way or the other, but over many seeds evenly
  int code_extra = 0;
  for (uint64_t s = 0; s < 200; ++s) {
    auto t = apportion(w, 10, s);
    EXPECT_EQ(t["math"] + t["code"] + t["if"], 10);
    EXPECT_EQ(t["math"], 5);
    code_extra += t["code"] == 3;
  }
  EXPECT_GT(code_extra, 60);
  EXPECT_LT(code_extra, 140);
  auto z = apportion({{"a", 1}, {"b", 0}}, 3, 0);
  EXPECT_EQ(z["b"], 0);
  EXPECT_THROW(apportion({{"a", 0}}, 3, 0), Error);
}

TEST(RlTaskMix, ProportionsNoRepeatsWithinEpochAndDeterminism) {
  std::map<std::string, std::vector<int64_t>> pools;
  for (int i = 0; i < 12; ++i) pools["math"].push_back(100 + i);
  for (int i = 0; i < 6; ++i) pools["code"].push_back(200 + i);
  for (int i = 0; i < 5; ++i) pools["if"].push_back(300 + i);
  pools["unused"] = {1};
  const std::map<std::string, double> w = {{"math", 0.5}, {"code", 0.25}, {"if", 0.25}};
  TaskMixer a(w, pools, 42), b(w, pools, 42), other(w, pools, 43);
  std::set<int64_t> math_epoch0;
  bool differs = false;
  for (int step = 0; step < 6; ++step) {
    auto x = a.draw(step, 4);
    EXPECT_EQ(x.size(), 4u);
    std::map<std::string, int> count;
    for (const auto& d : x) {
      ++count[d.task];
      if (d.task == "math") math_epoch0.insert(d.prompt);
      EXPECT_NE(d.task, "unused");
    }
    EXPECT_EQ(count["math"], 2);
    EXPECT_EQ(count["code"], 1);  // 4 x (0.5, 0.25, 0.25) = 2, 1, 1 exactly
    EXPECT_EQ(count["if"], 1);
    auto y = b.draw(step, 4);
    for (size_t k = 0; k < x.size(); ++k) {
      EXPECT_EQ(x[k].task, y[k].task);
      EXPECT_EQ(x[k].prompt, y[k].prompt);
    }
    auto z = other.draw(step, 4);
    for (size_t k = 0; k < x.size(); ++k) differs |= x[k].prompt != z[k].prompt;
  }
  EXPECT_TRUE(differs);
  EXPECT_EQ(math_epoch0.size(), 12u);  // 6 steps x 2 = one full epoch, no repeats
  EXPECT_EQ(a.epoch("math"), 0);
  EXPECT_EQ(a.cursor("math"), 12);
  a.draw(6, 4);
  EXPECT_EQ(a.epoch("math"), 1);
  EXPECT_EQ(a.epoch("if"), 1);  // 5 prompts, 7 drawn
  EXPECT_THROW(a.epoch("unused"), Error);
}

TEST(RlTaskMix, StateRoundTripContinuesTheSameSequence) {
  std::map<std::string, std::vector<int64_t>> pools = {{"math", {1, 2, 3, 4, 5, 6, 7}}, {"code", {8, 9, 10}}};
  const std::map<std::string, double> w = {{"math", 2}, {"code", 1}};
  TaskMixer a(w, pools, 9);
  for (int s = 0; s < 3; ++s) a.draw(s, 5);
  const auto packed = a.save_state().pack();
  TaskMixer b(w, pools, 9);
  b.restore_state(RlSavedState::unpack(packed, "rl/task_mix"));
  for (int s = 3; s < 8; ++s) {
    auto x = a.draw(s, 5), y = b.draw(s, 5);
    for (size_t k = 0; k < x.size(); ++k) EXPECT_EQ(x[k].prompt, y[k].prompt) << "step " << s;
  }
  // a changed pool cannot take the saved position
  auto changed = pools;
  changed["code"].push_back(11);
  TaskMixer c(w, changed, 9);
  EXPECT_THROW(c.restore_state(RlSavedState::unpack(packed, "rl/task_mix")), Error);
  TaskMixer only_math({{"math", 1}}, pools, 9);
  EXPECT_THROW(only_math.restore_state(RlSavedState::unpack(packed, "rl/task_mix")), Error);
}

TEST(RlTaskMix, RejectsMissingPools) {
  EXPECT_THROW(TaskMixer({{"math", 1}, {"code", 1}}, {{"math", {1}}}, 0), Error);
  EXPECT_THROW(TaskMixer({{"math", 1}}, {{"math", {}}}, 0), Error);
  TaskMixer ok({{"math", 1}, {"code", 0}}, {{"math", {1}}}, 0);  // weight 0 needs no pool
  EXPECT_EQ(ok.draw(0, 3).size(), 3u);
}

// ---- saved state packing -------------------------------------------------------------

TEST(RlSavedState, PackUnpackIsLossless) {
  RlSavedState s{{-5, 0, std::numeric_limits<int64_t>::max()},
                 {-0.0, 1.0 / 3, std::numeric_limits<double>::infinity(), std::nan("")}};
  RlSavedState t = RlSavedState::unpack(s.pack(), "x");
  EXPECT_EQ(t.ints, s.ints);
  ASSERT_EQ(t.doubles.size(), 4u);
  EXPECT_TRUE(std::signbit(t.doubles[0]));
  EXPECT_EQ(t.doubles[1], 1.0 / 3);
  EXPECT_TRUE(std::isinf(t.doubles[2]));
  EXPECT_TRUE(std::isnan(t.doubles[3]));
  auto p = s.pack();
  p.pop_back();
  EXPECT_THROW(RlSavedState::unpack(p, "x"), Error);
  EXPECT_THROW(RlSavedState::unpack({}, "x"), Error);
}
