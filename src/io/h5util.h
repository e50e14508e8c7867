// Small RAII wrappers and helpers over the HDF5 C API (checkpoints, trajectory
// dumps). Every failure becomes a temper::Error naming the file and the object,
// plus HDF5's own innermost message; HDF5's automatic error printing is off
// while a Silence guard lives (each public entry point of io/ holds one).
#pragma once
#include <hdf5.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace temper::h5 {

// CRC-32 (IEEE 802.3, the zlib/PNG polynomial), slicing-by-8; `crc` chains calls.
uint32_t crc32(const void* data, size_t n, uint32_t crc = 0);

// Turns HDF5's automatic error printing off for its lifetime (restores it after)
// and holds the process-wide HDF5 lock: the library is not thread-safe, and an
// asynchronous checkpoint writes from a thread of its own.
class Silence {
 public:
  Silence();
  ~Silence();
  Silence(const Silence&) = delete;
  Silence& operator=(const Silence&) = delete;

 private:
  std::lock_guard<std::recursive_mutex> lock_;
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

// The innermost message on HDF5's current error stack ("" if none).
std::string last_error();

// Throws temper::Error "<what> (<ctx>): <HDF5 message>" if id < 0; returns id.
hid_t check(hid_t id, const std::string& ctx, const char* what);

// Move-only owner of an hid_t; closes it with the matching H5?close.
class Hid {
 public:
  Hid() = default;
  explicit Hid(hid_t id) : id_(id) {}
  ~Hid() { reset(); }
  Hid(Hid&& o) noexcept : id_(o.id_) { o.id_ = -1; }
  Hid& operator=(Hid&& o) noexcept;
  Hid(const Hid&) = delete;
  Hid& operator=(const Hid&) = delete;
  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }  // NOLINT: passes straight to the C API
  bool valid() const { return id_ >= 0; }
  void reset();
  // Closes now and reports a failure (a file's close flushes; errors matter there).
  void close(const std::string& ctx);

 private:
  hid_t id_ = -1;
};

// Files. `ctx` is the path, used in messages.
Hid create_file(const std::string& path);         // truncates an existing file
Hid open_file(const std::string& path, bool writable = false);
void flush_file(hid_t file, const std::string& path);


// Groups; `path` may contain '/', intermediate groups are created.
Hid create_group(hid_t loc, const std::string& path, const std::string& ctx);
Hid open_group(hid_t loc, const std::string& path, const std::string& ctx);
bool exists(hid_t loc, const std::string& path);  // every component of `path` exists

// The native HDF5 memory type of a dtype (bf16/f16 map to uint16).
hid_t native_type(DType t);

// Datasets (contiguous layout, so a dataset's bytes sit at one file offset).
// `shape` {} is a scalar; zero-sized dimensions are allowed. Intermediate
// groups of `name` are created.
Hid write_dataset(hid_t loc, const std::string& name, hid_t mem_type, const Shape& shape,
                  const void* data, const std::string& ctx);
// Creates a contiguous dataset whose storage is allocated at once and never
// filled (every element is written later, as flat ranges, possibly by several ranks).
Hid create_dataset(hid_t loc, const std::string& name, hid_t type, const Shape& shape, const std::string& ctx);
// Elements [begin, end) of the C-order flattening of a dataset of `shape`, from or
// to `count = end - begin` contiguous elements in memory (xfer: a transfer property
// list, usually H5P_DEFAULT); with begin == end nothing is selected
// (nothing is written or read).
void write_range(hid_t dset, hid_t mem_type, const Shape& shape, int64_t begin, int64_t end, const void* data,
                 hid_t xfer, const std::string& ctx);
void read_range(hid_t dset, hid_t mem_type, const Shape& shape, int64_t begin, int64_t end, void* out,
                const std::string& ctx);
Hid open_dataset(hid_t loc, const std::string& name, const std::string& ctx);
Shape dataset_shape(hid_t dset, const std::string& ctx);
void read_dataset(hid_t dset, hid_t mem_type, void* out, const std::string& ctx);
// Scalar variable-length UTF-8 string datasets.
Hid write_string_dataset(hid_t loc, const std::string& name, const std::string& value,
                         const std::string& ctx);
std::string read_string_dataset(hid_t dset, const std::string& ctx);
// Names (relative to `group`, '/'-joined) of every dataset below it, sorted.
std::vector<std::string> list_datasets(hid_t group, const std::string& ctx);

// Attributes on any object (file, group, dataset).
bool has_attr(hid_t obj, const std::string& name);
void write_attr_string(hid_t obj, const std::string& name, const std::string& v, const std::string& ctx);
void write_attr_int(hid_t obj, const std::string& name, int v, const std::string& ctx);
void write_attr_i64(hid_t obj, const std::string& name, int64_t v, const std::string& ctx);
void write_attr_u32(hid_t obj, const std::string& name, uint32_t v, const std::string& ctx);
void write_attr_ints(hid_t obj, const std::string& name, const std::vector<int>& v, const std::string& ctx);
void write_attr_i64s(hid_t obj, const std::string& name, const std::vector<int64_t>& v, const std::string& ctx);
void write_attr_u32s(hid_t obj, const std::string& name, const std::vector<uint32_t>& v, const std::string& ctx);
std::string read_attr_string(hid_t obj, const std::string& name, const std::string& ctx);
int64_t read_attr_i64(hid_t obj, const std::string& name, const std::string& ctx);
uint32_t read_attr_u32(hid_t obj, const std::string& name, const std::string& ctx);
std::vector<int> read_attr_ints(hid_t obj, const std::string& name, const std::string& ctx);
std::vector<int64_t> read_attr_i64s(hid_t obj, const std::string& name, const std::string& ctx);
std::vector<uint32_t> read_attr_u32s(hid_t obj, const std::string& name, const std::string& ctx);

}  // namespace temper::h5
