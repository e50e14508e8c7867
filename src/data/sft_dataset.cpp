// SFT data loader (see sft_dataset.h).
#include "data/sft_dataset.h"

#include <numeric>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "data/jsonl.h"

namespace temper {

namespace {
// A document trains something only if some token after the first is masked in.
bool has_loss(const Document& d) {
  for (size_t t = 1; t < d.loss_mask.size(); ++t)
    if (d.loss_mask[t]) return true;
  return false;
}
}  // namespace

SftDataset::SftDataset(const std::vector<std::string>& files, const Tokenizer& tok, const SftDataOptions& opt)
    : opt_(opt), pad_id_(padding_id(tok)) {
  TEMPER_CHECK(!files.empty(), "SFT data: no data files given");
  std::string names;
  for (const std::string& f : files) names += (names.empty() ? "" : ", ") + f;
  files_ = names;
  for (const std::string& f : files) {
    for (const Conversation& c : read_jsonl(f)) {
      RenderedChat r = render_chat(tok, c.messages, opt.chat_template);
      Document d{std::move(r.ids), std::move(r.loss_mask)};
      if (!has_loss(d)) {
        skipped_ += 1;
        continue;
      }
      docs_.push_back(std::move(d));
    }
  }
  if (skipped_ > 0) log_warn("SFT data: skipped ", skipped_, " conversations with no assistant tokens");
  init();
}

SftDataset::SftDataset(std::vector<Document> docs, int32_t pad_id, const SftDataOptions& opt)
    : opt_(opt), pad_id_(pad_id) {
  for (Document& d : docs) {
    if (has_loss(d)) docs_.push_back(std::move(d));
    else skipped_ += 1;
  }
  init();
}

void SftDataset::init() {
  TEMPER_CHECK(opt_.shard_count >= 1 && opt_.shard_rank >= 0 && opt_.shard_rank < opt_.shard_count,
               "SFT data: shard ", opt_.shard_rank, " of ", opt_.shard_count, " is not a valid shard");
  // No usable conversation at all: the data, not the rank count, is the problem.
  TEMPER_CHECK(!docs_.empty(), "SFT data", files_.empty() ? std::string() : " (" + files_ + ")", ": none of the ",
               skipped_, " conversations has an assistant turn with tokens to learn from; SFT trains on assistant"
               " messages, so each record needs {\"role\": \"assistant\", \"content\": ...} with non-empty content");
  TEMPER_CHECK(docs_.size() >= static_cast<size_t>(opt_.shard_count), "SFT data: ", docs_.size(),
               " usable conversations (", skipped_, " skipped without assistant tokens) cannot feed ",
               opt_.shard_count, " data-parallel ranks; add data or use fewer ranks");
  TEMPER_CHECK(docs_.size() < (size_t(1) << 32), "SFT data: more than 2^32 conversations");
  build_order();
}

void SftDataset::build_order() {
  std::vector<uint32_t> perm(docs_.size());
  std::iota(perm.begin(), perm.end(), 0u);
  if (opt_.shuffle) {
    Rng rng(mix64(opt_.seed, static_cast<uint64_t>(epoch_)));
    for (size_t i = perm.size(); i > 1; --i) std::swap(perm[i - 1], perm[rng.below(i)]);
  }
  order_.clear();
  for (size_t i = opt_.shard_rank; i < perm.size(); i += opt_.shard_count) order_.push_back(perm[i]);
}

PackedBatch SftDataset::next() {
  Packer packer(opt_.micro_batch, opt_.seq_len, opt_.overlong, pad_id_);
  while (packer.add(docs_[order_[cursor_]], offset_, stats_)) {
    offset_ = 0;
    if (++cursor_ == order_.size()) {
      cursor_ = 0;
      epoch_ += 1;
      build_order();
    }
  }
  batches_ += 1;
  return packer.finish(stats_);
}

std::vector<PackedBatch> SftDataset::one_pass() const {
  std::vector<Document> mine;
  for (size_t i = opt_.shard_rank; i < docs_.size(); i += opt_.shard_count) mine.push_back(docs_[i]);
  return pack_documents(mine, opt_.micro_batch, opt_.seq_len, opt_.overlong, pad_id_);
}

std::string SftDataset::state() const {
  nlohmann::json j = {{"version", 1},
                      {"epoch", epoch_},
                      {"cursor", cursor_},
                      {"offset", offset_},
                      {"batches", batches_},
                      {"seed", opt_.seed},
                      {"documents", docs_.size()},
                      {"shard", {opt_.shard_rank, opt_.shard_count}},
                      {"seq_len", opt_.seq_len},
                      {"micro_batch", opt_.micro_batch},
                      {"stats", stats_.to_json()}};
  return j.dump();
}

void SftDataset::restore(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    fail("SFT data state: not valid JSON (", e.what(), ")");
  }
  try {
    auto mismatch = [&](const char* key, auto here) {
      if (j.at(key).get<decltype(here)>() != here)
        fail("SFT data state: saved with ", key, " = ", j.at(key).dump(), " but this run has ", here,
             "; resume with the same data files and deck, or start a fresh run");
    };
    mismatch("documents", docs_.size());
    mismatch("seed", opt_.seed);
    mismatch("seq_len", opt_.seq_len);
    mismatch("micro_batch", opt_.micro_batch);
    const auto shard = j.at("shard");
    if (shard.at(0).get<int>() != opt_.shard_rank || shard.at(1).get<int>() != opt_.shard_count)
      fail("SFT data state: saved for shard ", shard.dump(), " but this rank is shard [", opt_.shard_rank, ",",
           opt_.shard_count, "]; resume with the same number of data-parallel ranks");
    epoch_ = j.at("epoch").get<int64_t>();
    build_order();
    const size_t cursor = j.at("cursor").get<size_t>();
    const size_t offset = j.at("offset").get<size_t>();
    TEMPER_CHECK(cursor < order_.size(), "SFT data state: cursor ", cursor, " is past the epoch's ",
                 order_.size(), " documents");
    TEMPER_CHECK(offset < docs_[order_[cursor]].ids.size() || offset == 0, "SFT data state: offset ", offset,
                 " is past its document");
    cursor_ = cursor;
    offset_ = offset;
    batches_ = j.at("batches").get<int64_t>();
    stats_ = PackStats::from_json(j.at("stats"));
  } catch (const nlohmann::json::exception& e) {
    fail("SFT data state: missing or mistyped field (", e.what(), ")");
  }
}

}  // namespace temper
