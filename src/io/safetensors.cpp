// safetensors reader (mmap + header validation), sharded-set reader and atomic writer.
#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/bf16.h"
#include "core/error.h"
#include "core/file_write.h"

namespace temper {

namespace fs = std::filesystem;

namespace {

// A header larger than this is certainly not a weight file (transformers uses 100 MB too).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

size_t st_dtype_size(const std::string& d) {
  if (d == "F32") return 4;
  if (d == "BF16" || d == "F16") return 2;
  return 0;
}

// IEEE half -> float, exact (subnormals, infinities and NaN included).
float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const int exp = (h >> 10) & 0x1f;
  const uint32_t man = h & 0x3ffu;
  float f;
  if (exp == 0) {
    f = std::ldexp(float(man), -24);  // zero or subnormal
  } else if (exp == 31) {
    f = man ? std::nanf("") : INFINITY;
  } else {
    f = std::ldexp(float(man | 0x400u), exp - 25);
  }
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u |= sign;
  std::memcpy(&f, &u, 4);
  return f;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TEMPER_CHECK(in.good(), "cannot open '", path, "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

// ---- reader -------------------------------------------------------------------

struct SafetensorsFile::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr && size) ::munmap(addr, size);
  }
};

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY);
  TEMPER_CHECK(fd >= 0, "cannot open safetensors file '", path, "': ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail("cannot stat safetensors file '", path, "': ", std::strerror(errno));
  }
  const uint64_t size = uint64_t(st.st_size);
  if (size < 8) {
    ::close(fd);
    fail("safetensors file '", path, "' is truncated: ", size, " bytes, less than the 8-byte header length");
  }
  f.map_ = std::make_shared<Mapping>();
  void* addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  TEMPER_CHECK(addr != MAP_FAILED, "cannot map safetensors file '", path, "': ", std::strerror(errno));
  f.map_->addr = addr;
  f.map_->size = size;
  const uint8_t* base = static_cast<const uint8_t*>(addr);

  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(base[i]) << (8 * i);
  TEMPER_CHECK(n <= kMaxHeaderBytes && n <= size - 8, "safetensors file '", path, "': header length ", n,
               " goes beyond the end of the file (", size, " bytes): truncated or not a safetensors file");
  const uint64_t data_size = size - 8 - n;
  f.data_ = base + 8 + n;

  nlohmann::json h;
  try {
    h = nlohmann::json::parse(reinterpret_cast<const char*>(base + 8), reinterpret_cast<const char*>(base + 8 + n));
  } catch (const nlohmann::json::exception& e) {
    fail("safetensors file '", path, "': the header is not valid JSON (", e.what(), ")");
  }
  TEMPER_CHECK(h.is_object(), "safetensors file '", path, "': the header is not a JSON object");

  std::vector<const SafetensorsInfo*> by_offset;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const auto& e = it.value();
    if (name == "__metadata__") {
      TEMPER_CHECK(e.is_object(), "safetensors file '", path, "': __metadata__ must be an object of strings");
      for (auto m = e.begin(); m != e.end(); ++m) {
        TEMPER_CHECK(m.value().is_string(), "safetensors file '", path, "': __metadata__ entry '", m.key(),
                     "' is not a string");
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto where = [&]() { return cat("safetensors file '", path, "', tensor '", name, "': "); };
    TEMPER_CHECK(e.is_object() && e.contains("dtype") && e["dtype"].is_string() && e.contains("shape") &&
                     e["shape"].is_array() && e.contains("data_offsets") && e["data_offsets"].is_array() &&
                     e["data_offsets"].size() == 2,
                 where(), "expected {\"dtype\": str, \"shape\": [..], \"data_offsets\": [begin, end]}, got ",
                 e.dump());
    SafetensorsInfo info;
    info.name = name;
    info.dtype = e["dtype"].get<std::string>();
    const size_t esize = st_dtype_size(info.dtype);
    TEMPER_CHECK(esize != 0, where(), "dtype '", info.dtype, "' is not supported (BF16, F16 and F32 are)");
    uint64_t numel = 1;
    for (const auto& d : e["shape"]) {
      TEMPER_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0), where(),
                   "shape ", e["shape"].dump(), " must hold non-negative integers");
      const uint64_t v = d.get<uint64_t>();
      TEMPER_CHECK(v == 0 || numel <= (uint64_t(1) << 62) / v, where(), "shape ", e["shape"].dump(), " is too large");
      numel *= v;
      info.shape.push_back(int64_t(v));
    }
    for (const auto& o : e["data_offsets"])
      TEMPER_CHECK(o.is_number_unsigned() || (o.is_number_integer() && o.get<int64_t>() >= 0), where(),
                   "data_offsets ", e["data_offsets"].dump(), " must be non-negative integers");
    info.begin = e["data_offsets"][0].get<uint64_t>();
    info.end = e["data_offsets"][1].get<uint64_t>();
    TEMPER_CHECK(info.begin <= info.end, where(), "data_offsets [", info.begin, ", ", info.end, "] are reversed");
    TEMPER_CHECK(info.end <= data_size, where(), "data_offsets [", info.begin, ", ", info.end,
                 "] go beyond the data section (", data_size, " bytes): the file is truncated or the header lies");
    TEMPER_CHECK(info.end - info.begin == numel * esize, where(), "shape ", shape_str(info.shape), " of ",
                 info.dtype, " needs ", numel * esize, " bytes but data_offsets [", info.begin, ", ", info.end,
                 "] span ", info.end - info.begin);
    by_offset.push_back(&(f.index_[name] = info));
  }
  std::sort(by_offset.begin(), by_offset.end(), [](const SafetensorsInfo* a, const SafetensorsInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const auto* a = by_offset[i - 1];
    const auto* b = by_offset[i];
    TEMPER_CHECK(b->begin >= a->end || a->begin == a->end || b->begin == b->end, "safetensors file '", path,
                 "': tensors '", a->name, "' [", a->begin, ", ", a->end, ") and '", b->name, "' [", b->begin, ", ",
                 b->end, ") overlap");
  }
  return f;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& kv : index_) out.push_back(kv.first);
  return out;
}

const SafetensorsInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = index_.find(name);
  TEMPER_CHECK(it != index_.end(), "safetensors file '", path_, "' has no tensor '", name, "'");
  return it->second;
}

Tensor SafetensorsFile::read_f32(const std::string& name) const {
  const SafetensorsInfo& in = info(name);
  Tensor t = Tensor::empty(in.shape, DType::F32);
  float* out = t.data<float>();
  const uint8_t* src = data_ + in.begin;
  const int64_t n = t.numel();
  if (in.dtype == "F32") {
    std::memcpy(out, src, size_t(n) * 4);  // little-endian host assumed (x86-64, aarch64)
  } else {
    const bool bf = in.dtype == "BF16";
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      out[i] = bf ? bf16_to_float(h) : half_to_float(h);
    }
  }
  return t;
}

// ---- sharded sets ---------------------------------------------------------------

SafetensorsSet SafetensorsSet::open_dir(const std::string& dir) {
  SafetensorsSet s;
  s.dir_ = dir;
  TEMPER_CHECK(fs::is_directory(dir), "model directory '", dir, "' does not exist or is not a directory");
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(index_path)) {
    const std::string ip = index_path.string();
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_text(ip));
    } catch (const nlohmann::json::exception& e) {
      fail("'", ip, "' is not valid JSON (", e.what(), ")");
    }
    TEMPER_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(), "'", ip,
                 "' has no \"weight_map\" object");
    std::map<std::string, size_t> file_index;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      TEMPER_CHECK(it.value().is_string(), "'", ip, "': weight_map entry '", it.key(), "' is not a file name");
      const std::string file = it.value().get<std::string>();
      TEMPER_CHECK(file.find('/') == std::string::npos && file.find("..") == std::string::npos, "'", ip,
                   "': weight_map entry '", it.key(), "' names '", file, "', which is not a file of this directory");
      auto fi = file_index.find(file);
      if (fi == file_index.end()) {
        const fs::path p = fs::path(dir) / file;
        TEMPER_CHECK(fs::exists(p), "'", ip, "' maps '", it.key(), "' to '", file, "', which does not exist");
        s.files_.push_back(SafetensorsFile::open(p.string()));
        fi = file_index.emplace(file, s.files_.size() - 1).first;
      }
      TEMPER_CHECK(s.files_[fi->second].contains(it.key()), "'", ip, "' maps '", it.key(), "' to '", file,
                   "', but that file has no such tensor");
      s.where_[it.key()] = fi->second;
    }
    return s;
  }
  std::vector<std::string> paths;
  if (fs::exists(fs::path(dir) / "model.safetensors")) {
    paths.push_back((fs::path(dir) / "model.safetensors").string());
  } else {
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && e.path().extension() == ".safetensors") paths.push_back(e.path().string());
    std::sort(paths.begin(), paths.end());
  }
  TEMPER_CHECK(!paths.empty(), "model directory '", dir,
               "' has no model.safetensors, no model.safetensors.index.json and no *.safetensors file");
  for (const auto& p : paths) {
    s.files_.push_back(SafetensorsFile::open(p));
    for (const auto& n : s.files_.back().names()) {
      auto [it, fresh] = s.where_.emplace(n, s.files_.size() - 1);
      TEMPER_CHECK(fresh, "tensor '", n, "' is in both '", s.files_[it->second].path(), "' and '", p,
                   "' (and there is no model.safetensors.index.json to say which one counts)");
    }
  }
  return s;
}

std::vector<std::string> SafetensorsSet::names() const {
  std::vector<std::string> out;
  for (const auto& kv : where_) out.push_back(kv.first);
  return out;
}

const SafetensorsFile& SafetensorsSet::shard(const std::string& name) const {
  auto it = where_.find(name);
  TEMPER_CHECK(it != where_.end(), "model directory '", dir_, "' has no tensor '", name, "'");
  return files_[it->second];
}

const SafetensorsInfo& SafetensorsSet::info(const std::string& name) const { return shard(name).info(name); }
const std::string& SafetensorsSet::file_of(const std::string& name) const { return shard(name).path(); }
Tensor SafetensorsSet::read_f32(const std::string& name) const { return shard(name).read_f32(name); }

// ---- writer -------------------------------------------------------------------------

namespace {

uint64_t stored_bytes(const Tensor& t, DType dtype) { return uint64_t(t.numel()) * dtype_size(dtype); }

// Appends t's values converted to dtype (F32 or BF16) to out.
void append_values(std::string& out, const Tensor& t, DType dtype, const std::string& name) {
  TEMPER_CHECK(t.device() == Device::CPU, "write_safetensors: tensor '", name, "' is not on the CPU");
  const int64_t n = t.numel();
  const size_t at = out.size();
  out.resize(at + size_t(stored_bytes(t, dtype)));
  char* dst = out.data() + at;
  auto value = [&](int64_t i) -> float {
    switch (t.dtype()) {
      case DType::F32: return t.data<float>()[i];
      case DType::F64: return float(t.data<double>()[i]);
      case DType::BF16: return bf16_to_float(t.data<uint16_t>()[i]);
      default: fail("write_safetensors: tensor '", name, "' has dtype ", dtype_name(t.dtype()),
                    " (f32, f64 or bf16 expected)");
    }
  };
  for (int64_t i = 0; i < n; ++i) {
    const float v = value(i);
    if (dtype == DType::F32) {
      std::memcpy(dst + 4 * i, &v, 4);
    } else {
      const uint16_t h = t.dtype() == DType::BF16 ? t.data<uint16_t>()[i] : float_to_bf16(v);
      std::memcpy(dst + 2 * i, &h, 2);
    }
  }
}

}  // namespace

uint64_t write_safetensors(const std::string& path, const NamedTensors& tensors, DType dtype,
                           const std::map<std::string, std::string>& metadata) {
  TEMPER_CHECK(dtype == DType::F32 || dtype == DType::BF16, "write_safetensors '", path,
               "': the stored dtype must be f32 or bf16, got ", dtype_name(dtype));
  // Header keys appear in name order (nlohmann::json sorts them), so data goes in name order too.
  std::map<std::string, const Tensor*> sorted;
  for (const auto& [name, t] : tensors) {
    TEMPER_CHECK(name != "__metadata__" && !name.empty(), "write_safetensors '", path, "': bad tensor name '",
                 name, "'");
    TEMPER_CHECK(sorted.emplace(name, &t).second, "write_safetensors '", path, "': tensor '", name,
                 "' given twice");
  }
  nlohmann::json h = nlohmann::json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  std::string data;
  uint64_t offset = 0;
  for (const auto& [name, t] : sorted) {
    append_values(data, *t, dtype, name);
    const uint64_t nb = stored_bytes(*t, dtype);
    h[name] = {{"dtype", dtype == DType::F32 ? "F32" : "BF16"},
               {"shape", t->shape()},
               {"data_offsets", {offset, offset + nb}}};
    offset += nb;
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  const uint64_t n = header.size();

  const std::string partial = path + ".partial";
  {
    std::ofstream out(partial, std::ios::binary | std::ios::trunc);
    TEMPER_CHECK(out.good(), "cannot create '", partial, "': ", std::strerror(errno));
    char len[8];
    for (int i = 0; i < 8; ++i) len[i] = char((n >> (8 * i)) & 0xff);
    out.write(len, 8);
    out.write(header.data(), std::streamsize(header.size()));
    out.write(data.data(), std::streamsize(data.size()));
    out.flush();
    TEMPER_CHECK(out.good(), "writing '", partial, "' failed (disk full?)");
  }
  fsync_path(partial, false);  // core/file_write: a failed fsync or rename throws naming the file
  rename_durably(partial, path);
  return offset;
}

std::vector<std::string> write_safetensors_sharded(const std::string& dir, const NamedTensors& tensors, DType dtype,
                                                   uint64_t max_shard_bytes) {
  TEMPER_CHECK(max_shard_bytes > 0, "write_safetensors_sharded: the shard size limit must be positive");
  std::error_code ec;
  fs::create_directories(dir, ec);
  TEMPER_CHECK(!ec, "cannot create directory '", dir, "': ", ec.message());
  std::vector<NamedTensors> shards(1);
  uint64_t in_shard = 0, total = 0, params = 0;
  for (const auto& nt : tensors) {
    const uint64_t nb = stored_bytes(nt.second, dtype);
    if (!shards.back().empty() && in_shard + nb > max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(nt);
    in_shard += nb;
    total += nb;
    params += uint64_t(nt.second.numel());
  }
  std::vector<std::string> written;
  const size_t ns = shards.size();
  if (ns == 1) {
    write_safetensors((fs::path(dir) / "model.safetensors").string(), shards[0], dtype);
    written.push_back("model.safetensors");
  } else {
    nlohmann::json index;
    index["metadata"] = {{"total_size", total}, {"total_parameters", params}};
    index["weight_map"] = nlohmann::json::object();
    for (size_t i = 0; i < ns; ++i) {
      char name[64];
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, ns);
      write_safetensors((fs::path(dir) / name).string(), shards[i], dtype);
      written.push_back(name);
      for (const auto& nt : shards[i]) index["weight_map"][nt.first] = name;
    }
    const std::string ip = (fs::path(dir) / "model.safetensors.index.json").string();
    {
      std::ofstream out(ip + ".partial", std::ios::trunc);
      out << index.dump(2) << "\n";
      out.close();  // a full disk shows when the buffer is written, at the close
      TEMPER_CHECK(out.good(), "writing '", ip, ".partial' failed");
    }
    fs::rename(ip + ".partial", ip, ec);
    TEMPER_CHECK(!ec, "cannot rename '", ip, ".partial': ", ec.message());
    written.push_back("model.safetensors.index.json");
  }
  // Leftovers of an earlier export would confuse loaders (e.g. a stale index next to model.safetensors).
  const std::set<std::string> keep(written.begin(), written.end());
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string f = e.path().filename().string();
    const bool ours = f.rfind("model", 0) == 0 &&
                      (e.path().extension() == ".safetensors" || f == "model.safetensors.index.json");
    if (ours && !keep.count(f)) fs::remove(e.path(), ec);
  }
  return written;
}

}  // namespace temper
