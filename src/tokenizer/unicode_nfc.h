// Unicode NFC normalization (canonical decomposition, canonical ordering,
// canonical composition), as the "NFC" normalizer of Qwen's tokenizer.json asks.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace temper {

class NfcNormalizer {
 public:
  NfcNormalizer();
  // False when `text` (valid UTF-8) is certainly NFC already: it holds no code
  // point that can decompose, compose with a predecessor, or reorder.
  bool may_change(std::string_view text) const;
  // Writes the NFC form of `text` (valid UTF-8) to `out`.
  void normalize(std::string_view text, std::string& out) const;

 private:
  void decompose(uint32_t cp, std::vector<uint32_t>& out) const;
  uint32_t compose(uint32_t a, uint32_t b) const;  // 0 when the pair does not compose
  std::unordered_map<uint64_t, uint32_t> compositions_;
};

uint8_t canonical_combining_class(uint32_t cp);

}  // namespace temper
