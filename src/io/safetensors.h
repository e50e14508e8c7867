// safetensors files (the Hugging Face weight format): a reader that memory-maps a
// file and validates its header before any tensor is touched, a sharded-set reader
// (model.safetensors.index.json), and an atomic writer (one file or shards + index).
// Layout: u64 little-endian header length N, N bytes of JSON
//   {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}}
// padded with spaces to a multiple of 8, then the data section (offsets are relative to it).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace temper {

struct SafetensorsInfo {
  std::string name;
  std::string dtype;  // "F32", "BF16" or "F16" (others are refused when the file is opened)
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte range inside the data section
};

// One memory-mapped file. Copies share the mapping; it is unmapped when the last goes.
class SafetensorsFile {
 public:
  // Maps and validates: the header length lies inside the file, the header is a JSON
  // object, every dtype is known, shape x dtype size equals the byte range, every
  // range lies inside the data section and no two overlap. Throws naming the file.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const SafetensorsInfo& info(const std::string& name) const;  // throws naming file and tensor
  const std::map<std::string, std::string>& metadata() const { return metadata_; }  // "__metadata__"
  // The tensor as a new CPU f32 tensor (BF16 and F16 converted exactly).
  Tensor read_f32(const std::string& name) const;

 private:
  struct Mapping;
  std::string path_;
  std::shared_ptr<Mapping> map_;
  const uint8_t* data_ = nullptr;  // start of the data section
  std::map<std::string, SafetensorsInfo> index_;
  std::map<std::string, std::string> metadata_;
};

// Every tensor of a model directory: model.safetensors.index.json's weight_map when
// present (each listed tensor must be in its shard), else model.safetensors, else
// the directory's only *.safetensors files (a name in two files is an error).
class SafetensorsSet {
 public:
  static SafetensorsSet open_dir(const std::string& dir);
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  const SafetensorsInfo& info(const std::string& name) const;
  const std::string& file_of(const std::string& name) const;  // path of the shard holding it
  Tensor read_f32(const std::string& name) const;

 private:
  const SafetensorsFile& shard(const std::string& name) const;
  std::string dir_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> where_;  // tensor -> index into files_
};

// Tensors to write, in this order in the data section: CPU tensors of f32, f64 or bf16.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Writes `path` atomically (path + ".partial", fsync, rename) with every tensor
// stored as `dtype` (F32 or BF16); metadata defaults to {"format": "pt"} as
// transformers writes. Returns the bytes of the data section.
uint64_t write_safetensors(const std::string& path, const NamedTensors& tensors, DType dtype,
                           const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// Splits the tensors into shards of at most max_shard_bytes of data each (a larger
// tensor gets a shard of its own), in order. One shard: <dir>/model.safetensors;
// several: model-0000i-of-0000n.safetensors + model.safetensors.index.json
// ({"metadata": {"total_size", "total_parameters"}, "weight_map"}). Earlier
// model*.safetensors / index files in `dir` that are not part of this set are removed.
// Returns the file names written (relative to dir).
std::vector<std::string> write_safetensors_sharded(const std::string& dir, const NamedTensors& tensors, DType dtype,
                                                   uint64_t max_shard_bytes);

}  // namespace temper
