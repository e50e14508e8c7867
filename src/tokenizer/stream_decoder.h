// Incremental detokenization for printing generated tokens as they arrive:
// bytes of a character split across tokens (emoji, CJK with byte-level BPE)
// are held back until the character is complete.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace temper {

class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
  // Returns the text that is now complete (possibly ""). Bytes that cannot
  // start a valid UTF-8 sequence are passed through as they are.
  std::string push(int32_t id);
  // Returns whatever is held back (an incomplete sequence at the end of the stream) and resets.
  std::string flush();
  size_t pending_bytes() const { return held_.size(); }

 private:
  const Tokenizer& tok_;
  std::string held_;
  std::vector<int32_t> one_{0};
};

}  // namespace temper
