// Greedy first-fit packing of documents into fixed-length rows (see packing.h).
#include "data/packing.h"

#include <algorithm>

#include "core/error.h"

namespace temper {

Overlong overlong_from_name(const std::string& name) {
  if (name == "truncate") return Overlong::Truncate;
  if (name == "split") return Overlong::Split;
  fail("unknown overlong policy '", name, "' (expected truncate or split)");
}

const char* overlong_name(Overlong o) { return o == Overlong::Truncate ? "truncate" : "split"; }

nlohmann::json PackStats::to_json() const {
  return {{"documents", documents},       {"truncated", truncated},
          {"split", split},               {"dropped_tokens", dropped_tokens},
          {"padding_tokens", padding_tokens}, {"loss_tokens", loss_tokens}};
}

PackStats PackStats::from_json(const nlohmann::json& j) {
  PackStats s;
  s.documents = j.at("documents").get<int64_t>();
  s.truncated = j.at("truncated").get<int64_t>();
  s.split = j.at("split").get<int64_t>();
  s.dropped_tokens = j.at("dropped_tokens").get<int64_t>();
  s.padding_tokens = j.at("padding_tokens").get<int64_t>();
  s.loss_tokens = j.at("loss_tokens").get<int64_t>();
  return s;
}

Packer::Packer(int rows, int seq_len, Overlong overlong, int32_t pad_id)
    : rows_(rows), seq_len_(seq_len), overlong_(overlong), pad_id_(pad_id), used_(rows, 0) {
  TEMPER_CHECK(rows > 0, "packing: micro_batch must be positive (got ", rows, ")");
  TEMPER_CHECK(seq_len > 1, "packing: seq_len must be at least 2 (got ", seq_len, ")");
}

bool Packer::add(const Document& doc, size_t& offset, PackStats& stats) {
  const size_t n = doc.ids.size();
  TEMPER_CHECK(doc.loss_mask.size() == n, "packing: a document has ", n, " tokens but ", doc.loss_mask.size(),
               " loss-mask entries");
  while (offset < n) {
    const bool overlong = n > static_cast<size_t>(seq_len_);
    const size_t len = std::min(n - offset, static_cast<size_t>(seq_len_));
    int row = -1;
    for (int r = 0; r < rows_; ++r)
      if (seq_len_ - used_[r] >= static_cast<int>(len)) { row = r; break; }
    if (row < 0) return false;

    if (offset == 0) {
      stats.documents += 1;
      if (overlong && overlong_ == Overlong::Truncate) stats.truncated += 1;
      if (overlong && overlong_ == Overlong::Split) stats.split += 1;
    }
    Segment seg;
    seg.row = row;
    seg.tokens.assign(doc.ids.begin() + offset, doc.ids.begin() + offset + len);
    seg.targets.resize(len);
    for (size_t t = offset; t < offset + len; ++t) {
      const size_t next = t + 1;
      seg.targets[t - offset] = (next < n && doc.loss_mask[next]) ? doc.ids[next] : -1;
    }
    used_[row] += static_cast<int>(len);
    placed_.push_back(std::move(seg));
    segments_ += 1;
    if (overlong_ == Overlong::Truncate && overlong) {
      stats.dropped_tokens += static_cast<int64_t>(n - len);
      offset = n;
    } else {
      offset += len;
    }
  }
  return true;
}

PackedBatch Packer::finish(PackStats& stats) {
  PackedBatch b;
  b.rows = rows_;
  b.seq_len = seq_len_;
  const size_t total = static_cast<size_t>(rows_) * seq_len_;
  b.tokens.assign(total, pad_id_);
  b.targets.assign(total, -1);
  b.positions.assign(total, 0);
  b.cu_seqlens.push_back(0);
  std::vector<int> fill(rows_, 0);
  // Segments of a row lie in placement order; rows follow one another.
  for (int r = 0; r < rows_; ++r) {
    const size_t base = static_cast<size_t>(r) * seq_len_;
    for (const Segment& s : placed_) {
      if (s.row != r) continue;
      const int len = static_cast<int>(s.tokens.size());
      for (int i = 0; i < len; ++i) {
        const size_t at = base + fill[r] + i;
        b.tokens[at] = s.tokens[i];
        b.targets[at] = s.targets[i];
        b.positions[at] = i;
        if (s.targets[i] >= 0) b.loss_tokens += 1;
      }
      fill[r] += len;
      b.cu_seqlens.push_back(static_cast<int32_t>(base + fill[r]));
      b.max_seqlen = std::max(b.max_seqlen, len);
      b.documents += 1;
    }
    const int pad = seq_len_ - fill[r];
    if (pad > 0) {
      for (int i = 0; i < pad; ++i) b.positions[base + fill[r] + i] = i;
      b.cu_seqlens.push_back(static_cast<int32_t>(base + seq_len_));
      b.max_seqlen = std::max(b.max_seqlen, pad);
      stats.padding_tokens += pad;
    }
  }
  stats.loss_tokens += b.loss_tokens;
  placed_.clear();
  std::fill(used_.begin(), used_.end(), 0);
  segments_ = 0;
  return b;
}

std::vector<PackedBatch> pack_documents(const std::vector<Document>& docs, int rows, int seq_len,
                                        Overlong overlong, int32_t pad_id, PackStats* stats) {
  PackStats local;
  PackStats& st = stats ? *stats : local;
  Packer packer(rows, seq_len, overlong, pad_id);
  std::vector<PackedBatch> out;
  for (const Document& d : docs) {
    size_t offset = 0;
    while (!packer.add(d, offset, st)) out.push_back(packer.finish(st));
  }
  if (!packer.empty()) out.push_back(packer.finish(st));
  return out;
}

}  // namespace temper
