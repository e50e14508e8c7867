// Tokenizer interface shared by the byte-level tokenizer (tests, toy runs) and
// the BPE tokenizer read from a Hugging Face tokenizer.json.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace temper {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual int vocab_size() const = 0;
  // Plain text to ids; special-token text inside `text` is NOT parsed.
  virtual std::vector<int32_t> encode(const std::string& text) const = 0;
  // Ids to text; special tokens are written as their text (e.g. "<|im_end|>").
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  // "<|im_start|>", "<|im_end|>", "<|endoftext|>", ...; throws temper::Error if absent.
  virtual int32_t special_id(const std::string& name) const = 0;
  virtual bool is_special(int32_t id) const = 0;
  virtual std::string name() const = 0;
};

// Ids 0..255 are the bytes; then the specials, in this order:
// 256 <|endoftext|>, 257 <|im_start|>, 258 <|im_end|>, 259 <think>, 260 </think>, 261 <|pad|>.
std::unique_ptr<Tokenizer> make_byte_tokenizer();

// The id used for padding: <|pad|> when the tokenizer has one, else <|endoftext|>
// (Llama-3: <|end_of_text|>).
int32_t padding_id(const Tokenizer& tok);

}  // namespace temper
