// Math reward: extract the final answer (last \boxed{...} or a configured marker
// such as "####"), normalise LaTeX/number formatting, and compare exactly (numbers
// as exact rationals, everything else as normalised strings). Model text is only
// ever parsed, never evaluated.
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <numeric>

#include "core/error.h"
#include "rl/rewards/reward.h"

namespace temper {
namespace {

bool is_alpha(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Index just past the '}' matching the '{' at `open`; npos when unbalanced.
// Escaped braces (\{ \}) do not count.
size_t match_brace(const std::string& s, size_t open) {
  int depth = 0;
  for (size_t i = open; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
      continue;
    }
    if (s[i] == '{') ++depth;
    if (s[i] == '}' && --depth == 0) return i + 1;
  }
  return std::string::npos;
}

// Position of `cmd` (e.g. "\\left") as a whole control word (not followed by a letter).
size_t find_command(const std::string& s, const std::string& cmd, size_t from) {
  for (size_t p = s.find(cmd, from); p != std::string::npos; p = s.find(cmd, p + 1))
    if (p + cmd.size() >= s.size() || !is_alpha(s[p + cmd.size()])) return p;
  return std::string::npos;
}

void erase_command(std::string& s, const std::string& cmd) {
  for (size_t p; (p = find_command(s, cmd, 0)) != std::string::npos;) s.erase(p, cmd.size());
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
}

// The argument of \frac or \sqrt at `pos`: {...} or a single character. Returns
// the argument text and advances pos; nullopt when malformed.
std::optional<std::string> take_arg(const std::string& s, size_t& pos) {
  while (pos < s.size() && is_space(s[pos])) ++pos;
  if (pos >= s.size()) return std::nullopt;
  if (s[pos] == '{') {
    size_t end = match_brace(s, pos);
    if (end == std::string::npos) return std::nullopt;
    std::string arg = s.substr(pos + 1, end - pos - 2);
    pos = end;
    return arg;
  }
  if (s[pos] == '\\') {  // a control word like \pi
    size_t e = pos + 1;
    while (e < s.size() && is_alpha(s[e])) ++e;
    std::string arg = s.substr(pos, std::max(e, pos + 2) - pos);
    pos += arg.size();
    return arg;
  }
  return std::string(1, s[pos++]);
}

// Rewrites \frac12, \frac1{2}, \sqrt2 into the braced forms \frac{1}{2}, \sqrt{2}.
std::string canonical_commands(const std::string& s, int depth = 0) {
  if (depth > 20) return s;
  std::string out;
  for (size_t i = 0; i < s.size();) {
    bool frac = s.compare(i, 5, "\\frac") == 0 && (i + 5 >= s.size() || !is_alpha(s[i + 5]));
    bool sqrt = s.compare(i, 5, "\\sqrt") == 0 && (i + 5 >= s.size() || !is_alpha(s[i + 5]));
    if (frac || sqrt) {
      size_t pos = i + 5;
      auto a = take_arg(s, pos);
      auto b = frac && a ? take_arg(s, pos) : std::optional<std::string>("");
      if (a && b) {
        out += frac ? "\\frac{" + canonical_commands(*a, depth + 1) + "}{" + canonical_commands(*b, depth + 1) + "}"
                    : "\\sqrt{" + canonical_commands(*a, depth + 1) + "}";
        i = pos;
        continue;
      }
    }
    out += s[i++];
  }
  return out;
}

// \text{..}-like groups: dropped when something else remains (units), unwrapped otherwise.
std::string handle_text_groups(std::string s) {
  static const char* const kCmds[] = {"\\text", "\\textbf", "\\textrm", "\\mathrm", "\\mbox", "\\mathbf"};
  std::string dropped = s, unwrapped = s;
  for (const char* cmd : kCmds) {
    for (std::string* t : {&dropped, &unwrapped}) {
      for (size_t p; (p = find_command(*t, cmd, 0)) != std::string::npos;) {
        size_t q = p + std::string(cmd).size();
        while (q < t->size() && is_space((*t)[q])) ++q;
        size_t end = q < t->size() && (*t)[q] == '{' ? match_brace(*t, q) : std::string::npos;
        if (end == std::string::npos) {
          t->erase(p, q - p);
          continue;
        }
        std::string inner = t->substr(q + 1, end - q - 2);
        t->replace(p, end - p, t == &dropped ? "" : inner);
      }
    }
  }
  return trim(dropped).empty() ? unwrapped : dropped;
}

struct Rational {
  int64_t num = 0, den = 1;
};

std::optional<Rational> make_rational(__int128 n, __int128 d) {
  if (d == 0) return std::nullopt;
  if (d < 0) n = -n, d = -d;
  __int128 a = n < 0 ? -n : n, b = d;
  while (b != 0) {
    __int128 t = a % b;
    a = b;
    b = t;
  }
  if (a > 1) n /= a, d /= a;
  const __int128 lim = INT64_MAX;
  if (n > lim || n < -lim || d > lim) return std::nullopt;
  return Rational{static_cast<int64_t>(n), static_cast<int64_t>(d)};
}

// "-12", "3.50", ".5", "7." as an exact rational.
std::optional<Rational> parse_decimal(const std::string& s) {
  size_t i = 0;
  bool neg = false;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
  __int128 num = 0, den = 1;
  bool digits = false, dot = false;
  for (; i < s.size(); ++i) {
    if (is_digit(s[i])) {
      if (num > (__int128)1 << 100 || den > (__int128)1 << 100) return std::nullopt;
      num = num * 10 + (s[i] - '0');
      if (dot) den *= 10;
      digits = true;
    } else if (s[i] == '.' && !dot) {
      dot = true;
    } else {
      return std::nullopt;
    }
  }
  if (!digits) return std::nullopt;
  return make_rational(neg ? -num : num, den);
}

std::optional<Rational> parse_rational(const std::string& s, int depth = 0) {
  if (s.empty() || depth > 4) return std::nullopt;
  if (s[0] == '-' && s.size() > 1 && !is_digit(s[1]) && s[1] != '.') {
    auto r = parse_rational(s.substr(1), depth + 1);
    if (r) r->num = -r->num;
    return r;
  }
  if (s.compare(0, 6, "\\frac{") == 0) {
    size_t a_end = match_brace(s, 5);
    if (a_end == std::string::npos || a_end >= s.size() || s[a_end] != '{') return std::nullopt;
    size_t b_end = match_brace(s, a_end);
    if (b_end != s.size()) return std::nullopt;
    auto a = parse_rational(s.substr(6, a_end - 7), depth + 1);
    auto b = parse_rational(s.substr(a_end + 1, b_end - a_end - 2), depth + 1);
    if (!a || !b || b->num == 0) return std::nullopt;
    return make_rational((__int128)a->num * b->den, (__int128)a->den * b->num);
  }
  size_t slash = s.find('/');
  if (slash != std::string::npos && s.find('/', slash + 1) == std::string::npos) {
    auto a = parse_decimal(s.substr(0, slash)), b = parse_decimal(s.substr(slash + 1));
    if (!a || !b || b->num == 0) return std::nullopt;
    return make_rational((__int128)a->num * b->den, (__int128)a->den * b->num);
  }
  return parse_decimal(s);
}

bool thousands_grouped(const std::string& s) {
  // [+-]?d{1,3}(,ddd)+(.d*)?
  size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0, lead = 0;
  while (i < s.size() && is_digit(s[i])) ++i, ++lead;
  if (lead < 1 || lead > 3 || i >= s.size() || s[i] != ',') return false;
  while (i < s.size() && s[i] == ',') {
    for (int k = 1; k <= 3; ++k)
      if (i + k >= s.size() || !is_digit(s[i + k])) return false;
    i += 4;
  }
  if (i < s.size() && s[i] == '.') {
    for (++i; i < s.size(); ++i)
      if (!is_digit(s[i])) return false;
  }
  return i == s.size();
}

// Splits at top-level commas; strips one matching outer bracket pair first.
std::vector<std::string> split_tuple(const std::string& s, std::string* brackets) {
  std::string body = s;
  brackets->clear();
  if (s.size() >= 2 && std::string("([{").find(s.front()) != std::string::npos &&
      std::string(")]}").find(s.back()) != std::string::npos) {
    *brackets = std::string{s.front(), s.back()};
    body = s.substr(1, s.size() - 2);
  }
  std::vector<std::string> parts;
  int depth = 0;
  std::string cur;
  for (char c : body) {
    if (c == '(' || c == '[' || c == '{') ++depth;
    if (c == ')' || c == ']' || c == '}') --depth;
    if (c == ',' && depth == 0) {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  parts.push_back(cur);
  return parts;
}

bool atoms_equal(const std::string& a, const std::string& b) {
  if (a == b) return true;
  auto ra = parse_rational(a), rb = parse_rational(b);
  if (ra && rb) return ra->num == rb->num && ra->den == rb->den;
  bool words = !a.empty() && !b.empty() && std::all_of(a.begin(), a.end(), is_alpha) &&
               std::all_of(b.begin(), b.end(), is_alpha);
  return words && lower(a) == lower(b);
}

}  // namespace

std::optional<std::string> extract_math_answer(const std::string& text, const MathOptions& opt) {
  if (opt.use_boxed) {
    size_t best = std::string::npos, len = 0;
    for (const std::string cmd : {"\\boxed", "\\fbox"}) {
      size_t last = std::string::npos;
      for (size_t p = find_command(text, cmd, 0); p != std::string::npos; p = find_command(text, cmd, p + 1)) last = p;
      if (last != std::string::npos && (best == std::string::npos || last > best)) best = last, len = cmd.size();
    }
    if (best != std::string::npos) {
      size_t q = best + len;
      while (q < text.size() && is_space(text[q]) && text[q] != '\n') ++q;
      if (q < text.size() && text[q] == '{') {
        size_t end = match_brace(text, q);
        if (end == std::string::npos) return std::nullopt;  // truncated final answer
        std::string inner = trim(text.substr(q + 1, end - q - 2));
        if (inner.empty()) return std::nullopt;
        return inner;
      }
      if (q > best + len) {  // short form "\boxed 5"
        size_t e = q;
        while (e < text.size() && !is_space(text[e]) && text[e] != '$') ++e;
        if (e > q) return text.substr(q, e - q);
      }
      return std::nullopt;
    }
  }
  size_t best = std::string::npos, len = 0;
  std::string low = lower(text);
  for (const auto& prefix : opt.answer_prefixes) {
    if (prefix.empty()) continue;
    size_t p = low.rfind(lower(prefix));
    if (p != std::string::npos && (best == std::string::npos || p > best)) best = p, len = prefix.size();
  }
  if (best == std::string::npos) return std::nullopt;
  size_t eol = text.find('\n', best + len);
  std::string ans = trim(text.substr(best + len, eol == std::string::npos ? std::string::npos : eol - best - len));
  while (!ans.empty() && ans.back() == '.') ans.pop_back();
  if (ans.empty()) return std::nullopt;
  return ans;
}

std::string normalize_math_answer(const std::string& answer) {
  std::string s = trim(answer);
  replace_all(s, "\\$", "");
  s.erase(std::remove(s.begin(), s.end(), '$'), s.end());
  for (const char* d : {"\\(", "\\)", "\\[", "\\]", "\\!", "\\,", "\\;", "\\:", "\\ ", "{,}", "~"})
    replace_all(s, d, d == std::string("{,}") ? "," : " ");
  replace_all(s, "\xE2\x88\x92", "-");  // unicode minus sign
  replace_all(s, "\\dfrac", "\\frac");
  replace_all(s, "\\tfrac", "\\frac");
  for (const char* cmd : {"\\left", "\\right", "\\displaystyle", "\\bigl", "\\bigr"}) erase_command(s, cmd);
  for (const char* deg : {"^{\\circ}", "^\\circ", "\xC2\xB0", "\\%", "%", "\\degree"}) replace_all(s, deg, "");
  s = handle_text_groups(s);
  s = trim(s);
  // "12 apples", "5 cm": a number followed only by words keeps the number.
  size_t sp = s.find(' ');
  if (sp != std::string::npos) {
    std::string head = s.substr(0, sp), tail = s.substr(sp + 1);
    bool words = std::all_of(tail.begin(), tail.end(), [](char c) { return is_alpha(c) || c == ' ' || c == '.'; });
    std::string h = head;
    if (thousands_grouped(h)) h.erase(std::remove(h.begin(), h.end(), ','), h.end());
    if (words && parse_rational(h)) s = head;
  }
  s.erase(std::remove_if(s.begin(), s.end(), is_space), s.end());
  if (thousands_grouped(s)) s.erase(std::remove(s.begin(), s.end(), ','), s.end());
  while (s.size() > 1 && s.back() == '.') s.pop_back();
  if (s.size() > 1 && s[0] == '+') s.erase(0, 1);
  // "x=5" -> "5" when the left side is a single variable name.
  size_t eq = s.find('=');
  if (eq != std::string::npos && eq > 0 && eq <= 2 && s.find('=', eq + 1) == std::string::npos &&
      std::all_of(s.begin(), s.begin() + eq, is_alpha))
    s = s.substr(eq + 1);
  s = canonical_commands(s);
  if (s.size() == 3 && s[0] == '(' && s[2] == ')' && is_alpha(s[1])) s = s.substr(1, 1);  // "(A)" -> "A"
  return s;
}

bool math_answers_equal(const std::string& a, const std::string& b) {
  std::string na = normalize_math_answer(a), nb = normalize_math_answer(b);
  if (na.empty() || nb.empty()) return false;
  if (atoms_equal(na, nb)) return true;
  std::string ba, bb;
  auto pa = split_tuple(na, &ba), pb = split_tuple(nb, &bb);
  if (pa.size() < 2 || pa.size() != pb.size() || ba != bb) return false;
  for (size_t i = 0; i < pa.size(); ++i)
    if (!atoms_equal(pa[i], pb[i])) return false;
  return true;
}

RewardResult math_reward(const std::string& response, const nlohmann::json& ref, const MathOptions& opt) {
  // The reference answers: a string/number, an array of them, or {"answer": ...}.
  const nlohmann::json* ans = &ref;
  if (ref.is_object()) {
    TEMPER_CHECK(ref.contains("answer"), "math reward: the prompt record has no \"answer\" field");
    ans = &ref["answer"];
  }
  std::vector<std::string> refs;
  auto add = [&](const nlohmann::json& j) {
    TEMPER_CHECK(j.is_string() || j.is_number(), "math reward: \"answer\" must be a string, a number or an array of them, got ",
                 j.dump());
    std::string r = j.is_string() ? j.get<std::string>() : j.dump();
    if (auto boxed = extract_math_answer(r)) r = *boxed;  // references written with \boxed
    else if (size_t p = r.rfind("####"); p != std::string::npos) r = trim(r.substr(p + 4));  // GSM8K style
    refs.push_back(r);
  };
  if (ans->is_array()) {
    for (const auto& j : *ans) add(j);
  } else {
    add(*ans);
  }
  TEMPER_CHECK(!refs.empty(), "math reward: \"answer\" is an empty array");

  RewardResult res;
  auto body = strip_think(response);
  if (!body) {
    res.verdict = Verdict::Unparsable;
    res.detail = "unterminated <think> block";
    return res;
  }
  auto got = extract_math_answer(*body, opt);
  if (!got) {
    res.verdict = Verdict::Unparsable;
    res.detail = "no final answer";
    return res;
  }
  for (const auto& r : refs) {
    if (math_answers_equal(*got, r)) {
      res.reward = 1;
      res.verdict = Verdict::Correct;
      res.detail = cat("answer '", *got, "' matches '", r, "'");
      return res;
    }
  }
  res.verdict = Verdict::Wrong;
  res.detail = cat("answer '", *got, "' (normalised '", normalize_math_answer(*got), "') != '", refs[0], "'");
  return res;
}

}  // namespace temper
