// Tests of io/checkpoint and io/h5util: round trips of every dtype, atomic
// writes, rotation, and detection of truncated / bit-flipped / partial /
// incomplete checkpoints (each skipped by load_latest_valid, refused by load).
#include <gtest/gtest.h>
#include <hdf5.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

#include "core/bf16.h"
#include "io/checkpoint.h"
#include "io/h5util.h"

namespace fs = std::filesystem;
using namespace temper;

namespace {

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::current_path() / "ckpt_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(&tmpl[0]), nullptr);
    root_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(root_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(root_, ec);
  }
  std::string dir(const std::string& sub = "store") const { return (fs::path(root_) / sub).string(); }
  std::string root_;
};

Tensor filled(const Shape& shape, DType dt, int seed) {
  Tensor t = Tensor::empty(shape, dt);
  auto* b = static_cast<unsigned char*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); ++i) b[i] = static_cast<unsigned char>((i * 31 + seed * 7 + 1) & 0xff);
  return t;
}

CheckpointState make_state(int64_t step) {
  CheckpointState s;
  s.step = step;
  s.phase = "sft";
  s.deck_text = "[run]\nphase = sft\n# step " + std::to_string(step) + "\n";
  s.mesh = {2, 2, 1};
  s.tensors["w"] = filled({64, 16}, DType::F32, static_cast<int>(step));
  s.strings["data_position"] = "{\"doc\": " + std::to_string(step) + "}";
  s.u64["rng/main"] = {1, 2, 3, static_cast<uint64_t>(step)};
  return s;
}

void expect_same(const Tensor& a, const Tensor& b, const std::string& name) {
  ASSERT_TRUE(b.defined()) << name;
  EXPECT_EQ(a.dtype(), b.dtype()) << name;
  EXPECT_EQ(a.shape(), b.shape()) << name;
  ASSERT_EQ(a.nbytes(), b.nbytes()) << name;
  EXPECT_EQ(0, std::memcmp(a.raw(), b.raw(), a.nbytes())) << name;
}

// A bytewise CRC-32, independent of the slicing-by-8 implementation.
uint32_t crc_ref(const unsigned char* p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error thrown)";
}

// Writes steps 1 and 2, lets `corrupt` damage step 2's file, then checks that
// load_latest_valid falls back to step 1 and that load(step 2) names the file.
template <typename F>
std::string check_fallback(const std::string& dir, F&& corrupt) {
  CheckpointStore store(dir, 0);
  store.write(make_state(1));
  std::string p2 = store.write(make_state(2));
  std::string damaged = corrupt(p2);
  std::string path;
  auto s = store.load_latest_valid(&path);
  EXPECT_TRUE(s.has_value());
  EXPECT_EQ(s ? s->step : -1, 1);
  EXPECT_EQ(path, store.path_for(1));
  std::string msg = error_of([&] { CheckpointStore::load(damaged); });
  EXPECT_NE(msg.find(fs::path(damaged).filename().string()), std::string::npos) << msg;
  EXPECT_NE(msg, "(no error thrown)");
  EXPECT_THROW(CheckpointStore::verify(damaged), Error);
  return msg;
}

}  // namespace

TEST(H5Util, Crc32MatchesKnownValueAndBytewiseReference) {
  const char* s = "123456789";
  EXPECT_EQ(h5::crc32(s, 9), 0xCBF43926u);
  EXPECT_EQ(h5::crc32(s, 0), 0u);
  EXPECT_EQ(h5::crc32(s + 4, 5, h5::crc32(s, 4)), 0xCBF43926u);  // chaining
  std::vector<unsigned char> buf(77);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<unsigned char>(i * 151 + 3);
  for (size_t off = 0; off < 3; ++off)
    for (size_t n = 0; n + off <= buf.size(); n += 5)
      EXPECT_EQ(h5::crc32(buf.data() + off, n), crc_ref(buf.data() + off, n)) << off << " " << n;
}

TEST_F(CheckpointTest, RoundTripEveryDtypeShapeAndMeta) {
  CheckpointState s;
  s.step = 7;
  s.phase = "rl";
  s.deck_text = "[model]\nname = tiny  # comment\n\n[train]\nlr = 1e-4\n";
  s.mesh = {1, 4, 2};
  s.tensors["f32"] = filled({2, 3}, DType::F32, 1);
  s.tensors["f64"] = filled({4}, DType::F64, 2);
  Tensor bf = Tensor::empty({3, 2}, DType::BF16);
  for (int i = 0; i < 6; ++i) bf.data<uint16_t>()[i] = float_to_bf16(0.37f * i - 1.0f);
  s.tensors["layers/0/attn/wq_bf16"] = bf;
  s.tensors["f16"] = filled({5}, DType::F16, 3);
  s.tensors["i32"] = filled({2, 2}, DType::I32, 4);
  s.tensors["i64"] = filled({3}, DType::I64, 5);
  s.tensors["u8"] = filled({7}, DType::U8, 6);
  Tensor scalar = Tensor::empty({}, DType::F32);
  *scalar.data<float>() = 3.5f;
  s.tensors["scalar"] = scalar;
  s.tensors["opt/empty"] = Tensor::empty({0, 3}, DType::I64);
  s.tensors["opt/m/layers/0/attn/wq_bf16"] = filled({3, 2}, DType::F32, 8);
  s.strings["scheduler"] = "{\"step\": 7, \"lr\": 0.0001}";
  s.strings["empty"] = "";
  s.strings["data/position"] = "{\"shard\": 3, \"offset\": 12345}";
  s.u64["rng/rank0"] = {0, 1, std::numeric_limits<uint64_t>::max(), 0x0123456789abcdefull};
  s.u64["counters"] = {};

  CheckpointStore store(dir(), 3);
  std::string path = store.write(s);
  EXPECT_EQ(fs::path(path).filename().string(), "ckpt_000000007.h5");
  EXPECT_TRUE(fs::is_regular_file(path));
  EXPECT_FALSE(fs::exists(store.partial_path_for(7)));
  EXPECT_NO_THROW(CheckpointStore::verify(path));

  CheckpointState r = CheckpointStore::load(path);
  EXPECT_EQ(r.step, 7);
  EXPECT_EQ(r.phase, "rl");
  EXPECT_EQ(r.deck_text, s.deck_text);
  EXPECT_EQ(r.mesh, s.mesh);
  ASSERT_EQ(r.tensors.size(), s.tensors.size());
  for (const auto& [name, t] : s.tensors) expect_same(t, r.tensors[name], name);
  EXPECT_EQ(r.tensors["scalar"].ndim(), 0);
  EXPECT_EQ(*r.tensors["scalar"].data<float>(), 3.5f);
  EXPECT_EQ(r.strings, s.strings);
  EXPECT_EQ(r.u64, s.u64);

  // The on-disk layout is the documented one.
  h5::Silence quiet;
  h5::Hid f = h5::open_file(path);
  EXPECT_EQ(h5::read_attr_string(f, "code_version", path), TEMPER_VERSION);
  EXPECT_EQ(h5::read_attr_i64(f, "format_version", path), kCheckpointFormatVersion);
  EXPECT_EQ(h5::read_attr_string(f, "created", path).size(), 20u);  // 2025-01-02T03:04:05Z
  h5::Hid d = h5::open_dataset(f, "tensors/layers/0/attn/wq_bf16", path);
  EXPECT_EQ(h5::read_attr_string(d, "dtype", path), "bf16");
  h5::Hid ty(H5Dget_type(d));
  EXPECT_GT(H5Tequal(ty, H5T_STD_U16LE), 0);
  // format 2: one slice (one writer), its CRC-32
  EXPECT_EQ(h5::read_attr_i64s(d, "slices", path), (std::vector<int64_t>{0, bf.numel()}));
  EXPECT_EQ(h5::read_attr_u32s(d, "slice_crc32", path), std::vector<uint32_t>{h5::crc32(bf.raw(), bf.nbytes())});
}

TEST_F(CheckpointTest, EmptyMeshAndNoTensorsRoundTrip) {
  CheckpointState s;
  s.step = 0;
  s.phase = "toy";
  CheckpointStore store(dir(), 1);
  CheckpointState r = CheckpointStore::load(store.write(s));
  EXPECT_TRUE(r.mesh.empty());
  EXPECT_TRUE(r.tensors.empty());
  EXPECT_EQ(r.deck_text, "");
  EXPECT_EQ(r.phase, "toy");
}

TEST_F(CheckpointTest, ListIsNewestFirstAndLatestValidPicksNewest) {
  CheckpointStore store(dir(), 0);
  EXPECT_TRUE(store.list().empty());
  EXPECT_FALSE(store.load_latest_valid().has_value());
  for (int64_t step : {5, 12, 3}) store.write(make_state(step));
  std::vector<std::string> want = {store.path_for(12), store.path_for(5), store.path_for(3)};
  EXPECT_EQ(store.list(), want);
  std::string path;
  auto s = store.load_latest_valid(&path);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->step, 12);
  EXPECT_EQ(path, store.path_for(12));
  expect_same(make_state(12).tensors["w"], s->tensors["w"], "w");
}

TEST_F(CheckpointTest, RewritingAStepReplacesIt) {
  CheckpointStore store(dir(), 0);
  store.write(make_state(4));
  CheckpointState s = make_state(4);
  s.strings["data_position"] = "{\"doc\": 99}";
  store.write(s);
  EXPECT_EQ(store.list().size(), 1u);
  EXPECT_EQ(CheckpointStore::load(store.path_for(4)).strings["data_position"], "{\"doc\": 99}");
}

TEST_F(CheckpointTest, TruncatedFileIsSkipped) {
  check_fallback(dir(), [](const std::string& p) {
    fs::resize_file(p, fs::file_size(p) / 2);
    return p;
  });
}

TEST_F(CheckpointTest, BitFlippedTensorByteIsSkipped) {
  std::string msg = check_fallback(dir(), [](const std::string& p) {
    haddr_t off;
    {
      h5::Silence quiet;
      h5::Hid f = h5::open_file(p);
      h5::Hid d = h5::open_dataset(f, "tensors/w", p);
      off = H5Dget_offset(d);
    }
    EXPECT_NE(off, HADDR_UNDEF);
    std::fstream io(p, std::ios::in | std::ios::out | std::ios::binary);
    io.seekg(static_cast<std::streamoff>(off + 100));
    char c = 0;
    io.read(&c, 1);
    c ^= 0x10;
    io.seekp(static_cast<std::streamoff>(off + 100));
    io.write(&c, 1);
    return p;
  });
  EXPECT_NE(msg.find("checksum mismatch"), std::string::npos) << msg;
  EXPECT_NE(msg.find("/tensors/w"), std::string::npos) << msg;
}

TEST_F(CheckpointTest, LeftoverPartialIsIgnored) {
  // The worst case: a fully written file whose rename never happened.
  check_fallback(dir(), [](const std::string& p) {
    std::string partial = (fs::path(p).parent_path() / ".ckpt_000000002.h5.partial").string();
    fs::rename(p, partial);
    return partial;
  });
}

TEST_F(CheckpointTest, FileWithoutCompleteAttributeIsSkipped) {
  std::string msg = check_fallback(dir(), [](const std::string& p) {
    h5::Silence quiet;
    h5::Hid f = h5::open_file(p, true);
    EXPECT_GE(H5Adelete(f, "complete"), 0);
    return p;
  });
  EXPECT_NE(msg.find("complete"), std::string::npos) << msg;
}

TEST_F(CheckpointTest, FileWhoseStepDisagreesWithItsNameIsSkipped) {
  CheckpointStore store(dir(), 0);
  std::string p3 = store.write(make_state(3));
  fs::copy_file(p3, store.path_for(9));
  auto s = store.load_latest_valid();
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->step, 3);
}

TEST_F(CheckpointTest, RotationKeepsExactlyK) {
  CheckpointStore store(dir(), 3);
  std::ofstream(store.partial_path_for(2)) << "junk from a crash";
  for (int64_t step = 1; step <= 6; ++step) store.write(make_state(step));
  std::vector<std::string> want = {store.path_for(6), store.path_for(5), store.path_for(4)};
  EXPECT_EQ(store.list(), want);
  EXPECT_FALSE(fs::exists(store.partial_path_for(2)));  // stale partial cleaned up
  for (const auto& p : store.list()) EXPECT_NO_THROW(CheckpointStore::verify(p));
  // A later-step file (e.g. one that failed to load) is neither counted nor removed.
  fs::copy_file(store.path_for(6), store.path_for(50));
  store.write(make_state(7));
  want = {store.path_for(50), store.path_for(7), store.path_for(6), store.path_for(5)};
  EXPECT_EQ(store.list(), want);
}

TEST_F(CheckpointTest, WriteCreatesNestedDirectory) {
  CheckpointStore store(dir("a/b/c"), 2);
  std::string p = store.write(make_state(1));
  EXPECT_TRUE(fs::is_regular_file(p));
  EXPECT_EQ(fs::path(p).parent_path(), fs::path(dir("a/b/c")));
}

TEST_F(CheckpointTest, UnwritableLocationThrowsAndKeepsOlderCheckpoints) {
  CheckpointStore store(dir(), 2);
  store.write(make_state(1));
  store.write(make_state(2));
  // The temporary file cannot be created (a directory is in its way).
  fs::create_directory(store.partial_path_for(3));
  std::string msg = error_of([&] { store.write(make_state(3)); });
  EXPECT_NE(msg.find(".ckpt_000000003.h5.partial"), std::string::npos) << msg;
  std::vector<std::string> want = {store.path_for(2), store.path_for(1)};
  EXPECT_EQ(store.list(), want);
  for (const auto& p : want) EXPECT_NO_THROW(CheckpointStore::verify(p));
  EXPECT_TRUE(fs::is_directory(store.partial_path_for(3)));

  // The directory cannot be created (a file is in its way).
  std::ofstream(dir("file")) << "x";
  CheckpointStore bad(dir("file/sub"), 2);
  msg = error_of([&] { bad.write(make_state(1)); });
  EXPECT_NE(msg.find("file/sub"), std::string::npos) << msg;

  // A read-only directory (meaningless as root, who may write anyway).
  if (geteuid() != 0) {
    fs::remove(store.partial_path_for(3));
    fs::permissions(dir(), fs::perms::owner_read | fs::perms::owner_exec);
    EXPECT_THROW(store.write(make_state(3)), Error);
    fs::permissions(dir(), fs::perms::owner_all);
    EXPECT_EQ(store.list(), want);
  }
}

TEST_F(CheckpointTest, BadInputsThrowAndLeaveNoFile) {
  CheckpointStore store(dir(), 2);
  store.write(make_state(1));
  CheckpointState s = make_state(2);
  s.tensors["a//b"] = filled({1}, DType::F32, 0);
  EXPECT_NE(error_of([&] { store.write(s); }).find("a//b"), std::string::npos);

  s = make_state(2);
  float x = 0;
  s.tensors["gpu_w"] = Tensor::wrap(&x, {1}, DType::F32, Device::CUDA);
  EXPECT_NE(error_of([&] { store.write(s); }).find("gpu_w"), std::string::npos);

  s = make_state(2);
  s.tensors["x"] = filled({2}, DType::F32, 0);
  s.tensors["x/y"] = filled({2}, DType::F32, 0);  // "x" cannot be a dataset and a group
  EXPECT_NE(error_of([&] { store.write(s); }).find("x/y"), std::string::npos);

  EXPECT_FALSE(fs::exists(store.partial_path_for(2)));
  EXPECT_FALSE(fs::exists(store.path_for(2)));
  EXPECT_EQ(store.list(), std::vector<std::string>{store.path_for(1)});
}

TEST_F(CheckpointTest, LoadNamesMissingAndNonHdf5Files) {
  std::string missing = dir("nope.h5");
  EXPECT_NE(error_of([&] { CheckpointStore::load(missing); }).find("nope.h5"), std::string::npos);
  std::string junk = (fs::path(root_) / "ckpt_000000001.h5").string();
  std::ofstream(junk) << "this is not an HDF5 file";
  std::string msg = error_of([&] { CheckpointStore::load(junk); });
  EXPECT_NE(msg.find("ckpt_000000001.h5"), std::string::npos) << msg;
}
