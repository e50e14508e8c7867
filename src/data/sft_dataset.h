// SFT data loader: JSONL conversations rendered with a chat template,
// shuffled per epoch from a seed, packed into micro-batches. Its position is
// a small JSON string, so a restart continues with exactly the same batches.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/packing.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace temper {

struct SftDataOptions {
  int seq_len = 512;
  int micro_batch = 1;              // rows per batch
  uint64_t seed = 0;
  Overlong overlong = Overlong::Truncate;
  bool shuffle = true;              // off: every epoch in file order
  ChatTemplate chat_template = ChatTemplate::ChatML;
  int shard_rank = 0;               // data-parallel sharding: this rank takes every
  int shard_count = 1;              // shard_count-th document of each epoch's order
};

class SftDataset {
 public:
  // Reads and renders every file; conversations without assistant tokens are skipped (counted).
  SftDataset(const std::vector<std::string>& files, const Tokenizer& tok, const SftDataOptions& opt);
  // From documents already tokenized (tests, other front ends).
  SftDataset(std::vector<Document> docs, int32_t pad_id, const SftDataOptions& opt);

  // The next micro-batch. Never runs dry: one epoch follows another, and a
  // batch may hold the end of one epoch and the start of the next.
  PackedBatch next();

  // This shard's documents once, in file order, the last batch padded (evaluation).
  std::vector<PackedBatch> one_pass() const;

  // Position and counters as JSON; restore() checks it fits this dataset.
  std::string state() const;
  void restore(const std::string& json);

  int64_t epoch() const { return epoch_; }
  size_t cursor() const { return cursor_; }          // documents of this epoch's shard order already used
  int64_t batches() const { return batches_; }
  const PackStats& stats() const { return stats_; }
  int64_t skipped_no_assistant() const { return skipped_; }
  size_t num_documents() const { return docs_.size(); }   // all shards
  size_t shard_size() const { return order_.size(); }     // documents per epoch on this shard

 private:
  void init();
  void build_order();   // this epoch's shard order from (seed, epoch)

  SftDataOptions opt_;
  int32_t pad_id_ = 0;
  std::vector<Document> docs_;
  int64_t skipped_ = 0;
  std::string files_;  // the data files, for messages

  std::vector<uint32_t> order_;
  int64_t epoch_ = 0;
  size_t cursor_ = 0;
  size_t offset_ = 0;    // tokens of order_[cursor_] already placed (split documents)
  int64_t batches_ = 0;
  PackStats stats_;
};

}  // namespace temper
