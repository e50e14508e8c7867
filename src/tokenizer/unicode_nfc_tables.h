// Unicode data tables for NFC normalization (generated into nfc_tables.cpp).
#pragma once
#include <cstddef>
#include <cstdint>

namespace temper {
namespace nfc_data {

struct CccRun { uint32_t first, last; uint8_t ccc; };
struct Decomposition { uint32_t cp, first, second; uint8_t composes; };
struct Run { uint32_t first, last; };

extern const CccRun kCcc[];
extern const size_t kCccCount;
extern const Decomposition kDecomp[];      // sorted by cp
extern const size_t kDecompCount;
extern const Run kMaybeNotNfc[];           // sorted
extern const size_t kMaybeNotNfcCount;

}  // namespace nfc_data
}  // namespace temper
