// HDF5 checkpoints: one file per step, <dir>/ckpt_<step, 9 digits>.h5, written
// atomically (.partial + fsync + rename + directory fsync), every dataset
// CRC-32 checked on load, the newest K kept. Layout: docs/checkpoint_format.md.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace temper {

struct CheckpointState {
  int64_t step = 0;
  std::string phase;                           // "sft", "rl", "toy"
  std::string deck_text;                       // resolved deck
  std::vector<int> mesh;                       // {sp, dp_shard, dp_replicate} of the writer
  std::map<std::string, Tensor> tensors;       // CPU tensors, any dtype; '/' in a name makes groups
  std::map<std::string, std::string> strings;  // small JSON blobs: data position, scheduler, ...
  std::map<std::string, std::vector<uint64_t>> u64;  // RNG states and counters
};

// The version this code writes; files with a newer one are refused.
constexpr int kCheckpointFormatVersion = 1;

class CheckpointStore {
 public:
  // keep_last <= 0 keeps every checkpoint.
  CheckpointStore(std::string dir, int keep_last);

  // Writes step s.step atomically (creating `dir` if needed) and returns the
  // final path; then deletes the oldest checkpoints with step <= s.step beyond
  // keep_last, and stale .partial files of earlier steps. An existing file of
  // the same step is replaced atomically (it stays valid until the rename).
  // Throws temper::Error on any failure, leaving existing checkpoints alone.
  std::string write(const CheckpointState& s) const;

  // Complete (renamed into place) checkpoint files, newest step first.
  std::vector<std::string> list() const;

  // The newest checkpoint that loads and verifies; partial or corrupt ones are
  // skipped with a warning. nullopt if there is none.
  std::optional<CheckpointState> load_latest_valid(std::string* path_out = nullptr) const;

  // Reads everything and checks every checksum; throws temper::Error naming
  // the file and the object on any problem.
  static CheckpointState load(const std::string& path);
  // A full read and checksum check; throws like load().
  static void verify(const std::string& path);

  // "<dir>/ckpt_000000042.h5" and "<dir>/.ckpt_000000042.h5.partial".
  std::string path_for(int64_t step) const;
  std::string partial_path_for(int64_t step) const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  int keep_last_;
};

}  // namespace temper
