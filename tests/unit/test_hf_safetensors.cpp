// safetensors reader/writer: round trips (f32, bf16, f16 read), header validation
// on damaged or lying files (each error names the file), sharded sets and the
// committed transformers fixtures.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>

#include "core/bf16.h"
#include "io/safetensors.h"
#include "unit/run_util.h"

using namespace temper;
using temper_test::fresh_dir;
namespace fs = std::filesystem;

namespace {

// A fresh directory removed when the test ends (pass or fail).
struct TempDir {
  fs::path p;
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(p, ec);
  }
};

Tensor ramp(const Shape& s, float scale, float offset) {
  Tensor t = Tensor::empty(s, DType::F32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = offset + scale * float(i) * (i % 3 == 0 ? -1.f : 1.f);
  return t;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A raw file: u64 header length, header, data.
void write_raw(const fs::path& p, const std::string& header, const std::string& data, int64_t claimed_len = -1) {
  std::ofstream out(p, std::ios::binary);
  const uint64_t n = claimed_len >= 0 ? uint64_t(claimed_len) : header.size();
  for (int i = 0; i < 8; ++i) out.put(char((n >> (8 * i)) & 0xff));
  out << header << data;
}

std::string f32_bytes(const std::vector<float>& v) { return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4); }

}  // namespace

TEST(HfSafetensors, RoundTripF32KeepsEveryBitAndPadsHeader) {
  TempDir dir_guard{fresh_dir("st_f32")};
  const fs::path& dir = dir_guard.p;
  const std::string path = (dir / "a.safetensors").string();
  NamedTensors in = {{"z.weight", ramp({3, 5}, 0.37f, 1.f)}, {"a.bias", ramp({7}, -1e-3f, 2.f)},
                     {"m.scalar", ramp({}, 1.f, 3.5f)}, {"m.empty", Tensor::empty({0, 4}, DType::F32)}};
  in[0].second.data<float>()[4] = std::nextafter(1.0f, 2.0f);  // a value bf16 would round
  const uint64_t bytes = write_safetensors(path, in, DType::F32);
  EXPECT_EQ(bytes, uint64_t(4 * (15 + 7 + 1)));
  EXPECT_FALSE(fs::exists(path + ".partial"));

  // header: 8-byte aligned, padded with spaces, metadata as transformers writes it
  std::ifstream f(path, std::ios::binary);
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  EXPECT_EQ(n % 8, 0u);
  std::string header(n, '\0');
  f.read(header.data(), std::streamsize(n));
  EXPECT_EQ(fs::file_size(path), 8 + n + bytes);
  EXPECT_EQ(nlohmann::json::parse(header)["__metadata__"]["format"], "pt");

  SafetensorsFile st = SafetensorsFile::open(path);
  EXPECT_EQ(st.metadata().at("format"), "pt");
  EXPECT_EQ(st.names(), (std::vector<std::string>{"a.bias", "m.empty", "m.scalar", "z.weight"}));
  for (const auto& [name, t] : in) {
    Tensor r = st.read_f32(name);
    ASSERT_EQ(r.shape(), t.shape()) << name;
    EXPECT_EQ(st.info(name).dtype, "F32");
    for (int64_t i = 0; i < t.numel(); ++i) EXPECT_EQ(r.data<float>()[i], t.data<float>()[i]) << name << " " << i;
  }
  EXPECT_NE(error_of([&] { st.read_f32("nope"); }).find(path), std::string::npos);
}

TEST(HfSafetensors, RoundTripBf16RoundsToNearestEven) {
  TempDir dir_guard{fresh_dir("st_bf16")};
  const fs::path& dir = dir_guard.p;
  const std::string path = (dir / "b.safetensors").string();
  Tensor t = ramp({4, 33}, 0.0123f, -0.7f);
  Tensor d = Tensor::empty({5}, DType::F64);
  for (int i = 0; i < 5; ++i) d.data<double>()[i] = 1.0 / (i + 3);
  const uint64_t bytes = write_safetensors(path, {{"w", t}, {"d", d}}, DType::BF16);
  EXPECT_EQ(bytes, uint64_t(2 * (132 + 5)));
  SafetensorsFile st = SafetensorsFile::open(path);
  EXPECT_EQ(st.info("w").dtype, "BF16");
  Tensor r = st.read_f32("w");
  int differ = 0;
  for (int64_t i = 0; i < t.numel(); ++i) {
    const float v = t.data<float>()[i];
    EXPECT_EQ(r.data<float>()[i], bf16_to_float(float_to_bf16(v)));
    EXPECT_LE(std::fabs(r.data<float>()[i] - v), std::fabs(v) / 256 + 1e-30f);
    differ += r.data<float>()[i] != v;
  }
  EXPECT_GT(differ, 0);  // bf16 really was stored
  Tensor rd = st.read_f32("d");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(rd.data<float>()[i], bf16_to_float(float_to_bf16(float(1.0 / (i + 3)))));
  EXPECT_THROW(write_safetensors(path, {{"w", t}}, DType::F64), Error);
}

TEST(HfSafetensors, ReadsF16Exactly) {
  TempDir dir_guard{fresh_dir("st_f16")};
  const fs::path& dir = dir_guard.p;
  const fs::path p = dir / "h.safetensors";
  // 1, -2, 65504 (max), 2^-24 (smallest subnormal), 0.5, -0
  const uint16_t h[] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x3800, 0x8000};
  std::string header = R"({"x":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]}})";
  write_raw(p, header, std::string(reinterpret_cast<const char*>(h), 12));
  Tensor r = SafetensorsFile::open(p.string()).read_f32("x");
  const float want[] = {1.f, -2.f, 65504.f, std::ldexp(1.f, -24), 0.5f, -0.f};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(r.data<float>()[i], want[i]) << i;
  EXPECT_TRUE(std::signbit(r.data<float>()[5]));
}

TEST(HfSafetensors, DamagedOrLyingFilesNameTheFile) {
  TempDir dir_guard{fresh_dir("st_bad")};
  const fs::path& dir = dir_guard.p;
  const std::string data = f32_bytes({1, 2, 3, 4});
  struct Case {
    const char* name;
    std::string header;
    std::string data;
    int64_t claimed;
    const char* expect;
  };
  const std::vector<Case> cases = {
      {"tiny", "", "", -2, "truncated"},
      {"beyond", R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", data, 1 << 20, "beyond the end"},
      {"notjson", R"({"x":{"dtype":"F32",)", data, -1, "not valid JSON"},
      {"notobject", R"([1,2,3])", data, -1, "not a JSON object"},
      {"dtype", R"({"x":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})", data, -1, "'I64' is not supported"},
      {"shape", R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", data, -1, "needs 12 bytes"},
      {"offsets", R"({"x":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})", data, -1, "beyond the data section"},
      {"reversed", R"({"x":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", data, -1, "reversed"},
      {"negative", R"({"x":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", data, -1, "non-negative"},
      {"overlap",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       data, -1, "overlap"},
      {"fields", R"({"x":{"dtype":"F32","shape":[4]}})", data, -1, "data_offsets"},
      {"metadata", R"({"__metadata__":{"format":1},"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", data,
       -1, "__metadata__"},
  };
  for (const auto& c : cases) {
    const fs::path p = dir / (std::string(c.name) + ".safetensors");
    if (c.claimed == -2) {
      std::ofstream(p, std::ios::binary) << "abc";
    } else {
      write_raw(p, c.header, c.data, c.claimed);
    }
    const std::string msg = error_of([&] { SafetensorsFile::open(p.string()); });
    EXPECT_NE(msg.find(p.string()), std::string::npos) << c.name << ": " << msg;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.name << ": " << msg;
  }
  // a good file cut short: the last tensor's range now ends past the data
  const std::string good = (dir / "good.safetensors").string();
  write_safetensors(good, {{"a", ramp({8}, 1, 0)}, {"b", ramp({8}, 2, 0)}}, DType::F32);
  fs::resize_file(good, fs::file_size(good) - 5);
  const std::string msg = error_of([&] { SafetensorsFile::open(good); });
  EXPECT_NE(msg.find(good), std::string::npos) << msg;
  EXPECT_NE(msg.find("'b'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("beyond the data section"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { SafetensorsFile::open((dir / "missing.safetensors").string()); }).find("missing"),
            std::string::npos);
}

TEST(HfSafetensors, ShardedWriteReadsBackAndReplacesStaleFiles) {
  TempDir dir_guard{fresh_dir("st_shards")};
  const fs::path& dir = dir_guard.p;
  NamedTensors in;
  for (int i = 0; i < 7; ++i) in.emplace_back("t" + std::to_string(i), ramp({10, 3 + i}, 0.5f, float(i)));
  // 10*3*4 = 120 .. 10*9*4 = 360 bytes each; a 400-byte limit gives several shards, t6 (360) alone
  auto files = write_safetensors_sharded(dir.string(), in, DType::F32, 400);
  ASSERT_GE(files.size(), 4u);
  EXPECT_EQ(files.back(), "model.safetensors.index.json");
  const size_t n_shards = files.size() - 1;
  EXPECT_EQ(files[0], "model-00001-of-0000" + std::to_string(n_shards) + ".safetensors");
  auto index = nlohmann::json::parse(temper_test::read_file(dir / "model.safetensors.index.json"));
  uint64_t total = 0;
  for (const auto& [name, t] : in) total += uint64_t(t.numel()) * 4;
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total);
  EXPECT_EQ(index["weight_map"].size(), in.size());
  for (size_t i = 0; i + 1 < files.size(); ++i) {
    SafetensorsFile f = SafetensorsFile::open((dir / files[i]).string());
    uint64_t bytes = 0;
    for (const auto& n : f.names()) bytes += f.info(n).end - f.info(n).begin;
    EXPECT_LE(bytes, 400u) << files[i];
  }
  SafetensorsSet set = SafetensorsSet::open_dir(dir.string());
  ASSERT_EQ(set.names().size(), in.size());
  for (const auto& [name, t] : in) {
    Tensor r = set.read_f32(name);
    ASSERT_EQ(r.shape(), t.shape());
    for (int64_t i = 0; i < t.numel(); ++i) ASSERT_EQ(r.data<float>()[i], t.data<float>()[i]) << name;
  }
  // rewriting as one file removes the shards and the index
  files = write_safetensors_sharded(dir.string(), in, DType::BF16, 1 << 20);
  EXPECT_EQ(files, (std::vector<std::string>{"model.safetensors"}));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
  EXPECT_EQ(SafetensorsSet::open_dir(dir.string()).info("t3").dtype, "BF16");
}

TEST(HfSafetensors, IndexErrorsNameTheIndexAndTensor) {
  TempDir dir_guard{fresh_dir("st_index")};
  const fs::path& dir = dir_guard.p;
  write_safetensors((dir / "s1.safetensors").string(), {{"a", ramp({2}, 1, 0)}}, DType::F32);
  temper_test::write_file(dir / "model.safetensors.index.json", R"({"weight_map":{"a":"s1.safetensors","b":"s1.safetensors"}})");
  std::string msg = error_of([&] { SafetensorsSet::open_dir(dir.string()); });
  EXPECT_NE(msg.find("model.safetensors.index.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'b'"), std::string::npos) << msg;
  temper_test::write_file(dir / "model.safetensors.index.json", R"({"weight_map":{"a":"s2.safetensors"}})");
  msg = error_of([&] { SafetensorsSet::open_dir(dir.string()); });
  EXPECT_NE(msg.find("s2.safetensors"), std::string::npos) << msg;
  // without an index, two files holding one name are ambiguous
  fs::remove(dir / "model.safetensors.index.json");
  write_safetensors((dir / "s2.safetensors").string(), {{"a", ramp({2}, 1, 0)}}, DType::F32);
  msg = error_of([&] { SafetensorsSet::open_dir(dir.string()); });
  EXPECT_NE(msg.find("both"), std::string::npos) << msg;
}

TEST(HfSafetensors, TransformersShardedFixtureReadsEveryTensor) {
  const fs::path dir = fs::path(TEMPER_SOURCE_DIR) / "tests/fixtures/hf/models/qwen2_tied_sharded";
  SafetensorsSet set = SafetensorsSet::open_dir(dir.string());
  auto ref = nlohmann::json::parse(temper_test::read_file(dir / "reference.json"));
  ASSERT_EQ(set.names().size(), ref["params"].size());
  std::set<std::string> files;
  for (auto it = ref["params"].begin(); it != ref["params"].end(); ++it) {
    ASSERT_TRUE(set.contains(it.key())) << it.key();
    EXPECT_EQ(set.info(it.key()).shape, it.value().get<Shape>()) << it.key();
    files.insert(set.file_of(it.key()));
  }
  EXPECT_EQ(files.size(), 6u);
  Tensor norm = set.read_f32("model.norm.weight");
  double s = 0;
  for (int64_t i = 0; i < norm.numel(); ++i) s += norm.data<float>()[i];
  EXPECT_GT(std::fabs(s / double(norm.numel()) - 1.0), 1e-4);  // perturbed by the generator: real data
  EXPECT_LT(std::fabs(s / double(norm.numel()) - 1.0), 0.2);
}
