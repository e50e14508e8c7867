// HDF5 trajectory dumps of RL steps: one file per dump, <dir>/traj_<step, 9 digits>.h5,
// written atomically like checkpoints (.partial, fsync, rename, directory fsync), so
// a crash never leaves a half-written dump under the final name. Ragged per-sample
// arrays (tokens, log-probs) are stored flat with an offsets array of N+1 entries.
// Layout and an h5py snippet: docs/trajectory_format.md.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "rl/rewards/reward.h"

namespace temper {

constexpr int kTrajectoryFormatVersion = 1;

// One RL batch, N samples (responses). Fields marked "optional" may be left
// empty (they are then absent from the file and read back empty); every other
// per-sample vector must have N entries.
struct TrajectoryBatch {
  int64_t step = 0;
  std::string algorithm;  // "grpo" | "gspo" | ...

  std::vector<int64_t> prompt_index;                 // index of the prompt in the prompt set
  std::vector<int32_t> group;                        // optional: group (prompt) number in the batch
  std::vector<std::string> task;                     // task family per sample
  std::vector<std::vector<int32_t>> prompt_tokens;   // optional: prompt token ids per sample
  std::vector<std::vector<int32_t>> response_tokens; // response token ids
  std::vector<std::vector<float>> behaviour_logp;    // per response token, at generation
  std::vector<std::vector<float>> current_logp;      // optional: per response token, at training
  std::vector<double> reward;
  std::vector<Verdict> verdict;
  std::vector<uint8_t> discarded;                    // 1 = excluded from the gradient
  std::vector<double> advantage;
  std::vector<double> pass_rate;                     // optional: the prompt's pass rate (-1 = unknown)
  std::vector<std::string> finish_reason;            // optional: "eos", "stop_string", "length"
  std::map<std::string, double> metrics;             // optional step scalars (loss, clip_frac, ...)

  size_t size() const { return prompt_index.size(); }
  // Throws temper::Error naming the field whose length disagrees.
  void validate() const;
};

class TrajectoryDumper {
 public:
  // keep_last <= 0 keeps every dump; otherwise the oldest beyond keep_last are removed.
  explicit TrajectoryDumper(std::string dir, int keep_last = 0);

  // Writes batch.step's dump atomically and returns its final path. On any error
  // the .partial file is removed and an existing dump of that step is left intact.
  std::string write(const TrajectoryBatch& batch) const;

  std::string path_for(int64_t step) const;          // <dir>/traj_000000042.h5
  std::string partial_path_for(int64_t step) const;  // <dir>/.traj_000000042.h5.partial
  std::vector<std::string> list() const;             // complete dumps, oldest step first
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  int keep_last_;
};

// Reads a dump (refuses .partial files and files without complete == 1).
TrajectoryBatch read_trajectory_dump(const std::string& path);

}  // namespace temper
