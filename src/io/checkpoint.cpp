// CheckpointStore: atomic HDF5 checkpoint files written by one or many ranks,
// slice-wise verification, rotation; CheckpointReader: reads on demand.
#include "io/checkpoint.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <system_error>

#include "core/file_write.h"
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

// Names that would make one dataset the group of another ("x" and "x/y").
void check_no_prefix_clash(const std::vector<std::string>& sorted_names) {
  for (size_t i = 0; i + 1 < sorted_names.size(); ++i)
    for (size_t j = i + 1; j < sorted_names.size(); ++j) {
      const std::string& a = sorted_names[i];
      const std::string& b = sorted_names[j];
      if (b.compare(0, a.size(), a) != 0) break;  // sorted: later names share no longer prefix with a
      if (b.size() > a.size() && b[a.size()] == '/')
        fail("checkpoint tensor names '", a, "' and '", b, "' clash: '", a, "' cannot be a dataset and a group");
    }
}

// The ranks writing one checkpoint: a communicator, or this process alone.
struct Group {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0, size = 1;
  explicit Group(MPI_Comm c = MPI_COMM_NULL) : comm(c) {
    if (comm != MPI_COMM_NULL) {
      MPI_Comm_rank(comm, &rank);
      MPI_Comm_size(comm, &size);
    }
  }
  bool multi() const { return comm != MPI_COMM_NULL && size > 1; }
  void barrier() const {
    if (multi()) MPI_Barrier(comm);
  }
  // Every rank learns the first rank with a non-empty `err` and throws its
  // message (other ranks name that rank).
  void agree(const std::string& err) const {
    if (!multi()) {
      if (!err.empty()) throw Error(err);
      return;
    }
    int mine = err.empty() ? size : rank, first = size;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
    if (first == size) return;
    std::string msg = err;
    int n = int(msg.size());
    MPI_Bcast(&n, 1, MPI_INT, first, comm);
    msg.resize(size_t(n));
    MPI_Bcast(msg.data(), n, MPI_CHAR, first, comm);
    if (rank == first) throw Error(msg);
    throw Error(cat("checkpoint I/O failed on rank ", first, ": ", msg));
  }
  void bcast(std::string& s, int root) const {
    if (!multi()) return;
    uint64_t n = s.size();
    MPI_Bcast(&n, 1, MPI_UINT64_T, root, comm);
    s.resize(size_t(n));
    if (n) MPI_Bcast(s.data(), int(n), MPI_CHAR, root, comm);
  }
  // Rank 0 receives every rank's `mine` (equal lengths), rank after rank.
  std::vector<uint64_t> gather(const std::vector<uint64_t>& mine) const {
    if (!multi()) return mine;
    std::vector<uint64_t> all(rank == 0 ? mine.size() * size_t(size) : 0);
    MPI_Gather(mine.data(), int(mine.size()), MPI_UINT64_T, all.data(), int(mine.size()), MPI_UINT64_T, 0, comm);
    return all;
  }
  uint64_t min_max_equal(uint64_t v) const {  // true (1) when v is the same on every rank
    if (!multi()) return 1;
    uint64_t lo = 0, hi = 0;
    MPI_Allreduce(&v, &lo, 1, MPI_UINT64_T, MPI_MIN, comm);
    MPI_Allreduce(&v, &hi, 1, MPI_UINT64_T, MPI_MAX, comm);
    return lo == hi;
  }
};

template <typename F>
std::string error_text(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// One tensor of a write: this rank's element range and bytes.
struct Entry {
  std::string name;
  Shape shape;
  DType dtype = DType::F32;
  int64_t begin = 0, end = 0;
  const char* data = nullptr;  // the bytes of [begin, end)
  uint32_t crc = 0;
  std::vector<int64_t> bounds;   // rank 0: the file's slices [bounds[i], bounds[i + 1])
  std::vector<uint32_t> crcs;    // rank 0: their CRC-32s
};

// FNV-1a over the names, dtypes and shapes: the same on every rank or a mistake.
uint64_t signature(const std::vector<Entry>& es) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const void* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const unsigned char*>(p)[i]) * 1099511628211ull;
  };
  for (const auto& e : es) {
    mix(e.name.data(), e.name.size() + 1);
    int dt = int(e.dtype);
    mix(&dt, sizeof dt);
    for (int64_t d : e.shape) mix(&d, sizeof d);
    mix("|", 1);
  }
  return h;
}

// MPI-IO reports a failed write without errno: name a full file system outright.
std::string disk_note(const std::string& dir) {
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) return "";
  const double free_bytes = double(st.f_bavail) * double(st.f_frsize);
  if (free_bytes >= 1 << 20) return "";
  return cat(" (the file system of ", dir, " has ", int64_t(free_bytes), " bytes left: No space left on device)");
}

// Milliseconds to sleep before each tensor's write (tests stretch a write to
// kill it midway); TEMPER_CHECKPOINT_TEST_DELAY_MS, default 0.
int test_delay_ms() {
  const char* v = std::getenv("TEMPER_CHECKPOINT_TEST_DELAY_MS");
  return v ? std::max(0, std::atoi(v)) : 0;
}

void write_meta(hid_t file, const std::string& path, const CheckpointState& s, const std::vector<Entry>& es,
                int writers, bool mpiio) {
  const std::string root = path + ":";
  h5::write_attr_int(file, "format_version", kCheckpointFormatVersion, root);
  h5::write_attr_i64(file, "step", s.step, root);
  h5::write_attr_string(file, "phase", s.phase, root);
  h5::write_attr_ints(file, "mesh", s.mesh, root);
  h5::write_attr_string(file, "code_version", TEMPER_VERSION, root);
  h5::write_attr_string(file, "created", iso_time_now(), root);
  h5::write_attr_string(file, "writer", cat(writers, writers == 1 ? " rank, " : " ranks, ",
                                            mpiio ? "MPI-IO" : "one after the other"), root);
  {
    h5::Hid tg = h5::create_group(file, "tensors", root);
    const std::string ctx = path + ":/tensors";
    for (const auto& e : es) {
      std::string where = ctx + "/" + e.name;
      h5::Hid d = h5::open_dataset(tg, e.name, ctx);
      h5::write_attr_string(d, "dtype", dtype_name(e.dtype), where);
      h5::write_attr_i64s(d, "slices", e.bounds, where);
      h5::write_attr_u32s(d, "slice_crc32", e.crcs, where);
    }
  }
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

// ---- reading ------------------------------------------------------------------
struct CheckpointReader::Impl {
  struct Info {
    Shape shape;
    DType dtype = DType::F32;
    std::vector<int64_t> bounds;  // slices [bounds[i], bounds[i + 1]); format 1: {0, numel}
    std::vector<uint32_t> crcs;
  };
  std::string path;
  h5::Hid file, tensors;
  std::map<std::string, Info> index;
  CheckpointState meta;
  ~Impl() {
    h5::Silence quiet;  // the HDF5 lock: another thread may be writing a checkpoint
    tensors.reset();
    file.reset();
  }
  const Info& info(const std::string& name) const {
    auto it = index.find(name);
    TEMPER_CHECK(it != index.end(), "checkpoint ", path, " has no tensor '", name, "'");
    return it->second;
  }
  // Reads slices [i0, i1) of `name` into `out` (elements from bounds[i0]) and checks them.
  void read_slices(const std::string& name, const Info& x, size_t i0, size_t i1, void* out) const {
    const std::string ctx = path + ":/tensors";
    const std::string where = ctx + "/" + name;
    h5::Hid d = h5::open_dataset(tensors, name, ctx);
    const int64_t b = x.bounds[i0], e = x.bounds[i1];
    if (x.shape.empty()) h5::read_dataset(d, h5::native_type(x.dtype), out, where);
    else h5::read_range(d, h5::native_type(x.dtype), x.shape, b, e, out, where);
    const size_t es = dtype_size(x.dtype);
    for (size_t i = i0; i < i1; ++i)
      check_crc(x.crcs[i], static_cast<const char*>(out) + size_t(x.bounds[i] - b) * es,
                size_t(x.bounds[i + 1] - x.bounds[i]) * es,
                x.bounds.size() > 2 ? cat(where, " slice [", x.bounds[i], ", ", x.bounds[i + 1], ")") : where);
  }
};

CheckpointReader::CheckpointReader(const std::string& path) : impl_(std::make_unique<Impl>()) {
  TEMPER_CHECK(!ends_with(path, ".partial"), "checkpoint ", path,
               " is an unfinished write (.partial): it was never completed and renamed into place");
  std::error_code ec;
  TEMPER_CHECK(fs::is_regular_file(path, ec), "checkpoint ", path, " does not exist or is not a file");
  h5::Silence quiet;
  Impl& m = *impl_;
  m.path = path;
  m.file = h5::open_file(path);
  const std::string root = path + ":";
  TEMPER_CHECK(h5::has_attr(m.file, "complete") && h5::read_attr_i64(m.file, "complete", root) == 1, "checkpoint ",
               path, " has no 'complete' attribute: its write did not finish");
  int64_t version = h5::read_attr_i64(m.file, "format_version", root);
  TEMPER_CHECK(version >= 1 && version <= kCheckpointFormatVersion, "checkpoint ", path, " has format_version ",
               version, "; this temper reads versions 1..", kCheckpointFormatVersion, " (use a newer temper)");
  CheckpointState& s = m.meta;
  s.step = h5::read_attr_i64(m.file, "step", root);
  s.phase = h5::read_attr_string(m.file, "phase", root);
  s.mesh = h5::read_attr_ints(m.file, "mesh", root);

  const std::string tctx = path + ":/tensors";
  m.tensors = h5::open_group(m.file, "tensors", root);
  for (const auto& name : h5::list_datasets(m.tensors, tctx)) {
    std::string where = tctx + "/" + name;
    h5::Hid d = h5::open_dataset(m.tensors, name, tctx);
    Impl::Info x;
    std::string dname = h5::read_attr_string(d, "dtype", where);
    try {
      x.dtype = dtype_from_name(dname);
    } catch (const Error& e) {
      fail(where, ": ", e.what());
    }
    check_type(d, x.dtype, where);
    x.shape = h5::dataset_shape(d, where);
    const int64_t numel = shape_numel(x.shape);
    if (version == 1) {
      x.bounds = {0, numel};
      x.crcs = {h5::read_attr_u32(d, "crc32", where)};
    } else {
      x.bounds = h5::read_attr_i64s(d, "slices", where);
      x.crcs = h5::read_attr_u32s(d, "slice_crc32", where);
      bool ok = x.bounds.size() == x.crcs.size() + 1 && x.bounds.front() == 0 && x.bounds.back() == numel;
      for (size_t i = 0; ok && i + 1 < x.bounds.size(); ++i) ok = x.bounds[i] < x.bounds[i + 1];
      if (numel == 0) ok = x.bounds.size() == 2 && x.bounds[1] == 0 && x.crcs.size() == 1;
      TEMPER_CHECK(ok, "dataset ", where, " has an inconsistent slice table (", x.bounds.size(), " bounds, ",
                   x.crcs.size(), " checksums for ", numel, " elements): the checkpoint is corrupt");
    }
    m.index.emplace(name, std::move(x));
  }
  const std::string mctx = path + ":/meta";
  h5::Hid meta = h5::open_group(m.file, "meta", root);
  s.deck_text = load_string(meta, "deck", mctx);
  h5::Hid sg = h5::open_group(meta, "strings", mctx);
  for (const auto& name : h5::list_datasets(sg, mctx + "/strings"))
    s.strings[name] = load_string(sg, name, mctx + "/strings");
  h5::Hid ug = h5::open_group(meta, "u64", mctx);
  for (const auto& name : h5::list_datasets(ug, mctx + "/u64")) s.u64[name] = load_u64(ug, name, mctx + "/u64");
}

CheckpointReader::~CheckpointReader() = default;

const std::string& CheckpointReader::path() const { return impl_->path; }

std::vector<std::string> CheckpointReader::names() const {
  std::vector<std::string> out;
  for (const auto& kv : impl_->index) out.push_back(kv.first);
  return out;
}

bool CheckpointReader::has(const std::string& name) const { return impl_->index.count(name) > 0; }
Shape CheckpointReader::shape(const std::string& name) const { return impl_->info(name).shape; }
DType CheckpointReader::dtype(const std::string& name) const { return impl_->info(name).dtype; }

Tensor CheckpointReader::read(const std::string& name) const {
  const auto& x = impl_->info(name);
  Tensor t = Tensor::empty(x.shape, x.dtype);
  if (t.numel() == 0) return t;
  h5::Silence quiet;
  impl_->read_slices(name, x, 0, x.crcs.size(), t.raw());
  return t;
}

Tensor CheckpointReader::read_range(const std::string& name, int64_t begin, int64_t end) const {
  const auto& x = impl_->info(name);
  const int64_t numel = shape_numel(x.shape);
  TEMPER_CHECK(0 <= begin && begin <= end && end <= numel, "element range [", begin, ", ", end, ") outside tensor '",
               name, "' of shape ", shape_str(x.shape), " in ", impl_->path);
  Tensor out = Tensor::empty({end - begin}, x.dtype);
  if (end == begin) return out;
  // the slices that [begin, end) touches: read whole (to check them), copy out the range
  size_t i0 = size_t(std::upper_bound(x.bounds.begin(), x.bounds.end(), begin) - x.bounds.begin()) - 1;
  size_t i1 = size_t(std::lower_bound(x.bounds.begin(), x.bounds.end(), end) - x.bounds.begin());
  const size_t es = dtype_size(x.dtype);
  h5::Silence quiet;
  if (x.bounds[i0] == begin && x.bounds[i1] == end) {
    impl_->read_slices(name, x, i0, i1, out.raw());
    return out;
  }
  std::vector<char> buf(size_t(x.bounds[i1] - x.bounds[i0]) * es);
  impl_->read_slices(name, x, i0, i1, buf.data());
  std::memcpy(out.raw(), buf.data() + size_t(begin - x.bounds[i0]) * es, size_t(end - begin) * es);
  return out;
}

void CheckpointReader::verify_share(int rank, int size) const {
  h5::Silence quiet;
  size_t k = 0;
  std::vector<char> buf;
  for (const auto& [name, x] : impl_->index)
    for (size_t i = 0; i < x.crcs.size(); ++i, ++k) {
      if (int(k % size_t(size)) != rank) continue;
      buf.resize(size_t(x.bounds[i + 1] - x.bounds[i]) * dtype_size(x.dtype));
      if (!buf.empty()) impl_->read_slices(name, x, i, i + 1, buf.data());
    }
}

CheckpointState CheckpointReader::meta() const { return impl_->meta; }

// ---- CheckpointState accessors ----------------------------------------------------
bool CheckpointState::has_tensor(const std::string& name) const {
  return tensors.count(name) > 0 || (reader && reader->has(name));
}

std::vector<std::string> CheckpointState::tensor_names() const {
  std::vector<std::string> out;
  for (const auto& kv : tensors) out.push_back(kv.first);
  if (reader)
    for (const auto& n : reader->names())
      if (!tensors.count(n)) out.push_back(n);
  std::sort(out.begin(), out.end());
  return out;
}

Shape CheckpointState::tensor_shape(const std::string& name) const {
  auto it = tensors.find(name);
  if (it != tensors.end()) return it->second.shape();
  TEMPER_CHECK(reader && reader->has(name), "checkpoint has no tensor '", name, "'");
  return reader->shape(name);
}

Tensor CheckpointState::read_tensor(const std::string& name) const {
  auto it = tensors.find(name);
  if (it != tensors.end()) return it->second;
  TEMPER_CHECK(reader && reader->has(name), "checkpoint has no tensor '", name, "'");
  return reader->read(name);
}

Tensor CheckpointState::read_range(const std::string& name, int64_t begin, int64_t end) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) {
    TEMPER_CHECK(reader && reader->has(name), "checkpoint has no tensor '", name, "'");
    return reader->read_range(name, begin, end);
  }
  const Tensor& t = it->second;
  TEMPER_CHECK(t.device() == Device::CPU, "checkpoint tensor '", name, "' is not a host tensor");
  TEMPER_CHECK(0 <= begin && begin <= end && end <= t.numel(), "element range [", begin, ", ", end,
               ") outside tensor '", name, "' of shape ", shape_str(t.shape()));
  Tensor out = Tensor::empty({end - begin}, t.dtype());
  const size_t es = dtype_size(t.dtype());
  if (end > begin)
    std::memcpy(out.raw(), static_cast<const char*>(t.raw()) + size_t(begin) * es, size_t(end - begin) * es);
  return out;
}

std::map<std::string, Tensor> CheckpointState::read_tensors(const std::string& prefix) const {
  std::map<std::string, Tensor> out;
  for (const auto& n : tensor_names())
    if (n.compare(0, prefix.size(), prefix) == 0) out[n] = read_tensor(n);
  return out;
}


namespace {

// MPI-IO: this rank's byte ranges of the datasets (offsets: each dataset's place in
// the file) written with one collective call. Returns the first error ("" if none);
// every rank makes the same collective calls whatever happens.
std::string mpiio_write(const Group& g, const std::string& path, const std::vector<Entry>& es,
                        const std::vector<uint64_t>& offsets) {
  std::string err;
  auto check = [&](int rc, const char* call) {
    if (rc == MPI_SUCCESS || !err.empty()) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    err = cat(call, " on ", path, " failed: ", std::string(msg, size_t(len)));
  };
  // byte blocks sorted by file position, at most 1 GiB each (MPI counts are ints)
  struct Block {
    MPI_Aint file, mem;
    int len;
  };
  std::vector<Block> blocks;
  for (size_t i = 0; i < es.size(); ++i) {
    const size_t esz = dtype_size(es[i].dtype);
    uint64_t at = offsets[i] + uint64_t(es[i].begin) * esz, left = uint64_t(es[i].end - es[i].begin) * esz;
    const char* p = es[i].data;
    while (left > 0) {
      const uint64_t n = std::min<uint64_t>(left, uint64_t(1) << 30);
      MPI_Aint addr;
      MPI_Get_address(p, &addr);
      blocks.push_back({MPI_Aint(at), addr, int(n)});
      at += n, p += n, left -= n;
    }
  }
  std::sort(blocks.begin(), blocks.end(), [](const Block& a, const Block& b) { return a.file < b.file; });
  std::vector<int> lens;
  std::vector<MPI_Aint> fdisp, mdisp;
  for (const auto& b : blocks) lens.push_back(b.len), fdisp.push_back(b.file), mdisp.push_back(b.mem);
  MPI_Datatype ftype, mtype;
  MPI_Type_create_hindexed(int(lens.size()), lens.data(), fdisp.data(), MPI_BYTE, &ftype);
  MPI_Type_create_hindexed(int(lens.size()), lens.data(), mdisp.data(), MPI_BYTE, &mtype);
  MPI_Type_commit(&ftype);
  MPI_Type_commit(&mtype);
  MPI_File fh = MPI_FILE_NULL;
  const MPI_Comm comm = g.comm == MPI_COMM_NULL ? MPI_COMM_SELF : g.comm;
  int rc = MPI_File_open(comm, path.c_str(), MPI_MODE_WRONLY, MPI_INFO_NULL, &fh);
  check(rc, "MPI_File_open");
  int opened = rc == MPI_SUCCESS, all_opened = 0;
  MPI_Allreduce(&opened, &all_opened, 1, MPI_INT, MPI_MIN, comm);
  if (all_opened) {
    check(MPI_File_set_view(fh, 0, MPI_BYTE, ftype, "native", MPI_INFO_NULL), "MPI_File_set_view");
    MPI_Status st;
    check(MPI_File_write_all(fh, MPI_BOTTOM, 1, mtype, &st), "MPI_File_write_all");
    check(MPI_File_sync(fh), "MPI_File_sync");
    check(MPI_File_close(&fh), "MPI_File_close");
  } else if (opened) {
    (void)MPI_File_close(&fh);  // some rank could not open it: every rank that did closes it
    if (err.empty()) err = cat("MPI_File_open on ", path, " failed on another rank");
  }
  MPI_Type_free(&ftype);
  MPI_Type_free(&mtype);
  return err;
}

// Everything of a write but the final rename and rotation; returns nothing, throws on every rank.
void write_file(const CheckpointStore& store, const CheckpointState& s, const Group& g, bool mpiio,
                std::vector<Entry>& es) {
  const std::string partial = store.partial_path_for(s.step);
  std::string err = error_text([&] {
    TEMPER_CHECK(s.step >= 0, "checkpoint step must be >= 0, got ", s.step);
    for (const auto& kv : s.strings) check_name(kv.first, "string");
    for (const auto& kv : s.u64) check_name(kv.first, "u64");
    std::vector<std::string> names;
    for (const auto& [name, t] : s.tensors) {
      check_name(name, "tensor");
      TEMPER_CHECK(!s.pieces.count(name), "checkpoint tensor '", name, "' is given whole and as a piece");
      TEMPER_CHECK(t.defined(), "checkpoint tensor '", name, "' is undefined (default-constructed)");
      TEMPER_CHECK(t.device() == Device::CPU, "checkpoint tensor '", name, "' is on ", device_name(t.device()),
                   "; copy it to the CPU before writing a checkpoint");
      Entry e;
      e.name = name;
      e.shape = t.shape();
      e.dtype = t.dtype();
      const int64_t n = t.numel(), len = (n + g.size - 1) / g.size;  // replicated: each rank writes 1/size
      e.begin = std::min(n, int64_t(g.rank) * len);
      e.end = std::min(n, e.begin + len);
      e.data = static_cast<const char*>(t.raw()) + size_t(e.begin) * dtype_size(t.dtype());
      es.push_back(std::move(e));
    }
    for (const auto& [name, p] : s.pieces) {
      check_name(name, "tensor");
      const int64_t n = p.data.defined() ? p.data.numel() : 0;
      TEMPER_CHECK(n == 0 || p.data.device() == Device::CPU, "checkpoint tensor '", name, "' is on ",
                   device_name(p.data.device()), "; copy it to the CPU before writing a checkpoint");
      TEMPER_CHECK(n == 0 || p.data.dtype() == p.dtype, "checkpoint piece of '", name, "' has dtype ",
                   dtype_name(p.data.dtype()), ", the tensor ", dtype_name(p.dtype));
      TEMPER_CHECK(p.offset >= 0 && p.offset + n <= shape_numel(p.shape), "checkpoint piece of '", name,
                   "' [", p.offset, ", ", p.offset + n, ") lies outside its shape ", shape_str(p.shape));
      Entry e;
      e.name = name;
      e.shape = p.shape;
      e.dtype = p.dtype;
      e.begin = p.offset;
      e.end = p.offset + n;
      e.data = n ? static_cast<const char*>(p.data.raw()) : nullptr;
      es.push_back(std::move(e));
    }
    std::sort(es.begin(), es.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
    for (auto& e : es) names.push_back(e.name);
    check_no_prefix_clash(names);
  });
  g.agree(err);
  TEMPER_CHECK(g.min_max_equal(signature(es)), "the ranks disagree on the tensors of checkpoint step ", s.step,
               " (names, dtypes or shapes differ): every rank must name every tensor");

  // Checksums of this rank's slices; rank 0 gathers the slice tables and checks they tile every tensor.
  std::vector<uint64_t> mine;
  mine.reserve(es.size() * 3);
  for (auto& e : es) {
    e.crc = h5::crc32(e.data, size_t(e.end - e.begin) * dtype_size(e.dtype));
    mine.insert(mine.end(), {uint64_t(e.begin), uint64_t(e.end), uint64_t(e.crc)});
  }
  std::vector<uint64_t> all = g.gather(mine);
  err = error_text([&] {
    if (g.rank != 0) return;
    for (size_t i = 0; i < es.size(); ++i) {
      std::vector<std::array<uint64_t, 3>> sl;
      for (int r = 0; r < g.size; ++r) {
        const uint64_t* p = &all[(size_t(r) * es.size() + i) * 3];
        if (p[1] > p[0]) sl.push_back({p[0], p[1], p[2]});
      }
      std::sort(sl.begin(), sl.end());
      const int64_t numel = shape_numel(es[i].shape);
      int64_t at = 0;
      es[i].bounds = {0};
      for (const auto& x : sl) {
        TEMPER_CHECK(int64_t(x[0]) == at, "the ranks' pieces of checkpoint tensor '", es[i].name, "' ",
                     int64_t(x[0]) < at ? "overlap" : "leave a gap", " at element ", std::min<int64_t>(at, x[0]));
        at = int64_t(x[1]);
        es[i].bounds.push_back(at);
        es[i].crcs.push_back(uint32_t(x[2]));
      }
      TEMPER_CHECK(at == numel, "the ranks' pieces of checkpoint tensor '", es[i].name, "' cover ", at, " of its ",
                   numel, " elements");
      if (numel == 0) es[i].bounds = {0, 0}, es[i].crcs = {h5::crc32(nullptr, 0)};
    }
    std::error_code ec;
    fs::create_directories(store.dir(), ec);
    if (ec || !fs::is_directory(store.dir()))
      fail("cannot create checkpoint directory '", store.dir(), "': ",
           ec ? ec.message() : "exists and is not a directory");
    if (fs::exists(partial, ec) && !fs::is_regular_file(partial, ec))
      fail("cannot write checkpoint: '", partial, "' exists and is not a regular file");
  });
  g.agree(err);

  const int delay = test_delay_ms();
  auto pause = [&] {
    if (delay > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay));
  };
  auto remove_partial = [&] {
    std::error_code rm;
    if (g.rank == 0 && fs::is_regular_file(partial, rm)) fs::remove(partial, rm);
  };
  const std::string ctx = partial + ":/tensors";
  try {
    // Rank 0 creates the file and every dataset (contiguous, allocated, unfilled)
    // and learns where each dataset's bytes lie in the file.
    std::vector<uint64_t> offsets(es.size(), 0);
    err = error_text([&] {
      if (g.rank != 0) return;
      h5::Silence quiet;
      h5::Hid file = h5::create_file(partial);
      h5::Hid tg = h5::create_group(file, "tensors", partial + ":");
      for (size_t i = 0; i < es.size(); ++i) {
        h5::Hid d = h5::create_dataset(tg, es[i].name, h5::native_type(es[i].dtype), es[i].shape, ctx);
        if (shape_numel(es[i].shape) == 0) continue;
        const haddr_t at = H5Dget_offset(d);
        TEMPER_CHECK(at != HADDR_UNDEF, "no storage was allocated for ", ctx, "/", es[i].name);
        offsets[i] = uint64_t(at);
      }
      tg.close(ctx);
      file.close(partial);
    });
    g.agree(err);
    if (mpiio) {
      // Every rank writes its slices' bytes at their places through MPI-IO: open, set
      // a file view of its byte ranges, one collective write, sync, close. Every rank
      // makes each of these calls whatever failed before, so none waits forever, and
      // the errors are agreed on at the end.
      if (g.multi()) MPI_Bcast(offsets.data(), int(offsets.size()), MPI_UINT64_T, 0, g.comm);
      for (size_t i = 0; i < es.size(); ++i) pause();
      err = mpiio_write(g, partial, es, offsets);
      if (!err.empty()) err += disk_note(store.dir());
      g.agree(err);
    } else {
      // One rank after the other opens the file and writes its slices.
      for (int r = 0; r < g.size; ++r) {
        err = error_text([&] {
          if (g.rank != r) return;
          bool any = false;
          for (const auto& e : es) any = any || e.end > e.begin;
          if (!any) return;
          {
            h5::Silence quiet;
            h5::Hid file = h5::open_file(partial, true);
            h5::Hid tg = h5::open_group(file, "tensors", partial + ":");
            for (const auto& e : es) {
              if (e.end == e.begin) continue;
              pause();
              h5::Hid d = h5::open_dataset(tg, e.name, ctx);
              h5::write_range(d, h5::native_type(e.dtype), e.shape, e.begin, e.end, e.data, H5P_DEFAULT,
                              ctx + "/" + e.name);
            }
            tg.close(ctx);
            h5::flush_file(file, partial);
            file.close(partial);
          }
          fsync_path(partial, false);
        });
        g.agree(err);
      }
    }
  } catch (...) {
    remove_partial();
    throw;
  }
  pause();
  // Rank 0: the slice tables, strings and counters, then `complete`, flush and fsync.
  err = error_text([&] {
    if (g.rank != 0) return;
    h5::Silence quiet;
    h5::Hid file = h5::open_file(partial, true);
    write_meta(file, partial, s, es, g.size, mpiio);
    h5::write_attr_int(file, "complete", 1, partial + ":");  // last: everything above was written
    h5::flush_file(file, partial);
    file.close(partial);
    fsync_path(partial, false);
  });
  if (!err.empty()) remove_partial();
  g.agree(err);
}

}  // namespace

CheckpointStore::CheckpointStore(std::string dir, int keep_last)
    : dir_(std::move(dir)), keep_last_(keep_last), mpiio_(true) {
  TEMPER_CHECK(!dir_.empty(), "checkpoint directory is empty");
}

void CheckpointStore::set_mpiio(bool on) { mpiio_ = on; }

std::string CheckpointStore::path_for(int64_t step) const {
  return (fs::path(dir_) / (kPrefix + step_digits(step) + kSuffix)).string();
}

std::string CheckpointStore::partial_path_for(int64_t step) const {
  return (fs::path(dir_) / (std::string(".") + kPrefix + step_digits(step) + kPartialSuffix)).string();
}

namespace {
// Rank 0 (or the one process): the rename into place, the directory fsync, the rotation.
std::string commit(const CheckpointStore& store, int64_t step, int keep_last) {
  const std::string partial = store.partial_path_for(step), final_path = store.path_for(step);
  std::error_code ec;
  if (fs::exists(final_path, ec)) log_warn("checkpoint ", final_path, " exists; replacing it atomically");
  rename_durably(partial, final_path);  // core/file_write: shared with the trajectory dumps
  // Rotation: only after the new checkpoint is durable. Files of later steps
  // (left by a run that failed to load them) are not counted and not touched.
  int kept = 0;
  for (const auto& [s, path] : scan(store.dir(), kPrefix, kSuffix)) {
    if (s > step) continue;
    if (keep_last <= 0 || ++kept <= keep_last) continue;
    std::error_code rm;
    if (fs::remove(path, rm)) log_info("removed old checkpoint ", path);
    else log_warn("could not remove old checkpoint ", path, ": ", rm.message());
  }
  for (const auto& [s, path] : scan(store.dir(), std::string(".") + kPrefix, kPartialSuffix)) {
    std::error_code rm;
    if (s < step && fs::is_regular_file(path, rm)) fs::remove(path, rm);
  }
  return final_path;
}
}  // namespace

std::string CheckpointStore::write(const CheckpointState& s) const {
  Group g;
  std::vector<Entry> es;
  write_file(*this, s, g, false, es);
  return commit(*this, s.step, keep_last_);
}

std::string CheckpointStore::write(const CheckpointState& s, MPI_Comm comm) const {
  Group g(comm);
  std::vector<Entry> es;
  write_file(*this, s, g, mpiio_ && g.multi(), es);
  std::string path;
  std::string err = error_text([&] {
    if (g.rank == 0) path = commit(*this, s.step, keep_last_);
  });
  g.agree(err);
  g.bcast(path, 0);
  return path;
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

std::optional<CheckpointState> CheckpointStore::open_latest_valid(std::string* path_out) const {
  for (const auto& e : scan(dir_, std::string(".") + kPrefix, kPartialSuffix))
    log_warn("ignoring unfinished checkpoint write ", e.second);
  for (const auto& [step, path] : scan(dir_, kPrefix, kSuffix)) {
    try {
      CheckpointState s = open(path);
      s.reader->verify_share(0, 1);
      if (s.step != step) {
        log_warn("skipping checkpoint ", path, ": its name says step ", step, " but the file says ", s.step);
        continue;
      }
      if (path_out) *path_out = path;
      return s;
    } catch (const std::exception& e) {
      log_warn("skipping unusable checkpoint: ", e.what());
    }
  }
  return std::nullopt;
}

std::string CheckpointStore::latest_valid_collective(MPI_Comm comm) const {
  Group g(comm);
  std::vector<std::pair<int64_t, std::string>> files;
  if (g.rank == 0) {
    for (const auto& e : scan(dir_, std::string(".") + kPrefix, kPartialSuffix))
      log_warn("ignoring unfinished checkpoint write ", e.second);
    files = scan(dir_, kPrefix, kSuffix);
  }
  std::string listing;
  for (const auto& f : files) listing += f.second + '\n';
  g.bcast(listing, 0);
  size_t pos = 0;
  for (size_t nl; (nl = listing.find('\n', pos)) != std::string::npos; pos = nl + 1) {
    const std::string path = listing.substr(pos, nl - pos);
    const int64_t step = parse_step(fs::path(path).filename().string(), kPrefix, kSuffix);
    std::string err = error_text([&] {
      CheckpointReader r(path);
      TEMPER_CHECK(r.meta().step == step, "its name says step ", step, " but the file says ", r.meta().step);
      r.verify_share(g.rank, g.size);
    });
    try {
      g.agree(err);
      return path;
    } catch (const std::exception& e) {
      if (g.rank == 0) log_warn("skipping unusable checkpoint ", path, ": ", e.what());
    }
  }
  return "";
}

CheckpointState CheckpointStore::open(const std::string& path) {
  auto r = std::make_shared<CheckpointReader>(path);
  CheckpointState s = r->meta();
  s.reader = std::move(r);
  return s;
}

CheckpointState CheckpointStore::load(const std::string& path) {
  CheckpointReader r(path);
  CheckpointState s = r.meta();
  for (const auto& name : r.names()) s.tensors[name] = r.read(name);
  return s;
}

void CheckpointStore::verify(const std::string& path) { CheckpointReader(path).verify_share(0, 1); }

}  // namespace temper
