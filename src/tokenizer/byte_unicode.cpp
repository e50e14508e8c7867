// GPT-2 byte <-> code point table and UTF-8 helpers (see byte_unicode.h).
#include "tokenizer/byte_unicode.h"

namespace temper {

ByteUnicodeMap::ByteUnicodeMap() {
  from_cp_.fill(-1);
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    uint32_t cp = printable ? static_cast<uint32_t>(b) : next++;
    to_cp[b] = cp;
    from_cp_[cp] = static_cast<int16_t>(b);
  }
}

const ByteUnicodeMap& byte_unicode_map() {
  static const ByteUnicodeMap map;  // immutable after construction
  return map;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

int utf8_sequence_length(std::string_view s, size_t i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  unsigned char c = p[i];
  if (c < 0x80) return 1;
  auto cont = [&](size_t k) { return i + k < n && (p[i + k] & 0xc0) == 0x80; };
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (!cont(1) || !cont(2)) return 0;
    unsigned char c1 = p[i + 1];
    if (c == 0xe0 && c1 < 0xa0) return 0;   // overlong
    if (c == 0xed && c1 > 0x9f) return 0;   // surrogate
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    unsigned char c1 = p[i + 1];
    if (c == 0xf0 && c1 < 0x90) return 0;   // overlong
    if (c == 0xf4 && c1 > 0x8f) return 0;   // above U+10FFFF
    return 4;
  }
  return 0;
}

uint32_t utf8_decode_at(std::string_view s, size_t i, int len) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + i;
  switch (len) {
    case 1: return p[0];
    case 2: return ((p[0] & 0x1fu) << 6) | (p[1] & 0x3fu);
    case 3: return ((p[0] & 0x0fu) << 12) | ((p[1] & 0x3fu) << 6) | (p[2] & 0x3fu);
    default:
      return ((p[0] & 0x07u) << 18) | ((p[1] & 0x3fu) << 12) | ((p[2] & 0x3fu) << 6) | (p[3] & 0x3fu);
  }
}

int utf8_incomplete_tail(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  // A lead byte at most 3 bytes from the end, followed only by continuation bytes.
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    unsigned char c = p[n - back];
    if ((c & 0xc0) == 0x80) continue;  // continuation: keep looking for the lead
    int need = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 1;
    if (need <= static_cast<int>(back)) return 0;  // complete (or not a lead byte)
    // Check the bytes present so far could still start a valid sequence.
    if (back >= 2) {
      unsigned char c1 = p[n - back + 1];
      if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 > 0x9f) || (c == 0xf0 && c1 < 0x90) ||
          (c == 0xf4 && c1 > 0x8f))
        return 0;
    }
    return static_cast<int>(back);
  }
  return 0;
}

std::string bytes_to_byte_level(std::string_view bytes) {
  const ByteUnicodeMap& m = byte_unicode_map();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) append_utf8(out, m.to_cp[b]);
  return out;
}

bool byte_level_to_bytes(std::string_view text, std::string& out) {
  const ByteUnicodeMap& m = byte_unicode_map();
  out.clear();
  for (size_t i = 0; i < text.size();) {
    int len = utf8_sequence_length(text, i);
    if (len == 0) return false;
    int b = m.byte_of(utf8_decode_at(text, i, len));
    if (b < 0) return false;
    out.push_back(static_cast<char>(b));
    i += static_cast<size_t>(len);
  }
  return true;
}

}  // namespace temper
