// Regex pre-tokenization with PCRE2 (see pretokenizer.h).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/pretokenizer.h"

#include <pcre2.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/byte_unicode.h"

namespace temper {
namespace {

// GPT-2's pattern, used by ByteLevel when use_regex is true.
const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

SplitBehavior behavior_from_name(const std::string& name, const std::string& where) {
  if (name == "Isolated") return SplitBehavior::Isolated;
  if (name == "Removed") return SplitBehavior::Removed;
  if (name == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (name == "Contiguous") return SplitBehavior::Contiguous;
  fail(where, ": unknown split behavior '", name,
       "' (expected Isolated, Removed, MergedWithPrevious, MergedWithNext or Contiguous)");
}

}  // namespace

RegexSplit::RegexSplit(const std::string& pattern, SplitBehavior behavior, bool invert, const std::string& where)
    : behavior_(behavior), invert_(invert) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    fail(where, ": cannot compile the regex at offset ", err_off, ": ", reinterpret_cast<char*>(msg),
         " (pattern: ", pattern, ")");
  }
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  code_ = code;
}

RegexSplit::~RegexSplit() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

void* RegexSplit::new_match_data() const {
  return pcre2_match_data_create_from_pattern(static_cast<pcre2_code*>(code_), nullptr);
}

void RegexSplit::free_match_data(void* md) { pcre2_match_data_free(static_cast<pcre2_match_data*>(md)); }

void RegexSplit::split(std::string_view text, uint32_t begin, uint32_t end,
                       std::vector<std::pair<uint32_t, uint32_t>>& pieces, void* match_data) const {
  auto* code = static_cast<pcre2_code*>(code_);
  auto* md = static_cast<pcre2_match_data*>(match_data);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data() + begin);
  const size_t n = end - begin;
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
  // Walks the matches and the gaps between them, in order; `is_match` flips with invert.
  // Pieces are merged according to the behavior, as Hugging Face's Split does.
  bool pending = false;          // MergedWithNext: a match waiting for the next piece
  uint32_t pending_begin = 0;
  bool last_was_match = false;   // Contiguous / MergedWithPrevious bookkeeping
  auto emit = [&](uint32_t b, uint32_t e, bool is_match) {
    if (b == e) return;
    if (invert_) is_match = !is_match;
    switch (behavior_) {
      case SplitBehavior::Isolated:
        pieces.emplace_back(b, e);
        break;
      case SplitBehavior::Removed:
        if (!is_match) pieces.emplace_back(b, e);
        break;
      case SplitBehavior::MergedWithPrevious:
        if (is_match && !pieces.empty() && pieces.back().second == b && !last_was_match)
          pieces.back().second = e;
        else
          pieces.emplace_back(b, e);
        break;
      case SplitBehavior::MergedWithNext:
        if (is_match) {
          if (!pending) pending_begin = b;
          if (pending) {  // two matches in a row: the first stands alone
            pieces.emplace_back(pending_begin, b);
            pending_begin = b;
          }
          pending = true;
        } else {
          pieces.emplace_back(pending ? pending_begin : b, e);
          pending = false;
        }
        break;
      case SplitBehavior::Contiguous:
        if (is_match && last_was_match && !pieces.empty() && pieces.back().second == b)
          pieces.back().second = e;
        else
          pieces.emplace_back(b, e);
        break;
    }
    last_was_match = is_match;
  };
  size_t off = 0, gap_start = 0;
  while (off < n) {
    int rc = jit_ ? pcre2_jit_match(code, subject, n, off, 0, md, nullptr)
                  : pcre2_match(code, subject, n, off, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof(msg));
      fail("tokenizer pre-split regex failed on the input: ", reinterpret_cast<char*>(msg));
    }
    size_t ms = ov[0], me = ov[1];
    if (me == ms) {  // empty match: step over one character
      int len = utf8_sequence_length(std::string_view(text.data() + begin, n), ms);
      off = ms + static_cast<size_t>(len > 0 ? len : 1);
      continue;
    }
    emit(begin + static_cast<uint32_t>(gap_start), begin + static_cast<uint32_t>(ms), false);
    emit(begin + static_cast<uint32_t>(ms), begin + static_cast<uint32_t>(me), true);
    off = gap_start = me;
  }
  emit(begin + static_cast<uint32_t>(gap_start), end, false);
  if (pending) pieces.emplace_back(pending_begin, end);
}

struct PreTokenizer::Scratch {
  std::vector<void*> match_data;
  std::vector<std::pair<uint32_t, uint32_t>> tmp;
};

PreTokenizer::PreTokenizer(const nlohmann::json& spec, const std::string& file) {
  if (spec.is_null()) fail(file, ": \"pre_tokenizer\" is null; a byte-level BPE tokenizer needs ByteLevel");
  add_stage(spec, file, "pre_tokenizer");
  if (!saw_byte_level_)
    fail(file, ": \"pre_tokenizer\" has no ByteLevel step; only byte-level BPE tokenizers are supported");
}

PreTokenizer::~PreTokenizer() = default;

void PreTokenizer::add_stage(const nlohmann::json& spec, const std::string& file, const std::string& key) {
  const std::string where = file + ": " + key;
  if (!spec.is_object() || !spec.contains("type") || !spec["type"].is_string())
    fail(where, " has no \"type\"");
  const std::string type = spec["type"];
  if (type == "Sequence") {
    if (!spec.contains("pretokenizers") || !spec["pretokenizers"].is_array())
      fail(where, " (Sequence) has no \"pretokenizers\" array");
    for (size_t i = 0; i < spec["pretokenizers"].size(); ++i)
      add_stage(spec["pretokenizers"][i], file, key + ".pretokenizers[" + std::to_string(i) + "]");
  } else if (type == "Split") {
    if (saw_byte_level_) fail(where, ": a Split after ByteLevel is not supported");
    if (!spec.contains("pattern") || !spec["pattern"].is_object()) fail(where, " (Split) has no \"pattern\"");
    const nlohmann::json& p = spec["pattern"];
    std::string pattern;
    if (p.contains("Regex") && p["Regex"].is_string()) {
      pattern = p["Regex"];
    } else if (p.contains("String") && p["String"].is_string()) {  // literal: quote it
      pattern = "\\Q" + p["String"].get<std::string>() + "\\E";
    } else {
      fail(where, ".pattern has neither \"Regex\" nor \"String\"");
    }
    std::string behavior = spec.value("behavior", std::string("Isolated"));
    stages_.push_back(std::make_unique<RegexSplit>(pattern, behavior_from_name(behavior, where + ".behavior"),
                                                   spec.value("invert", false), where + ".pattern"));
  } else if (type == "ByteLevel") {
    saw_byte_level_ = true;
    bool prefix = spec.value("add_prefix_space", false);
    if (prefix && !stages_.empty())
      fail(where, ": add_prefix_space after a Split is not supported (only as the first step)");
    add_prefix_space_ = prefix;
    if (spec.value("use_regex", true))
      stages_.push_back(std::make_unique<RegexSplit>(kGpt2Pattern, SplitBehavior::Isolated, false, where));
  } else {
    fail(where, ": pre-tokenizer type '", type, "' is not supported (Sequence, Split, ByteLevel are)");
  }
}

std::unique_ptr<PreTokenizer::Scratch, void (*)(PreTokenizer::Scratch*)> PreTokenizer::new_scratch() const {
  auto* s = new Scratch;
  for (const auto& st : stages_) s->match_data.push_back(st->new_match_data());
  return {s, [](Scratch* p) {
            for (void* md : p->match_data) RegexSplit::free_match_data(md);
            delete p;
          }};
}

void PreTokenizer::split(std::string_view text, std::vector<std::pair<uint32_t, uint32_t>>& pieces,
                         Scratch& s) const {
  pieces.clear();
  const auto n = static_cast<uint32_t>(text.size());
  if (n == 0) return;
  if (stages_.empty()) {
    pieces.emplace_back(0, n);
    return;
  }
  stages_[0]->split(text, 0, n, pieces, s.match_data[0]);
  for (size_t k = 1; k < stages_.size(); ++k) {
    s.tmp.clear();
    for (const auto& p : pieces) stages_[k]->split(text, p.first, p.second, s.tmp, s.match_data[k]);
    pieces.swap(s.tmp);
  }
}

}  // namespace temper
