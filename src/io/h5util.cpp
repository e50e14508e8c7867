// HDF5 helpers: RAII handles, error conversion, datasets, attributes, CRC-32.
// Only the versioned ("2") and unversioned C API is used, so the code is the
// same whichever API default (1.8 / 1.10 / 1.12) the installed HDF5 was built with.
#include "io/h5util.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace temper::h5 {

// ---- CRC-32 -----------------------------------------------------------------
namespace {
struct CrcTables {
  std::array<std::array<uint32_t, 256>, 8> t{};
  CrcTables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
      t[0][i] = c;
    }
    for (int s = 1; s < 8; ++s)
      for (uint32_t i = 0; i < 256; ++i) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xffu];
  }
};
const CrcTables& crc_tables() {
  static const CrcTables tables;  // immutable after construction
  return tables;
}
}  // namespace

uint32_t crc32(const void* data, size_t n, uint32_t crc) {
  const auto& t = crc_tables().t;
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  while (n >= 8) {  // slicing-by-8: eight table look-ups per 8 input bytes
    uint32_t a, b;
    std::memcpy(&a, p, 4);
    std::memcpy(&b, p + 4, 4);
    a ^= crc;
    crc = t[7][a & 0xffu] ^ t[6][(a >> 8) & 0xffu] ^ t[5][(a >> 16) & 0xffu] ^ t[4][a >> 24] ^
          t[3][b & 0xffu] ^ t[2][(b >> 8) & 0xffu] ^ t[1][(b >> 16) & 0xffu] ^ t[0][b >> 24];
    p += 8;
    n -= 8;
  }
#endif
  while (n--) crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xffu];
  return ~crc;
}

// ---- errors -----------------------------------------------------------------
namespace {
// HDF5 closes files still open at exit in an atexit handler. After a failed write
// (disk full) a file can stay open with dirty metadata that cannot be flushed, and
// that handler then loops and crashes (exit 139) after temper has already reported
// the error. Every file temper opens is closed by its Hid, so the handler is not
// needed: turn it off before the first HDF5 call.
struct NoAtexitHandler {
  NoAtexitHandler() { H5dont_atexit(); }
} const no_atexit_handler;
}  // namespace

namespace {
std::recursive_mutex& hdf5_mutex() {
  static std::recursive_mutex m;
  return m;
}
}  // namespace

Silence::Silence() : lock_(hdf5_mutex()) {
  H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}
Silence::~Silence() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }

namespace {
herr_t walk_cb(unsigned, const H5E_error2_t* e, void* out) {
  if (e && e->desc && *e->desc) *static_cast<std::string*>(out) = e->desc;  // keeps the innermost
  return 0;
}
}  // namespace

std::string last_error() {
  std::string msg;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, &msg);
  for (char& c : msg)  // one line: HDF5's "file write failed: time = <ctime()>" holds ctime's newline
    if (c == '\n') c = ' ';
  return msg;
}

hid_t check(hid_t id, const std::string& ctx, const char* what) {
  if (id < 0) {
    std::string h5 = last_error();
    fail(what, " (", ctx, ")", h5.empty() ? "" : ": HDF5 says: ", h5);
  }
  return id;
}

namespace {
void check_status(herr_t st, const std::string& ctx, const char* what) {
  check(static_cast<hid_t>(st), ctx, what);
}
// "file.h5" + "a/b" -> "file.h5:/a/b"; "file.h5:/g" + "a" -> "file.h5:/g/a".
std::string sub(const std::string& ctx, const std::string& name) {
  bool in_file = ctx.find(":/") != std::string::npos || (!ctx.empty() && ctx.back() == ':');
  return in_file ? cat(ctx, "/", name) : cat(ctx, ":/", name);
}
}  // namespace

// ---- handles ----------------------------------------------------------------
Hid& Hid::operator=(Hid&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    o.id_ = -1;
  }
  return *this;
}

namespace {
herr_t close_id(hid_t id) {
  switch (H5Iget_type(id)) {
    case H5I_FILE: return H5Fclose(id);
    case H5I_GROUP: return H5Gclose(id);
    case H5I_DATASET: return H5Dclose(id);
    case H5I_DATASPACE: return H5Sclose(id);
    case H5I_DATATYPE: return H5Tclose(id);
    case H5I_ATTR: return H5Aclose(id);
    case H5I_GENPROP_LST: return H5Pclose(id);
    default: return H5Idec_ref(id);
  }
}
}  // namespace

void Hid::reset() {
  if (id_ >= 0) close_id(id_);
  id_ = -1;
}

void Hid::close(const std::string& ctx) {
  if (id_ < 0) return;
  herr_t st = close_id(id_);
  id_ = -1;
  check_status(st, ctx, "closing an HDF5 object failed");
}

// ---- files and groups -------------------------------------------------------
Hid create_file(const std::string& path) {
  return Hid(check(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), path,
                   "cannot create HDF5 file"));
}

Hid open_file(const std::string& path, bool writable) {
  return Hid(check(H5Fopen(path.c_str(), writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT), path,
                   "cannot open HDF5 file (missing, truncated or not HDF5?)"));
}

void flush_file(hid_t file, const std::string& path) {
  check_status(H5Fflush(file, H5F_SCOPE_GLOBAL), path, "flushing HDF5 file failed");
}


namespace {
// Link creation: intermediate groups on, UTF-8 names.
Hid link_plist(const std::string& ctx) {
  Hid lcpl(check(H5Pcreate(H5P_LINK_CREATE), ctx, "H5Pcreate"));
  check_status(H5Pset_create_intermediate_group(lcpl, 1), ctx, "H5Pset_create_intermediate_group");
  check_status(H5Pset_char_encoding(lcpl, H5T_CSET_UTF8), ctx, "H5Pset_char_encoding");
  return lcpl;
}

Hid vlen_string_type(const std::string& ctx) {
  Hid t(check(H5Tcopy(H5T_C_S1), ctx, "H5Tcopy"));
  check_status(H5Tset_size(t, H5T_VARIABLE), ctx, "H5Tset_size");
  check_status(H5Tset_cset(t, H5T_CSET_UTF8), ctx, "H5Tset_cset");
  return t;
}

Hid make_space(const Shape& shape, const std::string& ctx) {
  if (shape.empty()) return Hid(check(H5Screate(H5S_SCALAR), ctx, "H5Screate"));
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  return Hid(check(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), ctx,
                   "cannot create dataspace"));
}
}  // namespace

Hid create_group(hid_t loc, const std::string& path, const std::string& ctx) {
  if (exists(loc, path)) return open_group(loc, path, ctx);
  Hid lcpl = link_plist(ctx);
  return Hid(check(H5Gcreate2(loc, path.c_str(), lcpl, H5P_DEFAULT, H5P_DEFAULT), sub(ctx, path),
                   "cannot create group"));
}

Hid open_group(hid_t loc, const std::string& path, const std::string& ctx) {
  return Hid(check(H5Gopen2(loc, path.c_str(), H5P_DEFAULT), sub(ctx, path), "missing group"));
}

bool exists(hid_t loc, const std::string& path) {
  size_t pos = 0;
  while (true) {
    size_t slash = path.find('/', pos);
    std::string prefix = path.substr(0, slash);
    if (!prefix.empty() && prefix != "/" && H5Lexists(loc, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (slash == std::string::npos) return true;
    pos = slash + 1;
  }
}

hid_t native_type(DType t) {
  switch (t) {
    case DType::F32: return H5T_NATIVE_FLOAT;
    case DType::F64: return H5T_NATIVE_DOUBLE;
    case DType::BF16:
    case DType::F16: return H5T_NATIVE_UINT16;
    case DType::I32: return H5T_NATIVE_INT32;
    case DType::I64: return H5T_NATIVE_INT64;
    case DType::U8: return H5T_NATIVE_UINT8;
  }
  fail("no HDF5 type for dtype code ", int(t));
}

// ---- datasets ---------------------------------------------------------------
Hid write_dataset(hid_t loc, const std::string& name, hid_t mem_type, const Shape& shape,
                  const void* data, const std::string& ctx) {
  std::string where = sub(ctx, name);
  Hid space = make_space(shape, where);
  Hid lcpl = link_plist(where);
  Hid dset(check(H5Dcreate2(loc, name.c_str(), mem_type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT), where,
                 "cannot create dataset (does a dataset of the same name prefix exist?)"));
  if (shape_numel(shape) > 0)
    check_status(H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), where,
                 "writing dataset failed");
  return dset;
}

Hid create_dataset(hid_t loc, const std::string& name, hid_t type, const Shape& shape, const std::string& ctx) {
  std::string where = sub(ctx, name);
  Hid space = make_space(shape, where);
  Hid lcpl = link_plist(where);
  Hid dcpl(check(H5Pcreate(H5P_DATASET_CREATE), where, "H5Pcreate"));
  check_status(H5Pset_layout(dcpl, H5D_CONTIGUOUS), where, "H5Pset_layout");
  check_status(H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY), where, "H5Pset_alloc_time");
  check_status(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER), where, "H5Pset_fill_time");
  return Hid(check(H5Dcreate2(loc, name.c_str(), type, space, lcpl, dcpl, H5P_DEFAULT), where,
                   "cannot create dataset (does a dataset of the same name prefix exist?)"));
}

namespace {
// Adds to `space`'s selection the elements [b, e) (relative to the block that
// `start` fixes in dimensions < k) of the C-order flattening: one hyperslab per
// run of whole rows, recursing into the partial first and last rows.
void select_run(hid_t space, const std::vector<hsize_t>& dims, size_t k, std::vector<hsize_t>& start, hsize_t b,
                hsize_t e, bool& first, const std::string& ctx) {
  if (b >= e) return;
  hsize_t inner = 1;
  for (size_t j = k + 1; j < dims.size(); ++j) inner *= dims[j];
  auto rows = [&](hsize_t r0, hsize_t r1) {  // whole rows [r0, r1) of dimension k
    std::vector<hsize_t> st(start), cnt(dims.size(), 1);
    st[k] = r0;
    for (size_t j = k + 1; j < dims.size(); ++j) st[j] = 0, cnt[j] = dims[j];
    cnt[k] = r1 - r0;
    check_status(H5Sselect_hyperslab(space, first ? H5S_SELECT_SET : H5S_SELECT_OR, st.data(), nullptr,
                                     cnt.data(), nullptr),
                 ctx, "cannot select a range of the dataset");
    first = false;
  };
  const hsize_t r0 = b / inner, r1 = e / inner;
  if (b % inner == 0 && e % inner == 0) return rows(r0, r1);
  auto part = [&](hsize_t row, hsize_t pb, hsize_t pe) {
    start[k] = row;
    select_run(space, dims, k + 1, start, pb, pe, first, ctx);
    start[k] = 0;
  };
  if (r0 == r1) return part(r0, b - r0 * inner, e - r0 * inner);
  hsize_t whole_from = r0;
  if (b % inner != 0) {
    part(r0, b - r0 * inner, inner);
    whole_from = r0 + 1;
  }
  if (whole_from < r1) rows(whole_from, r1);
  if (e % inner != 0) part(r1, 0, e - r1 * inner);
}

// The dataset's file space with [begin, end) selected, and the matching memory space.
std::pair<Hid, Hid> range_spaces(hid_t dset, const Shape& shape, int64_t begin, int64_t end, const std::string& ctx) {
  const int64_t numel = shape_numel(shape);
  TEMPER_CHECK(begin >= 0 && begin <= end && end <= numel, "element range [", begin, ", ", end, ") outside ",
               shape_str(shape), " (", ctx, ")");
  Hid fspace(check(H5Dget_space(dset), ctx, "H5Dget_space"));
  hsize_t n = hsize_t(end - begin);
  Hid mspace(check(H5Screate_simple(1, &n, nullptr), ctx, "H5Screate_simple"));
  if (begin == end) {
    check_status(H5Sselect_none(fspace), ctx, "H5Sselect_none");
    check_status(H5Sselect_none(mspace), ctx, "H5Sselect_none");
  } else if (shape.empty()) {
    check_status(H5Sselect_all(fspace), ctx, "H5Sselect_all");
  } else {
    std::vector<hsize_t> dims(shape.begin(), shape.end()), start(shape.size(), 0);
    bool first = true;
    select_run(fspace, dims, 0, start, hsize_t(begin), hsize_t(end), first, ctx);
  }
  return {std::move(fspace), std::move(mspace)};
}
}  // namespace

void write_range(hid_t dset, hid_t mem_type, const Shape& shape, int64_t begin, int64_t end, const void* data,
                 hid_t xfer, const std::string& ctx) {
  auto [fspace, mspace] = range_spaces(dset, shape, begin, end, ctx);
  check_status(H5Dwrite(dset, mem_type, mspace, fspace, xfer, data), ctx, "writing dataset failed");
}

void read_range(hid_t dset, hid_t mem_type, const Shape& shape, int64_t begin, int64_t end, void* out,
                const std::string& ctx) {
  if (begin == end) return;
  auto [fspace, mspace] = range_spaces(dset, shape, begin, end, ctx);
  check_status(H5Dread(dset, mem_type, mspace, fspace, H5P_DEFAULT, out), ctx,
               "reading dataset failed (corrupt or truncated file?)");
}

Hid open_dataset(hid_t loc, const std::string& name, const std::string& ctx) {
  return Hid(check(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), sub(ctx, name), "missing or unreadable dataset"));
}

Shape dataset_shape(hid_t dset, const std::string& ctx) {
  Hid space(check(H5Dget_space(dset), ctx, "H5Dget_space"));
  int nd = H5Sget_simple_extent_ndims(space);
  check(nd, ctx, "cannot read dataset rank");
  std::vector<hsize_t> dims(static_cast<size_t>(nd));
  if (nd > 0) check(H5Sget_simple_extent_dims(space, dims.data(), nullptr), ctx, "cannot read dataset shape");
  return Shape(dims.begin(), dims.end());
}

void read_dataset(hid_t dset, hid_t mem_type, void* out, const std::string& ctx) {
  Hid space(check(H5Dget_space(dset), ctx, "H5Dget_space"));
  hssize_t n = H5Sget_simple_extent_npoints(space);
  check(static_cast<hid_t>(n), ctx, "cannot read dataset size");
  if (n == 0) return;
  check_status(H5Dread(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out), ctx,
               "reading dataset failed (corrupt or truncated file?)");
}

Hid write_string_dataset(hid_t loc, const std::string& name, const std::string& value,
                         const std::string& ctx) {
  std::string where = sub(ctx, name);
  TEMPER_CHECK(value.find('\0') == std::string::npos, "string '", name, "' for ", ctx,
               " contains a NUL byte; HDF5 strings cannot hold one");
  Hid type = vlen_string_type(where);
  Hid space(check(H5Screate(H5S_SCALAR), where, "H5Screate"));
  Hid lcpl = link_plist(where);
  Hid dset(check(H5Dcreate2(loc, name.c_str(), type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT), where,
                 "cannot create string dataset"));
  const char* p = value.c_str();
  check_status(H5Dwrite(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, &p), where, "writing string failed");
  return dset;
}

namespace {
// Reads a scalar string (variable or fixed length) from a dataset or attribute.
template <typename GetType, typename Read>
std::string read_string(GetType get_type, Read read, const std::string& ctx) {
  Hid ftype(check(get_type(), ctx, "cannot read string type"));
  TEMPER_CHECK(H5Tget_class(ftype) == H5T_STRING, "expected a string at ", ctx);
  if (H5Tis_variable_str(ftype) > 0) {
    Hid mtype = vlen_string_type(ctx);
    char* p = nullptr;
    check_status(read(mtype.get(), static_cast<void*>(&p)), ctx, "reading string failed");
    std::string s = p ? p : "";
    if (p) H5free_memory(p);
    return s;
  }
  size_t size = H5Tget_size(ftype);
  TEMPER_CHECK(size > 0, "string of size 0 at ", ctx);
  Hid mtype(check(H5Tcopy(H5T_C_S1), ctx, "H5Tcopy"));
  check_status(H5Tset_size(mtype, size), ctx, "H5Tset_size");
  std::string buf(size, '\0');
  check_status(read(mtype.get(), static_cast<void*>(&buf[0])), ctx, "reading string failed");
  buf.resize(std::strlen(buf.c_str()));
  return buf;
}
}  // namespace

std::string read_string_dataset(hid_t dset, const std::string& ctx) {
  return read_string([&] { return H5Dget_type(dset); },
                     [&](hid_t m, void* out) { return H5Dread(dset, m, H5S_ALL, H5S_ALL, H5P_DEFAULT, out); },
                     ctx);
}

namespace {
void visit(hid_t group, const std::string& prefix, std::vector<std::string>& out, const std::string& ctx) {
  H5G_info_t info;
  check_status(H5Gget_info(group, &info), sub(ctx, prefix), "cannot list group");
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    ssize_t len = H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    check(static_cast<hid_t>(len), sub(ctx, prefix), "cannot read a link name");
    std::string name(static_cast<size_t>(len) + 1, '\0');
    H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, &name[0], name.size(), H5P_DEFAULT);
    name.resize(static_cast<size_t>(len));
    std::string full = prefix.empty() ? name : prefix + "/" + name;
    Hid obj(check(H5Oopen(group, name.c_str(), H5P_DEFAULT), sub(ctx, full), "cannot open object"));
    H5I_type_t t = H5Iget_type(obj);
    if (t == H5I_DATASET) out.push_back(full);
    else if (t == H5I_GROUP) visit(obj, full, out, ctx);
  }
}
}  // namespace

std::vector<std::string> list_datasets(hid_t group, const std::string& ctx) {
  std::vector<std::string> out;
  visit(group, "", out, ctx);
  std::sort(out.begin(), out.end());
  return out;
}

// ---- attributes -------------------------------------------------------------
bool has_attr(hid_t obj, const std::string& name) { return H5Aexists(obj, name.c_str()) > 0; }

namespace {
void write_attr(hid_t obj, const std::string& name, hid_t type, hid_t space, const void* data,
                const std::string& ctx) {
  std::string where = cat(ctx, " attribute '", name, "'");
  if (has_attr(obj, name)) check_status(H5Adelete(obj, name.c_str()), where, "cannot replace attribute");
  Hid attr(check(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), where,
                 "cannot create attribute"));
  if (data) check_status(H5Awrite(attr, type, data), where, "cannot write attribute");
}

void write_attr_scalar(hid_t obj, const std::string& name, hid_t type, const void* v, const std::string& ctx) {
  Hid space(check(H5Screate(H5S_SCALAR), ctx, "H5Screate"));
  write_attr(obj, name, type, space, v, ctx);
}

Hid open_attr(hid_t obj, const std::string& name, const std::string& ctx) {
  return Hid(check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), cat(ctx, " attribute '", name, "'"),
                   "missing attribute"));
}

template <typename T>
T read_attr_scalar(hid_t obj, const std::string& name, hid_t mtype, const std::string& ctx) {
  Hid attr = open_attr(obj, name, ctx);
  std::string where = cat(ctx, " attribute '", name, "'");
  Hid space(check(H5Aget_space(attr), where, "H5Aget_space"));
  TEMPER_CHECK(H5Sget_simple_extent_npoints(space) == 1, "expected one value in ", where);
  T v{};
  check_status(H5Aread(attr, mtype, &v), where, "cannot read attribute");
  return v;
}
}  // namespace

void write_attr_string(hid_t obj, const std::string& name, const std::string& v, const std::string& ctx) {
  Hid type = vlen_string_type(ctx);
  Hid space(check(H5Screate(H5S_SCALAR), ctx, "H5Screate"));
  const char* p = v.c_str();
  write_attr(obj, name, type, space, &p, ctx);
}

void write_attr_i64(hid_t obj, const std::string& name, int64_t v, const std::string& ctx) {
  write_attr_scalar(obj, name, H5T_NATIVE_INT64, &v, ctx);
}

void write_attr_int(hid_t obj, const std::string& name, int v, const std::string& ctx) {
  write_attr_scalar(obj, name, H5T_NATIVE_INT, &v, ctx);
}

void write_attr_u32(hid_t obj, const std::string& name, uint32_t v, const std::string& ctx) {
  write_attr_scalar(obj, name, H5T_NATIVE_UINT32, &v, ctx);
}

void write_attr_ints(hid_t obj, const std::string& name, const std::vector<int>& v, const std::string& ctx) {
  Hid space = v.empty() ? Hid(check(H5Screate(H5S_NULL), ctx, "H5Screate"))
                        : make_space({static_cast<int64_t>(v.size())}, ctx);
  write_attr(obj, name, H5T_NATIVE_INT, space, v.empty() ? nullptr : v.data(), ctx);
}

namespace {
template <typename T>
void write_attr_vec(hid_t obj, const std::string& name, hid_t type, const std::vector<T>& v, const std::string& ctx) {
  Hid space = v.empty() ? Hid(check(H5Screate(H5S_NULL), ctx, "H5Screate"))
                        : make_space({static_cast<int64_t>(v.size())}, ctx);
  write_attr(obj, name, type, space, v.empty() ? nullptr : v.data(), ctx);
}

template <typename T>
std::vector<T> read_attr_vec(hid_t obj, const std::string& name, hid_t type, const std::string& ctx) {
  Hid attr = open_attr(obj, name, ctx);
  std::string where = cat(ctx, " attribute '", name, "'");
  Hid space(check(H5Aget_space(attr), where, "H5Aget_space"));
  if (H5Sget_simple_extent_type(space) == H5S_NULL) return {};
  hssize_t n = H5Sget_simple_extent_npoints(space);
  check(static_cast<hid_t>(n), where, "cannot read attribute size");
  std::vector<T> v(static_cast<size_t>(n));
  if (n > 0) check_status(H5Aread(attr, type, v.data()), where, "cannot read attribute");
  return v;
}
}  // namespace

void write_attr_i64s(hid_t obj, const std::string& name, const std::vector<int64_t>& v, const std::string& ctx) {
  write_attr_vec(obj, name, H5T_NATIVE_INT64, v, ctx);
}

void write_attr_u32s(hid_t obj, const std::string& name, const std::vector<uint32_t>& v, const std::string& ctx) {
  write_attr_vec(obj, name, H5T_NATIVE_UINT32, v, ctx);
}

std::vector<int64_t> read_attr_i64s(hid_t obj, const std::string& name, const std::string& ctx) {
  return read_attr_vec<int64_t>(obj, name, H5T_NATIVE_INT64, ctx);
}

std::vector<uint32_t> read_attr_u32s(hid_t obj, const std::string& name, const std::string& ctx) {
  return read_attr_vec<uint32_t>(obj, name, H5T_NATIVE_UINT32, ctx);
}

std::string read_attr_string(hid_t obj, const std::string& name, const std::string& ctx) {
  Hid attr = open_attr(obj, name, ctx);
  return read_string([&] { return H5Aget_type(attr); }, [&](hid_t m, void* out) { return H5Aread(attr, m, out); },
                     cat(ctx, " attribute '", name, "'"));
}

int64_t read_attr_i64(hid_t obj, const std::string& name, const std::string& ctx) {
  return read_attr_scalar<int64_t>(obj, name, H5T_NATIVE_INT64, ctx);
}

uint32_t read_attr_u32(hid_t obj, const std::string& name, const std::string& ctx) {
  return read_attr_scalar<uint32_t>(obj, name, H5T_NATIVE_UINT32, ctx);
}

std::vector<int> read_attr_ints(hid_t obj, const std::string& name, const std::string& ctx) {
  Hid attr = open_attr(obj, name, ctx);
  std::string where = cat(ctx, " attribute '", name, "'");
  Hid space(check(H5Aget_space(attr), where, "H5Aget_space"));
  if (H5Sget_simple_extent_type(space) == H5S_NULL) return {};
  hssize_t n = H5Sget_simple_extent_npoints(space);
  check(static_cast<hid_t>(n), where, "cannot read attribute size");
  std::vector<int> v(static_cast<size_t>(n));
  if (n > 0) check_status(H5Aread(attr, H5T_NATIVE_INT, v.data()), where, "cannot read attribute");
  return v;
}

}  // namespace temper::h5
