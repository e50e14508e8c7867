#include "core/progress.h"

#include <cmath>
#include <sstream>

#include "core/error.h"
#include "core/log.h"

namespace temper {

std::string format_duration(double s) {
  char buf[64];
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) std::snprintf(buf, sizeof buf, "%.1fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  else std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, (int(s) % 3600) / 60);
  return buf;
}

Progress::Progress(int64_t total, int64_t first, const std::string& path, int every)
    : total_(total), first_(first), every_(every < 1 ? 1 : every), start_(clock::now()), last_(start_) {
  if (!path.empty()) jsonl_ = LineFile(path, LineFile::Mode::Append);
}

double Progress::elapsed() const { return std::chrono::duration<double>(clock::now() - start_).count(); }

static void write_json_values(std::ostringstream& os, const std::map<std::string, double>& values) {
  for (const auto& [k, v] : values) {
    os << ",\"" << k << "\":";
    if (std::isfinite(v)) os << v; else os << "null";
  }
}

void Progress::step(int64_t step, int64_t tokens, const std::map<std::string, double>& values) {
  auto now = clock::now();
  window_tokens_ += tokens;
  ++window_steps_;
  double t = elapsed();
  if (jsonl_.is_open()) {
    std::ostringstream os;
    os.precision(8);
    os << "{\"step\":" << step << ",\"time\":" << t << ",\"tokens\":" << tokens;
    write_json_values(os, values);
    os << "}\n";
    jsonl_.write(os.str());
  }
  bool last = step >= total_;
  if (step % every_ != 0 && !last) return;
  double dt = std::chrono::duration<double>(now - last_).count();
  if (dt > 0) rate_ = window_tokens_ / dt;
  double per_step = dt / double(window_steps_);
  last_ = now;
  window_tokens_ = 0;
  window_steps_ = 0;
  double eta = per_step * double(total_ - step);
  std::ostringstream os;
  char buf[96];
  int width = int(std::to_string(total_).size());
  std::snprintf(buf, sizeof buf, "step %*lld/%lld", width, (long long)step, (long long)total_);
  os << buf;
  auto show = [&](const char* key, const char* fmt) {
    auto it = values.find(key);
    if (it == values.end()) return;
    std::snprintf(buf, sizeof buf, fmt, it->second);
    os << " | " << key << " " << buf;
  };
  show("loss", "%.4f");
  show("reward", "%.3f");
  show("acc", "%.3f");
  show("resp_len", "%.0f");
  std::snprintf(buf, sizeof buf, "%.0f", rate_);
  os << " | tok/s " << buf;
  show("lr", "%.2e");
  show("gnorm", "%.3f");
  os << " | elapsed " << format_duration(t) << " | ETA " << format_duration(eta);
  log_info(os.str());
}

void Progress::event(const std::string& kind, const std::map<std::string, double>& values) {
  if (!jsonl_.is_open()) return;
  std::ostringstream os;
  os.precision(8);
  os << "{\"event\":\"" << kind << "\",\"time\":" << elapsed();
  write_json_values(os, values);
  os << "}\n";
  jsonl_.write(os.str());
}

}  // namespace temper
