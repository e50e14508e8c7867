// Packing (positions, boundaries, targets, overlong documents) and the SFT
// loader (determinism, state/restore across epochs, sharding, files).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "core/rng.h"
#include "data/packing.h"
#include "data/sft_dataset.h"

using namespace temper;

namespace {

constexpr int32_t kPad = 999999;

// Document k: tokens k*1000 + i, so a token names its document.
Document doc(int k, int len, const std::vector<uint8_t>& mask = {}) {
  Document d;
  for (int i = 0; i < len; ++i) d.ids.push_back(k * 1000 + i);
  d.loss_mask = mask.empty() ? std::vector<uint8_t>(len, 1) : mask;
  return d;
}

// Structural invariants every batch must satisfy.
void check_batch(const PackedBatch& b) {
  const int total = b.rows * b.seq_len;
  ASSERT_EQ(static_cast<int>(b.tokens.size()), total);
  ASSERT_EQ(b.targets.size(), b.tokens.size());
  ASSERT_EQ(b.positions.size(), b.tokens.size());
  ASSERT_EQ(b.cu_seqlens.front(), 0);
  ASSERT_EQ(b.cu_seqlens.back(), total);
  int64_t loss = 0;
  int maxlen = 0;
  for (size_t s = 0; s + 1 < b.cu_seqlens.size(); ++s) {
    const int lo = b.cu_seqlens[s], hi = b.cu_seqlens[s + 1];
    ASSERT_LT(lo, hi);
    ASSERT_EQ(lo / b.seq_len, (hi - 1) / b.seq_len) << "segment crosses a row";
    maxlen = std::max(maxlen, hi - lo);
    for (int t = lo; t < hi; ++t) {
      EXPECT_EQ(b.positions[t], t - lo);
      if (b.targets[t] >= 0) {
        ++loss;
        EXPECT_EQ(b.targets[t] / 1000, b.tokens[t] / 1000) << "target crosses a document at " << t;
        EXPECT_EQ(b.targets[t], b.tokens[t] + 1);
        if (t + 1 < hi) EXPECT_EQ(b.targets[t], b.tokens[t + 1]);
      }
      if (b.tokens[t] == kPad) EXPECT_EQ(b.targets[t], -1);
    }
  }
  EXPECT_EQ(b.loss_tokens, loss);
  EXPECT_EQ(b.max_seqlen, maxlen);
}

}  // namespace

TEST(Packing, FirstFitLayoutPositionsBoundariesTargets) {
  std::vector<Document> docs = {doc(1, 5, {0, 0, 1, 1, 1}), doc(2, 4), doc(3, 3)};
  PackStats st;
  auto batches = pack_documents(docs, 2, 8, Overlong::Truncate, kPad, &st);
  ASSERT_EQ(batches.size(), 1u);
  const PackedBatch& b = batches[0];
  check_batch(b);
  // Row 0: doc1 (5) + doc3 (3); row 1: doc2 (4) + padding (4).
  EXPECT_EQ(b.cu_seqlens, (std::vector<int32_t>{0, 5, 8, 12, 16}));
  EXPECT_EQ(b.tokens, (std::vector<int32_t>{1000, 1001, 1002, 1003, 1004, 3000, 3001, 3002, 2000, 2001, 2002, 2003,
                                            kPad, kPad, kPad, kPad}));
  EXPECT_EQ(b.positions, (std::vector<int32_t>{0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 3}));
  EXPECT_EQ(b.targets, (std::vector<int32_t>{-1, 1002, 1003, 1004, -1, 3001, 3002, -1, 2001, 2002, 2003, -1,
                                             -1, -1, -1, -1}));
  EXPECT_EQ(b.loss_tokens, 8);
  EXPECT_EQ(b.max_seqlen, 5);
  EXPECT_EQ(b.documents, 3);
  EXPECT_EQ(st.documents, 3);
  EXPECT_EQ(st.padding_tokens, 4);
  EXPECT_EQ(st.loss_tokens, 8);
}

TEST(Packing, OverlongTruncatedIsCountedAndKeepsPrefix) {
  PackStats st;
  auto batches = pack_documents({doc(1, 10), doc(2, 3)}, 1, 4, Overlong::Truncate, kPad, &st);
  ASSERT_EQ(batches.size(), 2u);
  for (auto& b : batches) check_batch(b);
  EXPECT_EQ(batches[0].tokens, (std::vector<int32_t>{1000, 1001, 1002, 1003}));
  EXPECT_EQ(batches[0].targets, (std::vector<int32_t>{1001, 1002, 1003, 1004}));  // same document's next token
  EXPECT_EQ(st.truncated, 1);
  EXPECT_EQ(st.split, 0);
  EXPECT_EQ(st.dropped_tokens, 6);
  EXPECT_EQ(st.documents, 2);
}

TEST(Packing, OverlongSplitIntoPiecesIsCountedOnce) {
  PackStats st;
  auto batches = pack_documents({doc(1, 10)}, 2, 4, Overlong::Split, kPad, &st);
  ASSERT_EQ(batches.size(), 2u);
  for (auto& b : batches) check_batch(b);
  EXPECT_EQ(batches[0].cu_seqlens, (std::vector<int32_t>{0, 4, 8}));
  EXPECT_EQ(batches[1].tokens, (std::vector<int32_t>{1008, 1009, kPad, kPad, kPad, kPad, kPad, kPad}));
  EXPECT_EQ(batches[1].targets[0], 1009);
  EXPECT_EQ(batches[1].targets[1], -1);
  EXPECT_EQ(batches[1].cu_seqlens, (std::vector<int32_t>{0, 2, 4, 8}));
  int64_t loss = batches[0].loss_tokens + batches[1].loss_tokens;
  EXPECT_EQ(loss, 9);  // every token of the document but the first is a target
  EXPECT_EQ(st.split, 1);
  EXPECT_EQ(st.truncated, 0);
  EXPECT_EQ(st.dropped_tokens, 0);
}

TEST(Packing, RandomDocumentsKeepInvariants) {
  Rng rng(7);
  std::vector<Document> docs;
  int64_t expected_loss = 0;
  for (int k = 1; k <= 200; ++k) {
    const int len = 1 + static_cast<int>(rng.below(20));
    std::vector<uint8_t> mask(len);
    for (auto& m : mask) m = rng.below(2);
    for (int t = 1; t < len; ++t) expected_loss += mask[t];
    docs.push_back(doc(k, len, mask));
  }
  PackStats st;
  auto batches = pack_documents(docs, 3, 24, Overlong::Split, kPad, &st);
  int64_t loss = 0;
  for (auto& b : batches) {
    check_batch(b);
    loss += b.loss_tokens;
  }
  EXPECT_EQ(loss, expected_loss);
  EXPECT_EQ(st.documents, 200);
  EXPECT_THROW(overlong_from_name("drop"), Error);
  EXPECT_EQ(overlong_from_name("split"), Overlong::Split);
}

namespace {

std::vector<Document> corpus(int n) {
  Rng rng(11);
  std::vector<Document> docs;
  for (int k = 1; k <= n; ++k) docs.push_back(doc(k, 2 + static_cast<int>(rng.below(k % 5 == 0 ? 30 : 14))));
  return docs;
}

SftDataOptions options(uint64_t seed) {
  SftDataOptions o;
  o.seq_len = 16;
  o.micro_batch = 2;
  o.seed = seed;
  o.overlong = Overlong::Split;
  return o;
}

bool same(const PackedBatch& a, const PackedBatch& b) {
  return a.tokens == b.tokens && a.targets == b.targets && a.positions == b.positions &&
         a.cu_seqlens == b.cu_seqlens && a.loss_tokens == b.loss_tokens;
}

}  // namespace

TEST(SftLoader, SameSeedSameBatchesOtherSeedOtherOrder) {
  SftDataset a(corpus(30), kPad, options(5)), b(corpus(30), kPad, options(5)), c(corpus(30), kPad, options(6));
  bool differs = false;
  for (int i = 0; i < 40; ++i) {
    PackedBatch x = a.next(), y = b.next(), z = c.next();
    check_batch(x);
    ASSERT_TRUE(same(x, y)) << "batch " << i;
    differs |= !same(x, z);
  }
  EXPECT_TRUE(differs);
  EXPECT_GE(a.epoch(), 2);  // 40 batches span several epochs of 30 short documents
}

TEST(SftLoader, EachEpochVisitsEveryDocumentOnceInANewOrder) {
  SftDataOptions o = options(3);
  o.seq_len = 10;
  o.micro_batch = 1;
  std::vector<Document> docs;
  for (int k = 1; k <= 12; ++k) docs.push_back(doc(k, 10));  // one document per batch
  SftDataset ds(docs, kPad, o);
  std::vector<int> e0, e1;
  for (int i = 0; i < 12; ++i) e0.push_back(ds.next().tokens[0] / 1000);
  EXPECT_EQ(ds.epoch(), 1);
  for (int i = 0; i < 12; ++i) e1.push_back(ds.next().tokens[0] / 1000);
  EXPECT_EQ(std::set<int>(e0.begin(), e0.end()).size(), 12u);
  EXPECT_EQ(std::set<int>(e1.begin(), e1.end()).size(), 12u);
  EXPECT_NE(e0, e1);
}

TEST(SftLoader, StateRestoreContinuesIdenticallyAcrossEpochBoundary) {
  SftDataset a(corpus(30), kPad, options(9));
  std::vector<std::string> states;
  std::vector<PackedBatch> seen;
  for (int i = 0; i < 30; ++i) {
    states.push_back(a.state());
    seen.push_back(a.next());
  }
  ASSERT_GE(a.epoch(), 1);
  // Some saved point lies inside a split document.
  bool mid_document = false;
  for (auto& s : states) mid_document |= nlohmann::json::parse(s).at("offset").get<int>() > 0;
  EXPECT_TRUE(mid_document);
  // Resume from every saved point (mid-epoch, mid split document, before a boundary).
  for (int from = 0; from < 30; ++from) {
    SftDataset b(corpus(30), kPad, options(9));
    b.restore(states[from]);
    for (int i = from; i < 30; ++i) ASSERT_TRUE(same(b.next(), seen[i])) << "resumed at " << from << ", batch " << i;
    EXPECT_EQ(b.state(), a.state());
  }
  SftDataset wrong_seed(corpus(30), kPad, options(10));
  EXPECT_THROW(wrong_seed.restore(states[3]), Error);
  SftDataset fewer_docs(corpus(29), kPad, options(9));
  EXPECT_THROW(fewer_docs.restore(states[3]), Error);
  EXPECT_THROW(fewer_docs.restore("{not json"), Error);
}

TEST(SftLoader, ShardsSplitEachEpochDisjointly) {
  std::vector<Document> docs;
  for (int k = 1; k <= 11; ++k) docs.push_back(doc(k, 8));
  std::set<int> all;
  size_t total = 0;
  for (int r = 0; r < 2; ++r) {
    SftDataOptions o = options(4);
    o.seq_len = 8;
    o.micro_batch = 1;
    o.shard_rank = r;
    o.shard_count = 2;
    SftDataset ds(docs, kPad, o);
    total += ds.shard_size();
    for (size_t i = 0; i < ds.shard_size(); ++i) all.insert(ds.next().tokens[0] / 1000);
  }
  EXPECT_EQ(total, 11u);
  EXPECT_EQ(all.size(), 11u);
}

TEST(SftLoader, LoadsFilesSkipsConversationsWithoutAssistantAndOnePassCoversAll) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("temper_sft_" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "a.jsonl")
      << R"({"messages":[{"role":"user","content":"1+1?"},{"role":"assistant","content":"\\boxed{2}"}]})" << "\n"
      << R"({"messages":[{"role":"user","content":"no answer here"}]})" << "\n"
      << R"({"messages":[{"role":"user","content":"2+2?"},{"role":"assistant","content":"\\boxed{4}"}]})" << "\n";
  auto tok = make_byte_tokenizer();
  SftDataOptions o = options(1);
  o.seq_len = 64;
  o.micro_batch = 1;
  SftDataset ds({(dir / "a.jsonl").string()}, *tok, o);
  EXPECT_EQ(ds.num_documents(), 2u);
  EXPECT_EQ(ds.skipped_no_assistant(), 1);
  auto pass = ds.one_pass();
  int64_t loss = 0;
  for (auto& b : pass) loss += b.loss_tokens;
  EXPECT_EQ(loss, 2 * (9 + 1));  // "\boxed{N}" and <|im_end|> of each conversation
  PackedBatch b = ds.next();
  EXPECT_EQ(b.tokens.back(), tok->special_id("<|pad|>"));
  fs::remove_all(dir);
}
