// NFC normalization over the generated Unicode tables (see unicode_nfc.h).
#include "tokenizer/unicode_nfc.h"

#include <algorithm>

#include "tokenizer/byte_unicode.h"
#include "tokenizer/unicode_nfc_tables.h"

namespace temper {
namespace {

// Hangul syllables compose and decompose algorithmically (Unicode §3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

const nfc_data::Decomposition* find_decomposition(uint32_t cp) {
  const nfc_data::Decomposition* end = nfc_data::kDecomp + nfc_data::kDecompCount;
  const nfc_data::Decomposition* it = std::lower_bound(
      nfc_data::kDecomp, end, cp, [](const nfc_data::Decomposition& d, uint32_t c) { return d.cp < c; });
  return it != end && it->cp == cp ? it : nullptr;
}

}  // namespace

uint8_t canonical_combining_class(uint32_t cp) {
  if (cp < 0x300) return 0;
  const nfc_data::CccRun* end = nfc_data::kCcc + nfc_data::kCccCount;
  const nfc_data::CccRun* it = std::lower_bound(
      nfc_data::kCcc, end, cp, [](const nfc_data::CccRun& r, uint32_t c) { return r.last < c; });
  return it != end && it->first <= cp ? it->ccc : 0;
}

NfcNormalizer::NfcNormalizer() {
  compositions_.reserve(nfc_data::kDecompCount);
  for (size_t i = 0; i < nfc_data::kDecompCount; ++i) {
    const nfc_data::Decomposition& d = nfc_data::kDecomp[i];
    if (d.composes) compositions_.emplace((static_cast<uint64_t>(d.first) << 32) | d.second, d.cp);
  }
}

bool NfcNormalizer::may_change(std::string_view text) const {
  // Every code point below U+0300 is NFC-stable, so bytes below 0xCC never matter.
  for (size_t i = 0; i < text.size();) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c < 0xcc) {
      i += c < 0x80 ? 1 : 2;
      continue;
    }
    int len = utf8_sequence_length(text, i);
    if (len == 0) return true;
    uint32_t cp = utf8_decode_at(text, i, len);
    i += static_cast<size_t>(len);
    const nfc_data::Run* end = nfc_data::kMaybeNotNfc + nfc_data::kMaybeNotNfcCount;
    const nfc_data::Run* it = std::lower_bound(nfc_data::kMaybeNotNfc, end, cp,
                                               [](const nfc_data::Run& r, uint32_t c) { return r.last < c; });
    if (it != end && it->first <= cp) return true;
  }
  return false;
}

void NfcNormalizer::decompose(uint32_t cp, std::vector<uint32_t>& out) const {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const nfc_data::Decomposition* d = cp >= 0xc0 ? find_decomposition(cp) : nullptr;
  if (!d) {
    out.push_back(cp);
    return;
  }
  decompose(d->first, out);
  if (d->second) decompose(d->second, out);
}

uint32_t NfcNormalizer::compose(uint32_t a, uint32_t b) const {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
    return a + (b - kTBase);
  auto it = compositions_.find((static_cast<uint64_t>(a) << 32) | b);
  return it == compositions_.end() ? 0 : it->second;
}

void NfcNormalizer::normalize(std::string_view text, std::string& out) const {
  std::vector<uint32_t> cps;
  cps.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    int len = utf8_sequence_length(text, i);
    if (len == 0) len = 1;  // callers pass valid UTF-8; never loop forever
    decompose(utf8_decode_at(text, i, len), cps);
    i += static_cast<size_t>(len);
  }
  // Canonical ordering: stable insertion sort of each run of non-starters by class.
  std::vector<uint8_t> cls(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) cls[i] = canonical_combining_class(cps[i]);
  for (size_t i = 1; i < cps.size(); ++i) {
    for (size_t j = i; j > 0 && cls[j] != 0 && cls[j - 1] > cls[j]; --j) {
      std::swap(cps[j], cps[j - 1]);
      std::swap(cls[j], cls[j - 1]);
    }
  }
  // Canonical composition: each character joins the last starter unless blocked.
  std::vector<uint32_t> res;
  res.reserve(cps.size());
  long starter = -1;
  uint8_t last_cls = 0;
  for (size_t i = 0; i < cps.size(); ++i) {
    const uint8_t c = cls[i];
    if (starter >= 0) {
      bool adjacent = res.size() == static_cast<size_t>(starter) + 1;
      bool blocked = !adjacent && (last_cls == 0 || last_cls >= c);
      if (!blocked) {
        uint32_t comp = compose(res[static_cast<size_t>(starter)], cps[i]);
        if (comp) {
          res[static_cast<size_t>(starter)] = comp;
          continue;
        }
      }
    }
    if (c == 0) {
      starter = static_cast<long>(res.size());
      last_cls = 0;
    } else {
      last_cls = c;
    }
    res.push_back(cps[i]);
  }
  out.clear();
  for (uint32_t cp : res) append_utf8(out, cp);
}

}  // namespace temper
