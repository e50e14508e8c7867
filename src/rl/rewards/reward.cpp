// Helpers shared by every reward: verdict names and <think> stripping.
#include "rl/rewards/reward.h"

namespace temper {

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::Correct: return "correct";
    case Verdict::Wrong: return "wrong";
    case Verdict::Unparsable: return "unparsable";
  }
  return "?";
}

std::optional<std::string> strip_think(const std::string& response) {
  static const std::string open = "<think>", close = "</think>";
  size_t first = response.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && response.compare(first, open.size(), open) == 0) {
    size_t end = response.find(close, first + open.size());
    if (end == std::string::npos) return std::nullopt;
    return response.substr(end + close.size());
  }
  // Templates that open <think> in the prompt: the response holds only the closing tag.
  size_t end = response.find(close);
  if (end != std::string::npos && response.rfind(open, end) == std::string::npos)
    return response.substr(end + close.size());
  return response;
}

}  // namespace temper
