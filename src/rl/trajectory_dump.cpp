// Trajectory dump writer/reader (see trajectory_dump.h, docs/trajectory_format.md).
#include "rl/trajectory_dump.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/file_write.h"
#include "core/log.h"
#include "io/h5util.h"

namespace fs = std::filesystem;

namespace temper {
namespace {

constexpr const char* kPrefix = "traj_";
constexpr const char* kSuffix = ".h5";
constexpr const char* kVerdictNames = "correct,wrong,unparsable";

std::string step_digits(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%09lld", static_cast<long long>(step));
  return buf;
}

h5::Hid vlen_utf8(const std::string& ctx) {
  h5::Hid t(h5::check(H5Tcopy(H5T_C_S1), ctx, "H5Tcopy"));
  h5::check(H5Tset_size(t, H5T_VARIABLE), ctx, "H5Tset_size");
  h5::check(H5Tset_cset(t, H5T_CSET_UTF8), ctx, "H5Tset_cset");
  return t;
}

// A 1-d array of variable-length UTF-8 strings (h5py reads it as an object array of bytes/str).
void write_strings(hid_t loc, const std::string& name, const std::vector<std::string>& v, const std::string& ctx) {
  const std::string where = ctx + "/" + name;
  std::vector<const char*> ptrs;
  ptrs.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    TEMPER_CHECK(v[i].find('\0') == std::string::npos, "trajectory dump: ", name, "[", i,
                 "] contains a NUL byte, which an HDF5 string cannot hold");
    ptrs.push_back(v[i].c_str());
  }
  h5::Hid type = vlen_utf8(where);
  hsize_t dims[1] = {static_cast<hsize_t>(v.size())};
  h5::Hid space(h5::check(H5Screate_simple(1, dims, nullptr), where, "H5Screate_simple"));
  h5::Hid dset(h5::check(H5Dcreate2(loc, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), where,
                         "cannot create string dataset"));
  if (!v.empty())
    h5::check(H5Dwrite(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()), where, "writing strings failed");
}

std::vector<std::string> read_strings(hid_t loc, const std::string& name, const std::string& ctx) {
  const std::string where = ctx + "/" + name;
  h5::Hid dset = h5::open_dataset(loc, name, ctx);
  Shape shape = h5::dataset_shape(dset, where);
  TEMPER_CHECK(shape.size() == 1, where, " should be a 1-d string array");
  std::vector<char*> ptrs(static_cast<size_t>(shape[0]), nullptr);
  std::vector<std::string> out;
  if (ptrs.empty()) return out;
  h5::Hid type = vlen_utf8(where);
  h5::check(H5Dread(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()), where, "reading strings failed");
  out.reserve(ptrs.size());
  for (char* p : ptrs) out.emplace_back(p ? p : "");
  h5::Hid space(h5::check(H5Dget_space(dset), where, "H5Dget_space"));
  H5Dvlen_reclaim(type, space, H5P_DEFAULT, ptrs.data());
  return out;
}

template <typename T>
void write_vec(hid_t loc, const std::string& name, hid_t type, const std::vector<T>& v, const std::string& ctx) {
  h5::write_dataset(loc, name, type, {static_cast<int64_t>(v.size())}, v.data(), ctx);
}

template <typename T>
std::vector<T> read_vec(hid_t loc, const std::string& name, hid_t type, const std::string& ctx) {
  const std::string where = ctx + "/" + name;
  h5::Hid d = h5::open_dataset(loc, name, ctx);
  Shape shape = h5::dataset_shape(d, where);
  TEMPER_CHECK(shape.size() == 1, where, " should be 1-d, has shape ", shape_str(shape));
  std::vector<T> v(static_cast<size_t>(shape[0]));
  h5::read_dataset(d, type, v.data(), where);
  return v;
}

// Ragged → flat + offsets[N+1].
template <typename T>
void write_ragged(hid_t loc, const std::string& values, const std::string& offsets, hid_t type,
                  const std::vector<std::vector<T>>& rows, const std::string& ctx) {
  std::vector<int64_t> off(rows.size() + 1, 0);
  for (size_t i = 0; i < rows.size(); ++i) off[i + 1] = off[i] + static_cast<int64_t>(rows[i].size());
  std::vector<T> flat;
  flat.reserve(static_cast<size_t>(off.back()));
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  write_vec(loc, values, type, flat, ctx);
  if (!offsets.empty()) write_vec(loc, offsets, H5T_NATIVE_INT64, off, ctx);
}

template <typename T>
std::vector<std::vector<T>> split(const std::vector<T>& flat, const std::vector<int64_t>& off, const std::string& what) {
  TEMPER_CHECK(!off.empty() && off.front() == 0 && off.back() == static_cast<int64_t>(flat.size()), what,
               ": offsets do not cover the ", flat.size(), " stored values");
  std::vector<std::vector<T>> rows(off.size() - 1);
  for (size_t i = 0; i + 1 < off.size(); ++i) {
    TEMPER_CHECK(off[i] <= off[i + 1], what, ": offsets decrease at sample ", i);
    rows[i].assign(flat.begin() + off[i], flat.begin() + off[i + 1]);
  }
  return rows;
}

void write_contents(const std::string& path, const TrajectoryBatch& b) {
  h5::Hid file = h5::create_file(path);
  const std::string root = path + ":";
  const size_t N = b.size();
  h5::write_attr_int(file, "format_version", kTrajectoryFormatVersion, root);
  h5::write_attr_i64(file, "step", b.step, root);
  h5::write_attr_string(file, "algorithm", b.algorithm, root);
  h5::write_attr_i64(file, "num_samples", static_cast<int64_t>(N), root);

  write_vec(file, "prompt_index", H5T_NATIVE_INT64, b.prompt_index, root);
  if (!b.group.empty()) write_vec(file, "group", H5T_NATIVE_INT32, b.group, root);
  write_strings(file, "task", b.task, root);
  write_vec(file, "reward", H5T_NATIVE_DOUBLE, b.reward, root);
  std::vector<uint8_t> verdict(N);
  for (size_t i = 0; i < N; ++i) verdict[i] = static_cast<uint8_t>(b.verdict[i]);
  write_vec(file, "verdict", H5T_NATIVE_UINT8, verdict, root);
  {
    h5::Hid d = h5::open_dataset(file, "verdict", root);
    h5::write_attr_string(d, "names", kVerdictNames, root + "/verdict");
  }
  write_vec(file, "discarded", H5T_NATIVE_UINT8, b.discarded, root);
  write_vec(file, "advantage", H5T_NATIVE_DOUBLE, b.advantage, root);
  if (!b.pass_rate.empty()) write_vec(file, "pass_rate", H5T_NATIVE_DOUBLE, b.pass_rate, root);
  if (!b.finish_reason.empty()) write_strings(file, "finish_reason", b.finish_reason, root);

  std::vector<int32_t> rlen(N);
  for (size_t i = 0; i < N; ++i) rlen[i] = static_cast<int32_t>(b.response_tokens[i].size());
  write_vec(file, "response_length", H5T_NATIVE_INT32, rlen, root);
  write_ragged(file, "response_tokens", "response_offsets", H5T_NATIVE_INT32, b.response_tokens, root);
  write_ragged(file, "behaviour_logp", "", H5T_NATIVE_FLOAT, b.behaviour_logp, root);
  if (!b.current_logp.empty()) write_ragged(file, "current_logp", "", H5T_NATIVE_FLOAT, b.current_logp, root);
  if (!b.prompt_tokens.empty()) {
    std::vector<int32_t> plen(N);
    for (size_t i = 0; i < N; ++i) plen[i] = static_cast<int32_t>(b.prompt_tokens[i].size());
    write_vec(file, "prompt_length", H5T_NATIVE_INT32, plen, root);
    write_ragged(file, "prompt_tokens", "prompt_offsets", H5T_NATIVE_INT32, b.prompt_tokens, root);
  }
  if (!b.metrics.empty()) {
    h5::Hid mg = h5::create_group(file, "metrics", root);
    for (const auto& [name, v] : b.metrics) {
      TEMPER_CHECK(!name.empty() && name.find('/') == std::string::npos && name != "." && name != "..",
                   "trajectory dump: metric name '", name, "' must be non-empty and contain no '/'");
      h5::write_dataset(mg, name, H5T_NATIVE_DOUBLE, {}, &v, root + "/metrics");
    }
  }
  h5::write_attr_int(file, "complete", 1, root);  // last: its presence means everything above was written
  h5::flush_file(file, path);
  file.close(path);
}

}  // namespace

void TrajectoryBatch::validate() const {
  const size_t N = size();
  auto need = [N](size_t got, const char* field, bool optional) {
    if (optional && got == 0) return;
    TEMPER_CHECK(got == N, "trajectory batch: field '", field, "' has ", got, " entries but there are ", N,
                 " samples (prompt_index)", optional ? "; leave it empty to omit it" : "");
  };
  need(group.size(), "group", true);
  need(task.size(), "task", false);
  need(prompt_tokens.size(), "prompt_tokens", true);
  need(response_tokens.size(), "response_tokens", false);
  need(behaviour_logp.size(), "behaviour_logp", false);
  need(current_logp.size(), "current_logp", true);
  need(reward.size(), "reward", false);
  need(verdict.size(), "verdict", false);
  need(discarded.size(), "discarded", false);
  need(advantage.size(), "advantage", false);
  need(pass_rate.size(), "pass_rate", true);
  need(finish_reason.size(), "finish_reason", true);
  for (size_t i = 0; i < N; ++i) {
    TEMPER_CHECK(behaviour_logp[i].size() == response_tokens[i].size(), "trajectory batch: sample ", i, " has ",
                 response_tokens[i].size(), " response tokens but ", behaviour_logp[i].size(),
                 " behaviour log-probs");
    if (!current_logp.empty())
      TEMPER_CHECK(current_logp[i].size() == response_tokens[i].size(), "trajectory batch: sample ", i, " has ",
                   response_tokens[i].size(), " response tokens but ", current_logp[i].size(),
                   " current log-probs");
  }
}

TrajectoryDumper::TrajectoryDumper(std::string dir, int keep_last) : dir_(std::move(dir)), keep_last_(keep_last) {
  TEMPER_CHECK(!dir_.empty(), "trajectory dump directory is empty");
}

std::string TrajectoryDumper::path_for(int64_t step) const {
  return (fs::path(dir_) / (kPrefix + step_digits(step) + kSuffix)).string();
}

std::string TrajectoryDumper::partial_path_for(int64_t step) const {
  return (fs::path(dir_) / (std::string(".") + kPrefix + step_digits(step) + kSuffix + ".partial")).string();
}

std::vector<std::string> TrajectoryDumper::list() const {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(dir_, ec)) return {};
  const std::string pre = kPrefix, suf = kSuffix;
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() < pre.size() + suf.size() + 9 || name.compare(0, pre.size(), pre) != 0 ||
        name.compare(name.size() - suf.size(), suf.size(), suf) != 0)
      continue;
    const std::string digits = name.substr(pre.size(), name.size() - pre.size() - suf.size());
    if (digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    found.emplace_back(std::stoll(digits), it->path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

std::string TrajectoryDumper::write(const TrajectoryBatch& batch) const {
  TEMPER_CHECK(batch.step >= 0, "trajectory dump step must be >= 0, got ", batch.step);
  batch.validate();
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec || !fs::is_directory(dir_))
    fail("cannot create trajectory dump directory '", dir_, "': ", ec ? ec.message() : "exists and is not a directory");
  const std::string partial = partial_path_for(batch.step), final_path = path_for(batch.step);
  {
    h5::Silence quiet;
    try {
      write_contents(partial, batch);
      fsync_path(partial, false);
    } catch (...) {
      std::error_code rm;
      if (fs::is_regular_file(partial, rm)) fs::remove(partial, rm);
      throw;
    }
  }
  rename_durably(partial, final_path);
  if (keep_last_ > 0) {
    std::vector<std::string> all = list();
    for (size_t i = 0; i + static_cast<size_t>(keep_last_) < all.size(); ++i) {
      std::error_code rm;
      if (!fs::remove(all[i], rm)) log_warn("could not remove old trajectory dump ", all[i], ": ", rm.message());
    }
  }
  return final_path;
}

TrajectoryBatch read_trajectory_dump(const std::string& path) {
  TEMPER_CHECK(path.size() < 8 || path.compare(path.size() - 8, 8, ".partial") != 0, "trajectory dump ", path,
               " is an unfinished write (.partial)");
  std::error_code ec;
  TEMPER_CHECK(fs::is_regular_file(path, ec), "trajectory dump ", path, " does not exist or is not a file");
  h5::Silence quiet;
  h5::Hid file = h5::open_file(path);
  const std::string root = path + ":";
  TEMPER_CHECK(h5::has_attr(file, "complete") && h5::read_attr_i64(file, "complete", root) == 1, "trajectory dump ",
               path, " has no 'complete' attribute: its write did not finish");
  const int64_t version = h5::read_attr_i64(file, "format_version", root);
  TEMPER_CHECK(version >= 1 && version <= kTrajectoryFormatVersion, "trajectory dump ", path, " has format_version ",
               version, "; this temper reads versions 1..", kTrajectoryFormatVersion);
  TrajectoryBatch b;
  b.step = h5::read_attr_i64(file, "step", root);
  b.algorithm = h5::read_attr_string(file, "algorithm", root);
  const int64_t N = h5::read_attr_i64(file, "num_samples", root);

  b.prompt_index = read_vec<int64_t>(file, "prompt_index", H5T_NATIVE_INT64, root);
  if (h5::exists(file, "group")) b.group = read_vec<int32_t>(file, "group", H5T_NATIVE_INT32, root);
  b.task = read_strings(file, "task", root);
  b.reward = read_vec<double>(file, "reward", H5T_NATIVE_DOUBLE, root);
  for (uint8_t v : read_vec<uint8_t>(file, "verdict", H5T_NATIVE_UINT8, root)) {
    TEMPER_CHECK(v <= 2, path, ": verdict value ", int(v), " is not 0 (correct), 1 (wrong) or 2 (unparsable)");
    b.verdict.push_back(static_cast<Verdict>(v));
  }
  b.discarded = read_vec<uint8_t>(file, "discarded", H5T_NATIVE_UINT8, root);
  b.advantage = read_vec<double>(file, "advantage", H5T_NATIVE_DOUBLE, root);
  if (h5::exists(file, "pass_rate")) b.pass_rate = read_vec<double>(file, "pass_rate", H5T_NATIVE_DOUBLE, root);
  if (h5::exists(file, "finish_reason")) b.finish_reason = read_strings(file, "finish_reason", root);

  const auto roff = read_vec<int64_t>(file, "response_offsets", H5T_NATIVE_INT64, root);
  b.response_tokens = split(read_vec<int32_t>(file, "response_tokens", H5T_NATIVE_INT32, root), roff,
                            path + ":/response_tokens");
  b.behaviour_logp = split(read_vec<float>(file, "behaviour_logp", H5T_NATIVE_FLOAT, root), roff,
                           path + ":/behaviour_logp");
  if (h5::exists(file, "current_logp"))
    b.current_logp = split(read_vec<float>(file, "current_logp", H5T_NATIVE_FLOAT, root), roff,
                           path + ":/current_logp");
  if (h5::exists(file, "prompt_tokens")) {
    const auto poff = read_vec<int64_t>(file, "prompt_offsets", H5T_NATIVE_INT64, root);
    b.prompt_tokens = split(read_vec<int32_t>(file, "prompt_tokens", H5T_NATIVE_INT32, root), poff,
                            path + ":/prompt_tokens");
  }
  if (h5::exists(file, "metrics")) {
    h5::Hid mg = h5::open_group(file, "metrics", root);
    for (const auto& name : h5::list_datasets(mg, root + "/metrics")) {
      h5::Hid d = h5::open_dataset(mg, name, root + "/metrics");
      double v = 0;
      h5::read_dataset(d, H5T_NATIVE_DOUBLE, &v, root + "/metrics/" + name);
      b.metrics[name] = v;
    }
  }
  TEMPER_CHECK(static_cast<int64_t>(b.size()) == N, path, ": num_samples is ", N, " but prompt_index has ", b.size(),
               " entries");
  try {
    b.validate();
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
  return b;
}

}  // namespace temper
