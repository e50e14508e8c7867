// Tests of rl/trajectory_dump: write/read round trips (every field, optional
// fields absent, empty batch), rotation, and atomicity (a failed write leaves
// no .partial and no final file, and never damages an existing dump).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/h5util.h"
#include "rl/trajectory_dump.h"

namespace fs = std::filesystem;
using namespace temper;

namespace {

class DumpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::current_path() / "rl_dump_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(&tmpl[0]), nullptr);
    root_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  std::string dir() const { return root_ + "/dumps"; }
  int files_in_dir() const {
    int n = 0;
    for (const auto& e : fs::directory_iterator(dir())) (void)e, ++n;
    return n;
  }
  std::string root_;
};

TrajectoryBatch make_batch(int64_t step) {
  TrajectoryBatch b;
  b.step = step;
  b.algorithm = "gspo";
  b.prompt_index = {7, 7, 9};
  b.group = {0, 0, 1};
  b.task = {"math", "math", "code"};
  b.prompt_tokens = {{1, 2, 3}, {1, 2, 3}, {4}};
  b.response_tokens = {{10, 11}, {}, {12, 13, 14}};
  b.behaviour_logp = {{-0.5f, -1.25f}, {}, {-0.1f, -2.0f, -3.5f}};
  b.current_logp = {{-0.4f, -1.0f}, {}, {-0.2f, -2.5f, -3.0f}};
  b.reward = {1.0, 0.0, 0.25};
  b.verdict = {Verdict::Correct, Verdict::Unparsable, Verdict::Wrong};
  b.discarded = {0, 1, 0};
  b.advantage = {0.7071, 0.0, -0.7071};
  b.pass_rate = {0.4, 0.4, std::nan("")};
  b.finish_reason = {"stop", "length", "stop"};
  b.metrics = {{"loss", -0.125}, {"clip_frac_high", 0.01}};
  return b;
}

void expect_equal(const TrajectoryBatch& a, const TrajectoryBatch& b) {
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.algorithm, b.algorithm);
  EXPECT_EQ(a.prompt_index, b.prompt_index);
  EXPECT_EQ(a.group, b.group);
  EXPECT_EQ(a.task, b.task);
  EXPECT_EQ(a.prompt_tokens, b.prompt_tokens);
  EXPECT_EQ(a.response_tokens, b.response_tokens);
  EXPECT_EQ(a.behaviour_logp, b.behaviour_logp);
  EXPECT_EQ(a.current_logp, b.current_logp);
  EXPECT_EQ(a.reward, b.reward);
  EXPECT_EQ(a.verdict, b.verdict);
  EXPECT_EQ(a.discarded, b.discarded);
  EXPECT_EQ(a.advantage, b.advantage);
  ASSERT_EQ(a.pass_rate.size(), b.pass_rate.size());
  for (size_t i = 0; i < a.pass_rate.size(); ++i)
    EXPECT_TRUE(a.pass_rate[i] == b.pass_rate[i] || (std::isnan(a.pass_rate[i]) && std::isnan(b.pass_rate[i])));
  EXPECT_EQ(a.finish_reason, b.finish_reason);
  EXPECT_EQ(a.metrics, b.metrics);
}

}  // namespace

TEST_F(DumpTest, RoundTripEveryField) {
  TrajectoryDumper d(dir());
  const TrajectoryBatch b = make_batch(42);
  const std::string path = d.write(b);
  EXPECT_EQ(fs::path(path).filename(), "traj_000000042.h5");
  EXPECT_FALSE(fs::exists(d.partial_path_for(42)));
  expect_equal(read_trajectory_dump(path), b);

  // flat layout as documented: offsets N+1, lengths, verdict names, attributes
  h5::Hid f = h5::open_file(path);
  EXPECT_EQ(h5::read_attr_i64(f, "step", path), 42);
  EXPECT_EQ(h5::read_attr_string(f, "algorithm", path), "gspo");
  EXPECT_EQ(h5::read_attr_i64(f, "num_samples", path), 3);
  h5::Hid off = h5::open_dataset(f, "response_offsets", path);
  std::vector<int64_t> o(4);
  h5::read_dataset(off, H5T_NATIVE_INT64, o.data(), path);
  EXPECT_EQ(o, (std::vector<int64_t>{0, 2, 2, 5}));
  h5::Hid len = h5::open_dataset(f, "response_length", path);
  std::vector<int32_t> l(3);
  h5::read_dataset(len, H5T_NATIVE_INT32, l.data(), path);
  EXPECT_EQ(l, (std::vector<int32_t>{2, 0, 3}));
  h5::Hid v = h5::open_dataset(f, "verdict", path);
  EXPECT_EQ(h5::read_attr_string(v, "names", path), "correct,wrong,unparsable");
}

TEST_F(DumpTest, OptionalFieldsAbsentAndEmptyBatch) {
  TrajectoryDumper d(dir());
  TrajectoryBatch b = make_batch(3);
  b.group.clear();
  b.prompt_tokens.clear();
  b.current_logp.clear();
  b.pass_rate.clear();
  b.finish_reason.clear();
  b.metrics.clear();
  const std::string path = d.write(b);
  TrajectoryBatch r = read_trajectory_dump(path);
  expect_equal(r, b);
  {
    h5::Hid f = h5::open_file(path);
    EXPECT_FALSE(h5::exists(f, "current_logp"));
    EXPECT_FALSE(h5::exists(f, "prompt_tokens"));
  }

  TrajectoryBatch empty;
  empty.step = 4;
  empty.algorithm = "grpo";
  TrajectoryBatch e = read_trajectory_dump(d.write(empty));
  EXPECT_EQ(e.size(), 0u);
  EXPECT_EQ(e.algorithm, "grpo");
}

TEST_F(DumpTest, InconsistentBatchIsRefusedBeforeWriting) {
  TrajectoryDumper d(dir());
  TrajectoryBatch b = make_batch(5);
  b.reward.pop_back();
  EXPECT_THROW(d.write(b), Error);
  b = make_batch(5);
  b.behaviour_logp[2].pop_back();
  EXPECT_THROW(d.write(b), Error);
  b = make_batch(5);
  b.pass_rate = {0.5};  // optional, but when given it needs N entries
  EXPECT_THROW(d.write(b), Error);
  EXPECT_FALSE(fs::exists(d.path_for(5)));
  EXPECT_FALSE(fs::exists(d.partial_path_for(5)));
}

TEST_F(DumpTest, FailureMidWriteLeavesNoPartialAndKeepsOldDump) {
  TrajectoryDumper d(dir());
  const TrajectoryBatch good = make_batch(8);
  const std::string path = d.write(good);
  // A NUL byte in a string is only detected while the file is being written.
  TrajectoryBatch bad = make_batch(8);
  bad.task[1] = std::string("ma\0th", 5);
  EXPECT_THROW(d.write(bad), Error);
  EXPECT_FALSE(fs::exists(d.partial_path_for(8)));
  EXPECT_EQ(files_in_dir(), 1);
  expect_equal(read_trajectory_dump(path), good);  // the earlier dump of that step is intact
}

TEST_F(DumpTest, FailedRenameLeavesNoPartial) {
  TrajectoryDumper d(dir());
  fs::create_directories(d.path_for(9));  // a directory where the dump should go
  fs::create_directories(d.path_for(9) + "/x");
  EXPECT_THROW(d.write(make_batch(9)), Error);
  EXPECT_FALSE(fs::exists(d.partial_path_for(9)));
  EXPECT_TRUE(fs::is_directory(d.path_for(9)));
}

TEST_F(DumpTest, RefusesPartialAndIncompleteFiles) {
  TrajectoryDumper d(dir());
  fs::create_directories(dir());
  const std::string partial = d.partial_path_for(1);
  { h5::Hid f = h5::create_file(partial); }
  EXPECT_THROW(read_trajectory_dump(partial), Error);
  const std::string incomplete = d.path_for(1);
  {
    h5::Hid f = h5::create_file(incomplete);
    h5::write_attr_int(f, "format_version", 1, incomplete);
  }
  try {
    read_trajectory_dump(incomplete);
    FAIL() << "an incomplete dump was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("complete"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_trajectory_dump(dir() + "/nope.h5"), Error);
}

TEST_F(DumpTest, KeepLastRotatesOldestAndListsInStepOrder) {
  TrajectoryDumper d(dir(), 2);
  for (int64_t s : {10, 2, 30}) d.write(make_batch(s));
  auto l = d.list();
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(fs::path(l[0]).filename(), "traj_000000010.h5");
  EXPECT_EQ(fs::path(l[1]).filename(), "traj_000000030.h5");
}
