// Progress and metrics: one human line per step on rank 0 (step/total, loss,
// tokens/s, lr, grad-norm, elapsed, ETA) and one JSON object per step in
// <output_dir>/metrics.rank<R>.jsonl on every rank.
#pragma once
#include <chrono>
#include <cstdio>
#include <map>
#include <string>

#include "core/file_write.h"

namespace temper {

std::string format_duration(double seconds);  // "1h02m", "3m05s", "12.3s"

class Progress {
 public:
  // metrics_path empty: no JSONL. every: print one line every N steps (and the last).
  // A failed metrics write throws (naming the file).
  Progress(int64_t total_steps, int64_t first_step, const std::string& metrics_path, int every);
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Records one finished step. `values` go to the JSONL line; the printed line shows
  // loss, lr, gnorm when present, plus tokens/s over the recent window and the ETA.
  void step(int64_t step, int64_t tokens, const std::map<std::string, double>& values);
  double elapsed() const;
  // A free-form event in the JSONL (e.g. checkpoint, eval).
  void event(const std::string& kind, const std::map<std::string, double>& values);

 private:
  using clock = std::chrono::steady_clock;
  int64_t total_, first_;
  int every_;
  LineFile jsonl_;
  clock::time_point start_, last_;
  int64_t window_tokens_ = 0;
  int64_t window_steps_ = 0;
  double rate_ = 0;  // tokens/s of the last printed window
};

}  // namespace temper
