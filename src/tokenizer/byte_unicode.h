// Byte-level helpers for BPE tokenizers: the GPT-2 byte <-> code point table
// (every byte gets a printable code point, so byte strings can be vocabulary
// keys), and UTF-8 encode/decode/validation used by the pre-tokenizer.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace temper {

// GPT-2's table: printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') map to
// themselves, the other 68 bytes to U+0100.. in byte order (space -> U+0120 'Ġ').
struct ByteUnicodeMap {
  std::array<uint32_t, 256> to_cp{};   // byte -> code point
  ByteUnicodeMap();
  // Code point -> byte, or -1 when the code point is not in the table.
  int byte_of(uint32_t cp) const { return cp < 324 ? from_cp_[cp] : -1; }

 private:
  std::array<int16_t, 324> from_cp_{};
};
const ByteUnicodeMap& byte_unicode_map();  // immutable, built once

// Raw bytes -> their byte-level (GPT-2) string, e.g. " a" -> "Ġa".
std::string bytes_to_byte_level(std::string_view bytes);
// Byte-level string -> raw bytes; false when a character is outside the table.
bool byte_level_to_bytes(std::string_view text, std::string& out);

// Appends the UTF-8 encoding of cp.
void append_utf8(std::string& out, uint32_t cp);
// Length of the valid UTF-8 sequence starting at s[i] (1..4), or 0 when the
// bytes there are not a valid, complete, shortest-form sequence.
int utf8_sequence_length(std::string_view s, size_t i);
// Decodes the valid sequence of length len at s[i].
uint32_t utf8_decode_at(std::string_view s, size_t i, int len);
// Number of trailing bytes of s that form an incomplete (but so far valid)
// multi-byte sequence: 0 when s ends on a character boundary.
int utf8_incomplete_tail(std::string_view s);

}  // namespace temper
