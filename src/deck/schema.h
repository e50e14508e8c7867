// The deck schema: every key of the input deck, declared once (schema.cpp) with
// its type, default, allowed range or choices and help text. The parser, the
// help listing (temper --help) and docs/deck.md all come from this table.
#pragma once
#include <string>
#include <vector>

namespace temper {

// int: 64-bit integer; float: double; bool: true/false/yes/no/on/off/1/0;
// string: the rest of the line; list: comma-separated strings;
// int-list: comma-separated integers.
enum class KeyType { Int, Float, Bool, String, List, IntList };
const char* key_type_name(KeyType t);  // "int", "float", "bool", "string", "list", "int-list"

// Bounds on a number (Int, Float, and each element of an IntList).
struct Range {
  bool has_min = false, has_max = false;
  bool min_open = false, max_open = false;  // strict < / > instead of <= / >=
  double min = 0, max = 0;
  bool contains(double v) const;
  std::string describe() const;  // ">= 0", "> 0", "in [0, 1]", "" if unbounded
};

struct KeySpec {
  std::string section;
  std::string name;
  KeyType type = KeyType::String;
  // The default as it would be written in a deck. String defaults may refer
  // to other keys as {section.key}, resolved after the deck is read.
  std::string default_text;
  Range range;
  std::vector<std::string> choices;  // String only; empty = any value
  std::string help;                  // one line; units where they apply
  std::vector<std::string> aliases;  // other names people try (used for suggestions only)

  std::string full_name() const { return section + "." + name; }
  std::string constraint() const;  // "one of a|b", ">= 0", or ""
};

struct SectionSpec {
  std::string name;
  std::string help;
};

const std::vector<SectionSpec>& deck_sections();
const std::vector<KeySpec>& deck_schema();
// Index into deck_schema() of "section.key", or -1 if it is not declared.
int deck_key_index(const std::string& full_name);
bool deck_has_section(const std::string& name);

// Closest declared key to an unknown "section.key" (aliases included), or ""
// when nothing is close enough to be a plausible typo.
std::string suggest_key(const std::string& unknown_full_name);
// Closest of `candidates` to `word` by edit distance, or "" if none is close.
std::string suggest_word(const std::string& word, const std::vector<std::string>& candidates);
// Case-insensitive Levenshtein distance.
size_t edit_distance(const std::string& a, const std::string& b);

// Shortest text that reads back as exactly `v` ("0.0003", "1e-08", "inf").
std::string format_number(double v);

// Every key by section: name, type, default, range/choices, help.
std::string deck_help();

}  // namespace temper
