// CheckpointStore: atomic HDF5 checkpoint files, verification and rotation.
#include "io/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <system_error>

#include "core/log.h"
#include "io/h5util.h"

#ifndef TEMPER_VERSION
#define TEMPER_VERSION "unknown"
#endif

namespace fs = std::filesystem;

namespace temper {
namespace {

constexpr const char* kPrefix = "ckpt_";
constexpr const char* kSuffix = ".h5";
constexpr const char* kPartialSuffix = ".h5.partial";

std::string step_digits(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%09lld", static_cast<long long>(step));
  return buf;
}

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

// Parses "<prefix><digits><suffix>"; -1 if the name does not match.
int64_t parse_step(const std::string& name, const std::string& prefix, const std::string& suffix) {
  if (name.size() < prefix.size() + suffix.size() + 9 || name.compare(0, prefix.size(), prefix) != 0 ||
      !ends_with(name, suffix))
    return -1;
  std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stoll(digits);
}

// (step, path) of the directory's entries matching prefix/suffix, newest first.
std::vector<std::pair<int64_t, std::string>> scan(const std::string& dir, const std::string& prefix,
                                                  const std::string& suffix) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    int64_t step = parse_step(it->path().filename().string(), prefix, suffix);
    if (step >= 0) out.emplace_back(step, it->path().string());
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return out;
}

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), O_RDONLY | (directory ? O_DIRECTORY : 0));
  if (fd < 0) fail("cannot open ", path, " to fsync it: ", std::strerror(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) fail("fsync of ", path, " failed: ", std::strerror(err));
}

std::string iso_time_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Object names: non-empty '/'-separated components, none empty, "." or "..".
void check_name(const std::string& name, const char* kind) {
  bool ok = !name.empty() && name.front() != '/' && name.back() != '/' &&
            name.find("//") == std::string::npos && name.find('\0') == std::string::npos;
  for (size_t pos = 0; ok;) {
    size_t slash = name.find('/', pos);
    std::string c = name.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
    ok = c != "." && c != "..";
    if (slash == std::string::npos) break;
    pos = slash + 1;
  }
  TEMPER_CHECK(ok, "invalid checkpoint ", kind, " name '", name,
               "': use non-empty '/'-separated components without '.' or '..'");
}

void write_contents(const std::string& path, const CheckpointState& s) {
  h5::Hid file = h5::create_file(path);
  const std::string root = path + ":";
  h5::write_attr_int(file, "format_version", kCheckpointFormatVersion, root);
  h5::write_attr_i64(file, "step", s.step, root);
  h5::write_attr_string(file, "phase", s.phase, root);
  h5::write_attr_ints(file, "mesh", s.mesh, root);
  h5::write_attr_string(file, "code_version", TEMPER_VERSION, root);
  h5::write_attr_string(file, "created", iso_time_now(), root);
  {
    h5::Hid tg = h5::create_group(file, "tensors", root);
    const std::string ctx = path + ":/tensors";
    for (const auto& [name, t] : s.tensors) {
      TEMPER_CHECK(t.defined(), "checkpoint tensor '", name, "' is undefined (default-constructed)");
      TEMPER_CHECK(t.device() == Device::CPU, "checkpoint tensor '", name, "' is on ", device_name(t.device()),
                   "; copy it to the CPU before writing a checkpoint");
      h5::Hid d = h5::write_dataset(tg, name, h5::native_type(t.dtype()), t.shape(), t.raw(), ctx);
      std::string where = ctx + "/" + name;
      h5::write_attr_string(d, "dtype", dtype_name(t.dtype()), where);
      h5::write_attr_u32(d, "crc32", h5::crc32(t.raw(), t.nbytes()), where);
    }
  }
  {
    h5::Hid meta = h5::create_group(file, "meta", root);
    const std::string ctx = path + ":/meta";
    h5::Hid deck = h5::write_string_dataset(meta, "deck", s.deck_text, ctx);
    h5::write_attr_u32(deck, "crc32", h5::crc32(s.deck_text.data(), s.deck_text.size()), ctx + "/deck");
    h5::Hid sg = h5::create_group(meta, "strings", ctx);
    for (const auto& [name, v] : s.strings) {
      h5::Hid d = h5::write_string_dataset(sg, name, v, ctx + "/strings");
      h5::write_attr_u32(d, "crc32", h5::crc32(v.data(), v.size()), ctx + "/strings/" + name);
    }
    h5::Hid ug = h5::create_group(meta, "u64", ctx);
    for (const auto& [name, v] : s.u64) {
      h5::Hid d = h5::write_dataset(ug, name, H5T_NATIVE_UINT64, {static_cast<int64_t>(v.size())}, v.data(),
                                    ctx + "/u64");
      h5::write_attr_u32(d, "crc32", h5::crc32(v.data(), v.size() * sizeof(uint64_t)), ctx + "/u64/" + name);
    }
  }
  h5::write_attr_int(file, "complete", 1, root);  // last: its presence means everything above was written
  h5::flush_file(file, path);
  file.close(path);
}

void check_crc(uint32_t stored, const void* data, size_t n, const std::string& where) {
  uint32_t got = h5::crc32(data, n);
  TEMPER_CHECK(got == stored, "checksum mismatch in ", where, " (stored crc32 ", stored, ", computed ", got,
               "): the checkpoint is corrupt");
}

// The dataset's stored HDF5 type must be what `t` is written as.
void check_type(hid_t dset, DType t, const std::string& where) {
  h5::Hid ft(h5::check(H5Dget_type(dset), where, "cannot read dataset type"));
  h5::Hid nt(h5::check(H5Tget_native_type(ft, H5T_DIR_ASCEND), where, "cannot map dataset type"));
  TEMPER_CHECK(H5Tequal(nt, h5::native_type(t)) > 0, "dataset ", where, " has dtype attribute '", dtype_name(t),
               "' but its stored HDF5 type does not match it");
}

Tensor load_tensor(hid_t group, const std::string& name, const std::string& ctx) {
  std::string where = ctx + "/" + name;
  h5::Hid d = h5::open_dataset(group, name, ctx);
  std::string dname = h5::read_attr_string(d, "dtype", where);
  DType dt;
  try {
    dt = dtype_from_name(dname);
  } catch (const Error& e) {
    fail(where, ": ", e.what());
  }
  check_type(d, dt, where);
  Tensor t = Tensor::empty(h5::dataset_shape(d, where), dt);
  h5::read_dataset(d, h5::native_type(dt), t.raw(), where);
  check_crc(h5::read_attr_u32(d, "crc32", where), t.raw(), t.nbytes(), where);
  return t;
}

std::string load_string(hid_t group, const std::string& name, const std::string& ctx) {
  std::string where = ctx + "/" + name;
  h5::Hid d = h5::open_dataset(group, name, ctx);
  std::string v = h5::read_string_dataset(d, where);
  check_crc(h5::read_attr_u32(d, "crc32", where), v.data(), v.size(), where);
  return v;
}

std::vector<uint64_t> load_u64(hid_t group, const std::string& name, const std::string& ctx) {
  std::string where = ctx + "/" + name;
  h5::Hid d = h5::open_dataset(group, name, ctx);
  Shape shape = h5::dataset_shape(d, where);
  TEMPER_CHECK(shape.size() == 1, "dataset ", where, " should be a 1-d uint64 array, has shape ", shape_str(shape));
  std::vector<uint64_t> v(static_cast<size_t>(shape[0]));
  h5::read_dataset(d, H5T_NATIVE_UINT64, v.data(), where);
  check_crc(h5::read_attr_u32(d, "crc32", where), v.data(), v.size() * sizeof(uint64_t), where);
  return v;
}

}  // namespace

CheckpointStore::CheckpointStore(std::string dir, int keep_last) : dir_(std::move(dir)), keep_last_(keep_last) {
  TEMPER_CHECK(!dir_.empty(), "checkpoint directory is empty");
}

std::string CheckpointStore::path_for(int64_t step) const {
  return (fs::path(dir_) / (kPrefix + step_digits(step) + kSuffix)).string();
}

std::string CheckpointStore::partial_path_for(int64_t step) const {
  return (fs::path(dir_) / (std::string(".") + kPrefix + step_digits(step) + kPartialSuffix)).string();
}

std::string CheckpointStore::write(const CheckpointState& s) const {
  TEMPER_CHECK(s.step >= 0, "checkpoint step must be >= 0, got ", s.step);
  for (const auto& kv : s.tensors) check_name(kv.first, "tensor");
  for (const auto& kv : s.strings) check_name(kv.first, "string");
  for (const auto& kv : s.u64) check_name(kv.first, "u64");

  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec || !fs::is_directory(dir_))
    fail("cannot create checkpoint directory '", dir_, "': ", ec ? ec.message() : "exists and is not a directory");

  const std::string partial = partial_path_for(s.step);
  const std::string final_path = path_for(s.step);
  if (fs::exists(partial, ec) && !fs::is_regular_file(partial, ec))
    fail("cannot write checkpoint: '", partial, "' exists and is not a regular file");
  {
    h5::Silence quiet;
    try {
      write_contents(partial, s);
      fsync_path(partial, false);
    } catch (...) {
      std::error_code rm;
      if (fs::is_regular_file(partial, rm)) fs::remove(partial, rm);
      throw;
    }
  }
  if (fs::exists(final_path, ec)) log_warn("checkpoint ", final_path, " exists; replacing it atomically");
  if (std::rename(partial.c_str(), final_path.c_str()) != 0) {
    int err = errno;
    std::error_code rm;
    fs::remove(partial, rm);
    fail("cannot rename ", partial, " to ", final_path, ": ", std::strerror(err));
  }
  fsync_path(dir_, true);

  // Rotation: only after the new checkpoint is durable. Files of later steps
  // (left by a run that failed to load them) are not counted and not touched.
  int kept = 0;
  for (const auto& [step, path] : scan(dir_, kPrefix, kSuffix)) {
    if (step > s.step) continue;
    if (keep_last_ <= 0 || ++kept <= keep_last_) continue;
    std::error_code rm;
    if (fs::remove(path, rm)) log_info("removed old checkpoint ", path);
    else log_warn("could not remove old checkpoint ", path, ": ", rm.message());
  }
  for (const auto& [step, path] : scan(dir_, std::string(".") + kPrefix, kPartialSuffix)) {
    std::error_code rm;
    if (step < s.step && fs::is_regular_file(path, rm)) fs::remove(path, rm);
  }
  return final_path;
}

std::vector<std::string> CheckpointStore::list() const {
  std::vector<std::string> out;
  for (const auto& e : scan(dir_, kPrefix, kSuffix)) out.push_back(e.second);
  return out;
}

std::optional<CheckpointState> CheckpointStore::load_latest_valid(std::string* path_out) const {
  for (const auto& e : scan(dir_, std::string(".") + kPrefix, kPartialSuffix))
    log_warn("ignoring unfinished checkpoint write ", e.second);
  for (const auto& [step, path] : scan(dir_, kPrefix, kSuffix)) {
    try {
      CheckpointState s = load(path);
      if (s.step != step) {
        log_warn("skipping checkpoint ", path, ": its name says step ", step, " but the file says ", s.step);
        continue;
      }
      if (path_out) *path_out = path;
      return s;
    } catch (const std::exception& e) {  // temper::Error, or bad_alloc from a garbled shape
      log_warn("skipping unusable checkpoint: ", e.what());
    }
  }
  return std::nullopt;
}

CheckpointState CheckpointStore::load(const std::string& path) {
  TEMPER_CHECK(!ends_with(path, ".partial"), "checkpoint ", path,
               " is an unfinished write (.partial): it was never completed and renamed into place");
  std::error_code ec;
  TEMPER_CHECK(fs::is_regular_file(path, ec), "checkpoint ", path, " does not exist or is not a file");
  h5::Silence quiet;
  h5::Hid file = h5::open_file(path);
  const std::string root = path + ":";
  TEMPER_CHECK(h5::has_attr(file, "complete") && h5::read_attr_i64(file, "complete", root) == 1, "checkpoint ",
               path, " has no 'complete' attribute: its write did not finish");
  int64_t version = h5::read_attr_i64(file, "format_version", root);
  TEMPER_CHECK(version >= 1 && version <= kCheckpointFormatVersion, "checkpoint ", path, " has format_version ",
               version, "; this temper reads versions 1..", kCheckpointFormatVersion, " (use a newer temper)");
  CheckpointState s;
  s.step = h5::read_attr_i64(file, "step", root);
  s.phase = h5::read_attr_string(file, "phase", root);
  s.mesh = h5::read_attr_ints(file, "mesh", root);

  const std::string tctx = path + ":/tensors";
  h5::Hid tg = h5::open_group(file, "tensors", root);
  for (const auto& name : h5::list_datasets(tg, tctx)) s.tensors[name] = load_tensor(tg, name, tctx);

  const std::string mctx = path + ":/meta";
  h5::Hid meta = h5::open_group(file, "meta", root);
  s.deck_text = load_string(meta, "deck", mctx);
  h5::Hid sg = h5::open_group(meta, "strings", mctx);
  for (const auto& name : h5::list_datasets(sg, mctx + "/strings"))
    s.strings[name] = load_string(sg, name, mctx + "/strings");
  h5::Hid ug = h5::open_group(meta, "u64", mctx);
  for (const auto& name : h5::list_datasets(ug, mctx + "/u64")) s.u64[name] = load_u64(ug, name, mctx + "/u64");
  return s;
}

void CheckpointStore::verify(const std::string& path) { (void)load(path); }

}  // namespace temper
