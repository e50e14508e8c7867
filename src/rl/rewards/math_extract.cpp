// Finding the final answer in a model's text (math_extract.h, reward.h):
//  1. the last \boxed{...} group (boxes listed one after another form one list);
//  2. the rest of the line after the last configured prefix ("####", "The answer is");
//  3. with a fallback (free-text evaluation, as Math-Verify does): "final answer is ... I
//     hope", then the anchors "final answer", "answer", then the rightmost math span or
//     plain number/expression of the text.
// Hand-written scanners: std::regex recursion overflows the stack on long texts.
#include <algorithm>
#include <cctype>
#include <cstring>
#include <vector>

#include "rl/rewards/math_expr.h"
#include "rl/rewards/math_extract.h"
#include "rl/rewards/reward.h"

namespace temper {
namespace mathx {
namespace {

bool is_alpha(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }
bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Index just past the '}' matching the '{' at `open`; npos when unbalanced.
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

// Position of `cmd` (e.g. "\\boxed") as a whole control word, searching backwards from `before`.
size_t rfind_command(const std::string& s, const std::string& cmd, size_t before) {
  if (before == 0) return std::string::npos;
  for (size_t p = s.rfind(cmd, before - 1); p != std::string::npos; p = p == 0 ? std::string::npos : s.rfind(cmd, p - 1))
    if (p + cmd.size() >= s.size() || !is_alpha(s[p + cmd.size()])) return p;
  return std::string::npos;
}

struct Box {
  size_t start = 0, end = 0;  // the command's first character, one past the closing brace
  std::string content;
  bool truncated = false;
};

// The last \boxed{...} or \fbox{...} before `before`; the short form "\boxed 5" too.
std::optional<Box> last_box(const std::string& text, size_t before) {
  size_t best = std::string::npos, len = 0;
  for (const std::string cmd : {"\\boxed", "\\fbox"}) {
    size_t p = rfind_command(text, cmd, before);
    if (p != std::string::npos && (best == std::string::npos || p > best)) best = p, len = cmd.size();
  }
  if (best == std::string::npos) return std::nullopt;
  Box b;
  b.start = best;
  size_t q = best + len;
  while (q < text.size() && is_space(text[q]) && text[q] != '\n') ++q;
  if (q < text.size() && text[q] == '{') {
    size_t end = match_brace(text, q);
    if (end == std::string::npos || end > before) {
      b.truncated = true;
      return b;
    }
    b.content = trim(text.substr(q + 1, end - q - 2));
    b.end = end;
    return b;
  }
  size_t e = q;
  while (e < text.size() && !is_space(text[e]) && text[e] != '$') ++e;
  if (q == best + len || e == q) {
    b.truncated = true;
    return b;
  }
  b.content = text.substr(q, e - q);
  b.end = e;
  return b;
}

// "," or ";" or the word "and"/"or" in s.
bool has_separator(const std::string& s) {
  if (s.find(',') != std::string::npos || s.find(';') != std::string::npos) return true;
  std::string l = lower(s);
  for (const char* w : {"and", "or"}) {
    size_t n = std::string(w).size();
    for (size_t p = l.find(w); p != std::string::npos; p = l.find(w, p + 1))
      if ((p == 0 || !is_alpha(l[p - 1])) && (p + n >= l.size() || !is_alpha(l[p + n]))) return true;
  }
  return false;
}

}  // namespace

// Several answers boxed one after another ("\boxed{-2} and \boxed{1}") form one list;
// a box separated from the next by other prose is an earlier attempt and ignored
// (Math-Verify's rule: under 10 characters apart, or under 70 with "and", "or", "," or ";").
std::optional<std::string> boxed_answer(const std::string& text, bool* found, size_t* end) {
  auto box = last_box(text, text.size());
  *found = box.has_value();
  if (!box || box->truncated || box->content.empty()) return std::nullopt;
  if (end) *end = box->end;
  std::vector<std::string> parts{box->content};
  for (size_t next_start = box->start; parts.size() < 32;) {
    auto prev = last_box(text, next_start);
    if (!prev || prev->truncated || prev->content.empty()) break;
    std::string between = text.substr(prev->end, next_start - prev->end);
    bool near = between.size() < 10;
    bool listed = between.size() < 70 && prev->content != parts.back() && has_separator(between);
    if (!near && !listed) break;
    if (prev->content != parts.back()) parts.push_back(prev->content);
    next_start = prev->start;
  }
  std::reverse(parts.begin(), parts.end());
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : ", ") + p;
  return out;
}

namespace {

struct Found {
  std::string text;
  size_t start = 0, end = 0;  // where it was found (rightmost end wins, then the longest)
};
bool later(const std::optional<Found>& a, const std::optional<Found>& b) {
  if (!a) return false;
  if (!b) return true;
  return a->end > b->end || (a->end == b->end && a->start < b->start);
}

// Math-Verify's plain number at i: "1,234.5" / "1 234" (thousands), "1000,99" (decimal
// comma), ".5", "-12", tried in that order. Returns its length; *grouped for thousands.
size_t number_at(const std::string& t, size_t i, bool* grouped) {
  *grouped = false;
  size_t j = i;
  if (j < t.size() && t[j] == '-') ++j;
  auto digits = [&](size_t k) {
    size_t e = k;
    while (e < t.size() && is_digit(t[e])) ++e;
    return e - k;
  };
  if (j < t.size() && t[j] >= '1' && t[j] <= '9') {
    size_t lead = std::min<size_t>(digits(j), 3), k = j + lead, groups = 0;
    while (k + 4 <= t.size() && (t[k] == ' ' || t[k] == ',') && digits(k + 1) >= 3) k += 4, ++groups;
    if (groups > 0) {
      if (k + 1 < t.size() && t[k] == '.' && digits(k + 1) > 0) k += 1 + digits(k + 1);
      *grouped = true;
      return k - i;
    }
  }
  size_t d = digits(j);
  if (d > 0 && j + d + 1 < t.size() && (t[j + d] == '.' || t[j + d] == ',') && digits(j + d + 1) > 0)
    return j + d + 1 + digits(j + d + 1) - i;
  if (d == 0 && j == i && j + 1 < t.size() && t[j] == '.' && digits(j + 1) > 0) return 1 + digits(j + 1);
  return d > 0 ? j + d - i : 0;
}

bool is_operator(char c) { return std::strchr("+-*/^()", c) != nullptr; }

// Math-Verify's plain expression at i ("2/3", "(1/2) * (4/3)"): starts with a digit (after an
// optional "-" or "("), holds at least one operator, and is followed by . , : space ) $ or the end.
size_t expression_at(const std::string& t, size_t i) {
  size_t j = i;
  if (j < t.size() && t[j] == '-') ++j;
  if (j < t.size() && t[j] == '(') ++j;
  if (j < t.size() && t[j] == '-') ++j;
  if (j >= t.size() || !is_digit(t[j])) return 0;
  size_t e = j;
  while (e < t.size() && (is_digit(t[e]) || t[e] == '.' || t[e] == ' ' || is_operator(t[e]))) ++e;
  while (e > j) {  // back off to a digit or ')' followed by an allowed character
    char last = t[e - 1];
    bool end_ok = e == t.size() || std::strchr(".,: )$\n", t[e]) != nullptr;
    if ((is_digit(last) || last == ')') && end_ok) break;
    --e;
  }
  bool op = false;
  for (size_t k = j + 1; k < e; ++k) op |= is_operator(t[k]) && t[k] != '(' ;
  return op && e > j ? e - i : 0;
}

// Math-Verify's anchor before a plain number: the start, a space, "=", "**", and then
// optionally one currency sign ("$1,000").
bool anchored(const std::string& t, size_t i) {
  size_t k = i;
  static const char* const currency[] = {"$", "\xE2\x82\xAC", "\xC2\xA3", "\xC2\xA5", "\xE2\x82\xB9"};
  for (const char* c : currency) {
    size_t n = std::strlen(c);
    if (k >= n && t.compare(k - n, n, c) == 0) {
      k -= n;
      break;
    }
  }
  if (k >= 2 && t.compare(k - 2, 2, "**") == 0) k -= 2;
  return k == 0 || is_space(t[k - 1]) || t[k - 1] == '=';
}

// The rightmost plain number or expression of t, as text the parser reads
// ("1,234" -> "1234", "2,74" -> "2.74", a following "%"/"percent" kept as "%").
std::optional<Found> last_plain(const std::string& t, size_t offset = 0) {
  std::optional<Found> best;
  for (size_t i = 0; i < t.size(); ++i) {
    if (!(is_digit(t[i]) || t[i] == '-' || t[i] == '.' || t[i] == '(') || !anchored(t, i)) continue;
    bool grouped = false;
    size_t n = number_at(t, i, &grouped), x = expression_at(t, i);
    if (n == 0 && x == 0) continue;
    Found f;
    f.start = offset + i;
    if (x > n) {
      f.text = t.substr(i, x);
      f.end = offset + i + x;
    } else {
      for (char c : t.substr(i, n))
        if (!(c == ' ' || (c == ',' && grouped))) f.text += c == ',' ? '.' : c;
      f.end = offset + i + n;
      std::string rest = lower(t.substr(i + n, 12));
      size_t k = rest.find_first_not_of(' ');
      if (k != std::string::npos && (rest.compare(k, 1, "%") == 0 || rest.compare(k, 7, "percent") == 0 ||
                                     rest.compare(k, 3, "pct") == 0))
        f.text += "%";
    }
    if (later(f, best)) best = f;
  }
  return best;
}

// The rightmost math span: $$..$$, \[..\], $..$ or \(..\) (inline ones on one line),
// joined with the spans just before it when "and", "or" or "," separate them.
std::optional<Found> last_span(const std::string& text, size_t offset = 0) {
  struct Hit {
    size_t start, end;
    std::string body;
  };
  std::vector<Hit> hits;
  for (size_t i = 0; i < text.size();) {
    std::string close;
    size_t open_len = 0;
    bool inline_math = false;
    if (text.compare(i, 2, "$$") == 0) close = "$$", open_len = 2;
    else if (text.compare(i, 2, "\\[") == 0) close = "\\]", open_len = 2;
    else if (text.compare(i, 2, "\\(") == 0) close = "\\)", open_len = 2, inline_math = true;
    else if (text[i] == '$') close = "$", open_len = 1, inline_math = true;
    else if (text[i] == '\\') {
      i += 2;
      continue;
    }
    if (close.empty()) {
      ++i;
      continue;
    }
    size_t from = i + open_len, e = from;
    for (; e < text.size(); ++e) {
      if (text[e] == '\\' && close != "\\]" && close != "\\)") {
        ++e;
        continue;
      }
      if (text.compare(e, close.size(), close) == 0) break;
      if (inline_math && text[e] == '\n') break;
    }
    if (e >= text.size() || text[e] == '\n') {
      i += open_len;
      continue;
    }
    std::string body = text.substr(from, e - from);
    if (!trim(body).empty()) hits.push_back({i, e + close.size(), body});
    i = e + close.size();
  }
  if (hits.empty()) return std::nullopt;
  auto joins = [](std::string between) {
    between = lower(trim(between));
    if (!between.empty() && between[0] == ',') between = trim(between.substr(1));
    return between.empty() || between == "and" || between == "or";
  };
  std::vector<std::string> parts{trim(hits.back().body)};
  size_t first = hits.size() - 1;
  for (size_t k = hits.size() - 1; k > 0 && parts.size() < 6; --k) {
    if (!joins(text.substr(hits[k - 1].end, hits[k].start - hits[k - 1].end))) break;
    parts.push_back(trim(hits[k - 1].body));
    first = k - 1;
  }
  std::reverse(parts.begin(), parts.end());
  Found f;
  for (const auto& p : parts) f.text += (f.text.empty() ? "" : ", ") + p;
  f.start = offset + hits[first].start;
  f.end = offset + hits.back().end;
  return f;
}

// The answer in the rest of a line after a prefix: its math span, else the whole
// text when it parses, else its first number.
std::string answer_from_tail(std::string tail) {
  tail = trim(tail);
  while (!tail.empty() && (tail[0] == ':' || tail[0] == '*' || is_space(tail[0]))) tail.erase(0, 1);
  while (!tail.empty() && (tail.back() == '.' || tail.back() == '*' || is_space(tail.back()))) tail.pop_back();
  if (tail.find('$') != std::string::npos || tail.find("\\(") != std::string::npos ||
      tail.find("\\[") != std::string::npos) {
    if (auto m = last_span(tail)) return m->text;
  }
  if (parse_answer(tail).expr) return tail;
  for (size_t i = 0; i < tail.size(); ++i) {  // "18 because ...": the leading number
    if (!is_digit(tail[i])) continue;
    size_t b = i > 0 && tail[i - 1] == '-' ? i - 1 : i, e = i;
    while (e < tail.size() && (is_digit(tail[e]) || ((tail[e] == ',' || tail[e] == '.' || tail[e] == '/') &&
                                                     e + 1 < tail.size() && is_digit(tail[e + 1]))))
      ++e;
    return tail.substr(b, e - b);
  }
  return tail;
}

std::optional<std::string> after_prefix(const std::string& text, const std::vector<std::string>& prefixes) {
  size_t best = std::string::npos, len = 0;
  std::string low = lower(text);
  for (const auto& prefix : prefixes) {
    if (prefix.empty()) continue;
    size_t p = low.rfind(lower(prefix));
    if (p != std::string::npos && (best == std::string::npos || p > best)) best = p, len = prefix.size();
  }
  if (best == std::string::npos) return std::nullopt;
  size_t eol = text.find('\n', best + len);
  std::string ans = answer_from_tail(text.substr(best + len, eol == std::string::npos ? std::string::npos : eol - best - len));
  if (ans.empty()) return std::nullopt;
  return ans;
}

// The rightmost bare "\frac{10}{9}" (numbers only) outside math delimiters.
std::optional<Found> last_bare_fraction(const std::string& t, size_t offset) {
  std::optional<Found> best;
  for (size_t p = t.find("\\frac{"); p != std::string::npos; p = t.find("\\frac{", p + 1)) {
    size_t a = p + 6, a_end = t.find('}', a);
    if (a_end == std::string::npos || a_end + 1 >= t.size() || t[a_end + 1] != '{') continue;
    size_t b = a_end + 2, b_end = t.find('}', b);
    if (b_end == std::string::npos) continue;
    auto numeric = [&](size_t from, size_t to) {
      if (from == to) return false;
      for (size_t k = from; k < to; ++k)
        if (!is_digit(t[k]) && t[k] != '.' && !(k == from && t[k] == '-')) return false;
      return true;
    };
    if (!numeric(a, a_end) || !numeric(b, b_end)) continue;
    size_t start = p > 0 && t[p - 1] == '-' ? p - 1 : p;
    best = Found{t.substr(start, b_end + 1 - start), offset + start, offset + b_end + 1};
  }
  return best;
}

// The rightmost span or plain number/expression of t, as the fallback allows.
std::optional<Found> rightmost(const std::string& t, MathFallback fb, size_t offset) {
  std::optional<Found> a, b;
  if (fb != MathFallback::Number) {
    a = last_span(t, offset);
    auto f = last_bare_fraction(t, offset);
    if (later(f, a)) a = f;
  }
  if (fb != MathFallback::Latex) b = last_plain(t, offset);
  return later(a, b) ? a : b;
}

}  // namespace
}  // namespace mathx

std::optional<std::string> extract_math_answer(const std::string& text, const MathOptions& opt) {
  using namespace mathx;
  const bool free_text = opt.fallback != MathFallback::None;
  std::string low = free_text ? lower(text) : std::string();
  // Math-Verify ranks "final answer is X. I hope" with boxes: whichever ends last wins.
  std::optional<Found> hoped;
  if (free_text) {
    size_t p = low.rfind("final answer is");
    size_t hope = p == std::string::npos ? p : low.find("i hope", p);
    if (hope != std::string::npos && low.find('\n', p) > hope) {
      size_t from = p + std::strlen("final answer is");
      hoped = rightmost(text.substr(from, hope - from), opt.fallback, from);
      if (hoped) hoped->end = hope;
    }
  }
  if (opt.use_boxed) {
    bool found = false;
    size_t box_end = 0;
    auto boxed = boxed_answer(text, &found, &box_end);
    if (found) {
      if (hoped && boxed && hoped->end > box_end) return hoped->text;
      if (boxed || !free_text) return boxed;  // a truncated or empty last box is no answer
    }
  }
  if (auto a = after_prefix(text, opt.answer_prefixes)) return a;
  if (!free_text) return std::nullopt;
  if (hoped) return hoped->text;
  // the anchors "final answer ... is", "answer:", "answer": the rightmost candidate after the last one
  for (const char* anchor : {"final answer", "answer"}) {
    size_t p = low.rfind(anchor);
    if (p == std::string::npos) continue;
    size_t from = p + std::strlen(anchor), eol = text.find('\n', from);
    std::string tail = text.substr(from, eol == std::string::npos ? std::string::npos : eol - from);
    size_t hope = lower(tail).find("i hope");
    if (hope != std::string::npos) tail = tail.substr(0, hope);
    if (auto f = rightmost(tail, opt.fallback, from)) return f->text;
  }
  if (auto f = rightmost(text, opt.fallback, 0)) return f->text;
  return std::nullopt;
}

}  // namespace temper
