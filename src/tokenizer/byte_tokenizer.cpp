// Byte-level tokenizer: every byte is its own token (so any byte string,
// valid UTF-8 or not, round-trips), followed by a handful of special tokens.
#include <array>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace temper {
namespace {

constexpr int kNumBytes = 256;
const std::array<const char*, 6> kSpecials = {"<|endoftext|>", "<|im_start|>", "<|im_end|>",
                                              "<think>",       "</think>",     "<|pad|>"};

class ByteTokenizer final : public Tokenizer {
 public:
  int vocab_size() const override { return kNumBytes + static_cast<int>(kSpecials.size()); }

  std::vector<int32_t> encode(const std::string& text) const override {
    std::vector<int32_t> ids;
    ids.reserve(text.size());
    for (unsigned char c : text) ids.push_back(static_cast<int32_t>(c));
    return ids;
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    out.reserve(ids.size());
    for (int32_t id : ids) {
      if (id >= 0 && id < kNumBytes) {
        out.push_back(static_cast<char>(static_cast<unsigned char>(id)));
      } else if (id >= kNumBytes && id < vocab_size()) {
        out += kSpecials[id - kNumBytes];
      } else {
        fail("byte tokenizer: cannot decode token id ", id, " (vocabulary has ", vocab_size(), " ids)");
      }
    }
    return out;
  }

  int32_t special_id(const std::string& name) const override {
    for (size_t i = 0; i < kSpecials.size(); ++i)
      if (name == kSpecials[i]) return kNumBytes + static_cast<int32_t>(i);
    fail("byte tokenizer has no special token '", name,
         "' (it has <|endoftext|>, <|im_start|>, <|im_end|>, <think>, </think>, <|pad|>)");
  }

  bool is_special(int32_t id) const override { return id >= kNumBytes && id < vocab_size(); }

  std::string name() const override { return "byte"; }
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

int32_t padding_id(const Tokenizer& tok) {
  // <|pad|>, else the end-of-text token under its Qwen/GPT (<|endoftext|>) or Llama-3 name.
  for (const char* name : {"<|pad|>", "<|endoftext|>"}) {
    try {
      return tok.special_id(name);
    } catch (const Error&) {
    }
  }
  return tok.special_id("<|end_of_text|>");
}

}  // namespace temper
