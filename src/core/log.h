// Logging: levels from the deck, rank-aware. Rank 0 prints by default; other
// ranks print warnings and errors only (each line prefixed with its rank).
#pragma once
#include <string>

#include "core/error.h"

namespace temper {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3 };

LogLevel log_level_from_name(const std::string& name);  // debug|info|warn|error
void log_init(int rank, LogLevel level);
LogLevel log_level();
int log_rank();
void log_write(LogLevel level, const std::string& msg);

template <typename... Args> void log_debug(const Args&... a) { log_write(LogLevel::Debug, cat(a...)); }
template <typename... Args> void log_info(const Args&... a) { log_write(LogLevel::Info, cat(a...)); }
template <typename... Args> void log_warn(const Args&... a) { log_write(LogLevel::Warn, cat(a...)); }
template <typename... Args> void log_error(const Args&... a) { log_write(LogLevel::Error, cat(a...)); }

}  // namespace temper
