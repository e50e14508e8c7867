// Byte-level BPE tokenizer read from a Hugging Face tokenizer.json (Qwen2/3,
// Llama-3 and other GPT-2-style files): added tokens matched first (longest
// match), then NFC when the file asks for it, the regex pre-tokenizer, and BPE
// merges by rank with a per-piece cache. Ids match Hugging Face `tokenizers`.
//
// Input that is not valid UTF-8 is accepted, byte-level: each invalid byte
// becomes its own single-byte token (it separates the text around it as an
// added token would), so decode(encode(s)) == s for any byte string.
// decode() returns raw bytes (no U+FFFD replacement), so a prefix of a
// token sequence can end inside a character: use StreamDecoder to print
// tokens as they come.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace temper {

class BpeModel;
class PreTokenizer;
class NfcNormalizer;

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool lstrip = false, rstrip = false, single_word = false;
};

class BpeTokenizer final : public Tokenizer {
 public:
  // Reads tokenizer.json; a missing key, a non-BPE model or an unsupported
  // normalizer / pre-tokenizer is an Error naming the file and the key.
  explicit BpeTokenizer(const std::string& tokenizer_json_path);
  ~BpeTokenizer() override;

  int vocab_size() const override;  // largest id + 1 (vocabulary and added tokens)
  // Special tokens in `text` are not parsed (they tokenize as text); non-special
  // added tokens (Qwen's <think>, <tool_call>) are, as Hugging Face does with
  // encode_special_tokens = true.
  std::vector<int32_t> encode(const std::string& text) const override;
  // Every added token in `text` is parsed: Hugging Face's
  // encode(text, add_special_tokens=False). With add_special_tokens, the
  // post-processor's template (e.g. a BOS) is applied too.
  std::vector<int32_t> encode_with_specials(const std::string& text, bool add_special_tokens = false) const;
  // Appends to `out` (no allocation once `out` has capacity and the cache is warm).
  void encode_into(std::string_view text, bool parse_specials, std::vector<int32_t>& out) const;

  std::string decode(const std::vector<int32_t>& ids) const override;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const;
  // Appends the raw bytes of one id (an added token's content for added tokens).
  void append_token_bytes(int32_t id, std::string& out) const;

  // Any added token by its content ("<|im_end|>", "<think>"); throws naming it if absent.
  int32_t special_id(const std::string& name) const override;
  bool is_special(int32_t id) const override;  // added tokens marked "special": true
  std::string name() const override;

  std::string id_to_token(int32_t id) const;              // byte-level text ("Ġthe"); throws if no such id
  int32_t token_to_id(const std::string& token) const;    // -1 when absent
  const std::vector<AddedToken>& added_tokens() const { return added_; }
  const std::string& path() const { return path_; }
  bool normalizes_nfc() const { return nfc_ != nullptr; }

 private:
  struct MatchTable;   // added-token matcher (one for all added tokens, one for non-special ones)
  struct Context;      // per-call working memory, pooled
  void load(const std::string& path);
  void encode_segment(std::string_view seg, std::vector<int32_t>& out, Context& ctx) const;
  void encode_valid(std::string_view text, bool first_in_segment, std::vector<int32_t>& out, Context& ctx) const;
  std::unique_ptr<Context> acquire() const;
  void release(std::unique_ptr<Context> ctx) const;

  std::string path_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<PreTokenizer> pre_;
  std::unique_ptr<NfcNormalizer> nfc_;
  std::vector<AddedToken> added_;
  std::vector<int32_t> added_index_;   // id -> index into added_, -1 otherwise
  std::unordered_map<std::string, int32_t> added_by_content_;
  std::unique_ptr<MatchTable> match_all_, match_plain_;
  std::vector<int32_t> post_prefix_, post_suffix_;   // post-processor template around a sequence
  std::string post_unsupported_;                     // non-empty: why add_special_tokens cannot be honoured
  int32_t vocab_size_ = 0;
  mutable std::mutex pool_mu_;
  mutable std::vector<std::unique_ptr<Context>> pool_;
};

// Loads a tokenizer.json file.
std::unique_ptr<BpeTokenizer> make_bpe_tokenizer(const std::string& tokenizer_json_path);
// Loads DIR/tokenizer.json (a Hugging Face model or tokenizer directory).
std::unique_ptr<Tokenizer> make_tokenizer_from_dir(const std::string& dir);
// Deck spelling: "byte" -> the byte tokenizer; "hf:DIR" or a directory -> DIR/tokenizer.json;
// a path to a .json file -> that file.
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& spec);

}  // namespace temper
