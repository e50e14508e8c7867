// Packing: tokenized documents (ids + loss mask) laid into fixed-length rows,
// with next-token targets, per-document positions and document boundaries.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace temper {

struct Document {
  std::vector<int32_t> ids;
  std::vector<uint8_t> loss_mask;   // same length; 1 where the token is a training target
};

struct PackedBatch {
  int rows = 0, seq_len = 0;
  std::vector<int32_t> tokens;      // rows*seq_len input ids
  std::vector<int32_t> targets;     // next-token targets; -1 where no loss (mask 0, last token of a document, padding)
  std::vector<int32_t> positions;   // restart at 0 for every document
  std::vector<int32_t> cu_seqlens;  // document boundaries over the flattened rows*seq_len stream (padding is its own segment)
  int max_seqlen = 0;
  int64_t loss_tokens = 0;          // number of targets >= 0
  int64_t documents = 0;            // document pieces in the batch (padding segments excluded)
};

// What to do with a document longer than seq_len: keep its first seq_len
// tokens, or cut it into seq_len pieces that are packed as separate segments.
enum class Overlong { Truncate, Split };
Overlong overlong_from_name(const std::string& name);  // truncate | split; throws otherwise
const char* overlong_name(Overlong o);

// Running counters, part of a loader's saved state.
struct PackStats {
  int64_t documents = 0;        // documents started
  int64_t truncated = 0;        // overlong documents truncated
  int64_t split = 0;            // overlong documents split
  int64_t dropped_tokens = 0;   // tokens cut off by truncation
  int64_t padding_tokens = 0;
  int64_t loss_tokens = 0;
  nlohmann::json to_json() const;
  static PackStats from_json(const nlohmann::json& j);
};

// Greedy first-fit packer for one batch of `rows` rows: each document piece
// goes into the first row with room for it; when a piece fits nowhere the
// batch is full. A target at position t is token t+1 of the same document,
// kept only when that token's loss mask is 1 (a truncated or split piece's
// last token therefore predicts the document's next token, never another
// document's).
class Packer {
 public:
  Packer(int rows, int seq_len, Overlong overlong, int32_t pad_id);

  // Places `doc` from token `offset` on (pieces of at most seq_len tokens).
  // Returns true when the document is used up; false when the batch is full,
  // with `offset` at the first token not yet placed (pass it again to the
  // next batch).
  bool add(const Document& doc, size_t& offset, PackStats& stats);
  bool empty() const { return segments_ == 0; }

  // The batch (rows padded, boundaries computed); the packer starts empty again.
  PackedBatch finish(PackStats& stats);

 private:
  struct Segment { int row; std::vector<int32_t> tokens, targets; };
  int rows_, seq_len_;
  Overlong overlong_;
  int32_t pad_id_;
  std::vector<int> used_;              // tokens used per row
  std::vector<Segment> placed_;        // in placement order
  int64_t segments_ = 0;
};

// Packs all documents once, in order, into batches of `rows` rows (the last
// one padded). For evaluation and tests.
std::vector<PackedBatch> pack_documents(const std::vector<Document>& docs, int rows, int seq_len,
                                        Overlong overlong, int32_t pad_id, PackStats* stats = nullptr);

}  // namespace temper
