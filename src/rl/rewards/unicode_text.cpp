// Unicode text as Python sees it (unicode_text.h).
#include "rl/rewards/unicode_text.h"

#include <algorithm>

namespace temper::utext {

namespace {

bool in(const Range* table, size_t n, char32_t c) {
  const Range* end = table + n;
  const Range* it = std::upper_bound(table, end, static_cast<uint32_t>(c),
                                     [](uint32_t v, const Range& r) { return v < r.lo; });
  return it != table && c <= (it - 1)->hi;
}

}  // namespace

std::u32string decode(const std::string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    unsigned char b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      out += static_cast<char32_t>(b);
      ++i;
      continue;
    }
    int n = (b >> 5) == 6 ? 1 : (b >> 4) == 14 ? 2 : (b >> 3) == 30 ? 3 : -1;
    if (n < 0 || i + static_cast<size_t>(n) >= s.size()) {
      out += U'\uFFFD';
      ++i;
      continue;
    }
    char32_t c = n == 1 ? (b & 0x1F) : n == 2 ? (b & 0x0F) : (b & 0x07);
    bool ok = true;
    for (int k = 1; k <= n; ++k) {
      unsigned char x = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
      if ((x & 0xC0) != 0x80) {
        ok = false;
        break;
      }
      c = (c << 6) | (x & 0x3F);
    }
    if (!ok || c > 0x10FFFF) {
      out += U'\uFFFD';
      ++i;
      continue;
    }
    out += c;
    i += static_cast<size_t>(n) + 1;
  }
  return out;
}

std::string encode(char32_t c) {
  std::string o;
  if (c < 0x80) {
    o += static_cast<char>(c);
  } else if (c < 0x800) {
    o += static_cast<char>(0xC0 | (c >> 6));
    o += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    o += static_cast<char>(0xE0 | (c >> 12));
    o += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    o += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    o += static_cast<char>(0xF0 | (c >> 18));
    o += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    o += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    o += static_cast<char>(0x80 | (c & 0x3F));
  }
  return o;
}

std::string encode(const std::u32string& s) {
  std::string o;
  o.reserve(s.size());
  for (char32_t c : s) o += encode(c);
  return o;
}

bool is_word(char32_t c) { return in(kWord, kWord_size, c); }
bool is_space(char32_t c) { return in(kSpace, kSpace_size, c); }
bool is_upper(char32_t c) { return in(kUpper, kUpper_size, c); }
bool is_lower(char32_t c) { return in(kLower, kLower_size, c); }
bool is_title(char32_t c) { return in(kTitle, kTitle_size, c); }

char32_t to_lower(char32_t c) {
  if (c < 0x80) return c >= 'A' && c <= 'Z' ? c + 32 : c;
  const LowerRun* end = kLowerRuns + kLowerRuns_size;
  const LowerRun* it = std::upper_bound(kLowerRuns, end, static_cast<uint32_t>(c),
                                        [](uint32_t v, const LowerRun& r) { return v < r.lo; });
  if (it == kLowerRuns) return c;
  --it;
  if (c > it->hi || (c - it->lo) % it->stride != 0) return c;
  return static_cast<char32_t>(static_cast<int64_t>(c) + it->delta);
}

std::u32string lower(const std::u32string& s) {
  std::u32string o;
  o.reserve(s.size());
  for (char32_t c : s) {
    if (c == 0x130) {  // the one multi-character lowercase Python applies to a capital
      o += U'i';
      o += U'\u0307';
    } else {
      o += to_lower(c);
    }
  }
  return o;
}

std::string lower(const std::string& s) { return encode(lower(decode(s))); }

bool isupper(const std::u32string& s) {
  bool cased = false;
  for (char32_t c : s) {
    if (is_lower(c) || is_title(c)) return false;
    cased = cased || is_upper(c);
  }
  return cased;
}

bool islower(const std::u32string& s) {
  bool cased = false;
  for (char32_t c : s) {
    if (is_upper(c) || is_title(c)) return false;
    cased = cased || is_lower(c);
  }
  return cased;
}

std::u32string strip(const std::u32string& s) {
  size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

std::string strip(const std::string& s) { return encode(strip(decode(s))); }

}  // namespace temper::utext
