// Incremental detokenization (see stream_decoder.h).
#include "tokenizer/stream_decoder.h"

#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/byte_unicode.h"

namespace temper {

std::string StreamDecoder::push(int32_t id) {
  if (const auto* bpe = dynamic_cast<const BpeTokenizer*>(&tok_)) {
    bpe->append_token_bytes(id, held_);
  } else {
    one_[0] = id;
    held_ += tok_.decode(one_);
  }
  const int tail = utf8_incomplete_tail(held_);
  std::string out = held_.substr(0, held_.size() - static_cast<size_t>(tail));
  held_.erase(0, held_.size() - static_cast<size_t>(tail));
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  out.swap(held_);
  return out;
}

}  // namespace temper
