#include "core/log.h"

#include <cstdio>
#include <mutex>

namespace temper {
namespace {
int g_rank = 0;
LogLevel g_level = LogLevel::Info;
std::mutex g_mutex;
}  // namespace

LogLevel log_level_from_name(const std::string& n) {
  if (n == "debug") return LogLevel::Debug;
  if (n == "info") return LogLevel::Info;
  if (n == "warn") return LogLevel::Warn;
  if (n == "error") return LogLevel::Error;
  fail("unknown log level '", n, "' (expected debug, info, warn or error)");
}

void log_init(int rank, LogLevel level) {
  g_rank = rank;
  g_level = level;
}
LogLevel log_level() { return g_level; }
int log_rank() { return g_rank; }

void log_write(LogLevel level, const std::string& msg) {
  if (level < g_level) return;
  if (g_rank != 0 && level < LogLevel::Warn) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  FILE* f = level >= LogLevel::Warn ? stderr : stdout;
  const char* tag = level == LogLevel::Warn ? "warning: " : level == LogLevel::Error ? "error: " : "";
  if (g_rank != 0)
    std::fprintf(f, "[rank %d] %s%s\n", g_rank, tag, msg.c_str());
  else
    std::fprintf(f, "%s%s\n", tag, msg.c_str());
  std::fflush(f);
}

}  // namespace temper
