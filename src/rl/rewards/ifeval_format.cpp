// The format counters of the official IFEval checkers, written to match what their
// regular expressions find (Python re semantics: `.` stops at a line break, \s is
// Unicode white space including line breaks, findall matches do not overlap).
#include "rl/rewards/ifeval_format.h"

#include "rl/rewards/unicode_text.h"

namespace temper::ifeval {
namespace {

using utext::is_space;

bool line_start(const std::u32string& t, size_t p) { return p == 0 || t[p - 1] == '\n'; }
size_t line_end(const std::u32string& t, size_t p) {
  while (p < t.size() && t[p] != '\n') ++p;
  return p;
}

}  // namespace

// re.findall(r"^\s*\*[^\*].*$", M) + re.findall(r"^\s*-.*$", M)
size_t count_bullets(const std::u32string& t) {
  size_t n = 0;
  for (char32_t mark : {U'*', U'-'}) {
    for (size_t p = 0; p <= t.size();) {
      if (!line_start(t, p)) {
        size_t nl = t.find(U'\n', p);
        if (nl == std::u32string::npos) break;
        p = nl + 1;
        continue;
      }
      size_t q = p;
      while (q < t.size() && is_space(t[q])) ++q;  // \s* crosses blank lines
      bool hit = q < t.size() && t[q] == mark && (mark == '-' || (q + 1 < t.size() && t[q + 1] != '*'));
      if (hit) {
        ++n;
        p = line_end(t, mark == '*' ? q + 2 : q + 1);  // [^\*] may be the line break itself
        if (p >= t.size()) break;
        continue;
      }
      size_t nl = t.find(U'\n', p);
      if (nl == std::u32string::npos) break;
      p = nl + 1;
    }
  }
  return n;
}

// \*[^\n\*]*\* with non-blank content, plus \*\*[^\n\*]*\*\* with non-blank content
size_t count_highlights(const std::u32string& t) {
  size_t n = 0;
  auto blank = [&](size_t a, size_t b) {
    for (size_t k = a; k < b; ++k)
      if (!is_space(t[k])) return false;
    return true;
  };
  for (size_t i = 0; i < t.size();) {  // single
    if (t[i] != '*') {
      ++i;
      continue;
    }
    size_t j = i + 1;
    while (j < t.size() && t[j] != '*' && t[j] != '\n') ++j;
    if (j < t.size() && t[j] == '*') {
      if (!blank(i + 1, j)) ++n;
      i = j + 1;
    } else {
      ++i;
    }
  }
  for (size_t i = 0; i + 1 < t.size();) {  // double
    if (t[i] != '*' || t[i + 1] != '*') {
      ++i;
      continue;
    }
    size_t j = i + 2;
    while (j < t.size() && t[j] != '*' && t[j] != '\n') ++j;
    if (j + 1 < t.size() && t[j] == '*' && t[j + 1] == '*') {
      if (!blank(i + 2, j)) ++n;
      i = j + 2;
    } else {
      ++i;
    }
  }
  return n;
}

// re.findall(r"\[.*?\]")
size_t count_placeholders(const std::u32string& t) {
  size_t n = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] != '[') continue;
    size_t j = i + 1;
    while (j < t.size() && t[j] != ']' && t[j] != '\n') ++j;
    if (j < t.size() && t[j] == ']') {
      ++n;
      i = j;
    }
  }
  return n;
}

// any re.findall(r"<<[^\n]+>>") whose text inside the brackets is not blank
bool has_title(const std::u32string& t) {
  for (size_t i = 0; i + 1 < t.size();) {
    if (t[i] != '<' || t[i + 1] != '<') {
      ++i;
      continue;
    }
    size_t eol = line_end(t, i), e = std::u32string::npos;
    for (size_t k = i + 3; k + 2 <= eol; ++k)  // the last ">>" with at least one character before it
      if (t[k] == '>' && t[k + 1] == '>') e = k;
    if (e == std::u32string::npos) {
      ++i;
      continue;
    }
    std::u32string inner = t.substr(i, e + 2 - i);
    size_t a = 0, b = inner.size();
    while (a < b && inner[a] == '<') ++a;
    while (b > a && inner[b - 1] == '>') --b;
    for (size_t k = a; k < b; ++k)
      if (!is_space(inner[k])) return true;
    i = e + 2;
  }
  return false;
}

// len(re.split(r"\s?" + splitter + r"\s?\d+\s?", text)) - 1
size_t count_sections(const std::u32string& t, const std::u32string& splitter) {
  if (splitter.empty()) return 0;
  auto digit = [](char32_t c) { return c >= '0' && c <= '9'; };
  size_t n = 0;
  for (size_t p = t.find(splitter); p != std::u32string::npos; p = t.find(splitter, p)) {
    size_t k = p + splitter.size();
    if (k + 1 < t.size() && is_space(t[k]) && digit(t[k + 1])) ++k;
    if (k < t.size() && digit(t[k])) {
      ++n;
      while (k < t.size() && digit(t[k])) ++k;
      p = k;
    } else {
      p = p + 1;
    }
  }
  return n;
}

// ParagraphChecker: re.split(r"\s?\*\*\*\s?"); blank first/last pieces are dropped, a blank
// piece in between fails the check (returns -1).
long count_star_paragraphs(const std::u32string& t) {
  std::vector<std::u32string> pieces;
  size_t from = 0;
  for (size_t p = t.find(U"***"); p != std::u32string::npos; p = t.find(U"***", from)) {
    pieces.push_back(t.substr(from, p - from));
    from = p + 3;
  }
  pieces.push_back(t.substr(from));
  long n = static_cast<long>(pieces.size());
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (!utext::strip(pieces[i]).empty()) continue;
    if (i == 0 || i + 1 == pieces.size()) --n;
    else return -1;
  }
  return n;
}

// Python's str.split(sep).
std::vector<std::u32string> split(const std::u32string& t, const std::u32string& sep) {
  std::vector<std::u32string> out;
  size_t from = 0;
  for (size_t p = t.find(sep); p != std::u32string::npos; p = t.find(sep, from)) {
    out.push_back(t.substr(from, p - from));
    from = p + sep.size();
  }
  out.push_back(t.substr(from));
  return out;
}

}  // namespace temper::ifeval
