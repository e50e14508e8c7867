// Errors: one exception type carrying the context a user needs (file, line, key).
// Thrown anywhere, caught once in main, printed, then a non-zero exit.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace temper {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

// Concatenates its arguments with operator<< into one message.
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(cat(args...));
}

}  // namespace temper

#define TEMPER_CHECK(cond, ...)                    \
  do {                                             \
    if (!(cond)) ::temper::fail(__VA_ARGS__);      \
  } while (0)
