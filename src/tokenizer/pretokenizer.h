// Pre-tokenizer of a byte-level BPE tokenizer: the tokenizer.json
// "pre_tokenizer" (Split stages with a regex compiled by PCRE2 in UTF + UCP
// mode, then ByteLevel) cuts a valid UTF-8 segment into pieces that BPE
// encodes independently.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace temper {

enum class SplitBehavior { Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous };

// One regex split stage (a "Split" pre-tokenizer, or ByteLevel with use_regex).
class RegexSplit {
 public:
  RegexSplit(const std::string& pattern, SplitBehavior behavior, bool invert, const std::string& where);
  ~RegexSplit();
  RegexSplit(const RegexSplit&) = delete;
  RegexSplit& operator=(const RegexSplit&) = delete;
  // Appends the pieces of text[begin, end) as (begin, end) byte offsets into text.
  void split(std::string_view text, uint32_t begin, uint32_t end,
             std::vector<std::pair<uint32_t, uint32_t>>& pieces, void* match_data) const;
  void* new_match_data() const;                   // per call (PCRE2 match data)
  static void free_match_data(void* match_data);

 private:
  void* code_ = nullptr;   // pcre2_code_8*
  bool jit_ = false;
  SplitBehavior behavior_;
  bool invert_;
};

class PreTokenizer {
 public:
  // `spec` is tokenizer.json's "pre_tokenizer" value; `file` names the file in errors.
  PreTokenizer(const nlohmann::json& spec, const std::string& file);
  ~PreTokenizer();
  // A space is put before each segment that does not start with one (ByteLevel add_prefix_space).
  bool add_prefix_space() const { return add_prefix_space_; }
  // Splits text (valid UTF-8) into pieces, (begin, end) offsets into text, replacing `pieces`.
  // `scratch` holds per-call state: make one with new_scratch().
  struct Scratch;
  std::unique_ptr<Scratch, void (*)(Scratch*)> new_scratch() const;
  void split(std::string_view text, std::vector<std::pair<uint32_t, uint32_t>>& pieces, Scratch& s) const;

 private:
  void add_stage(const nlohmann::json& spec, const std::string& file, const std::string& key);
  std::vector<std::unique_ptr<RegexSplit>> stages_;
  bool add_prefix_space_ = false;
  bool saw_byte_level_ = false;
};

}  // namespace temper
