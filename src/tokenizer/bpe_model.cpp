// BPE vocabulary, merges and merge loop (see bpe_model.h).
#include "tokenizer/bpe_model.h"

#include <algorithm>
#include <climits>
#include <functional>
#include <queue>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/byte_unicode.h"

namespace temper {
namespace {

uint64_t hash_bytes(std::string_view s) { return std::hash<std::string_view>()(s) | 1; }  // never 0

uint64_t mix(uint64_t k) {  // splitmix64 finaliser, for the (a, b) pair table
  k ^= k >> 30;
  k *= 0xbf58476d1ce4e5b9ull;
  k ^= k >> 27;
  k *= 0x94d049bb133111ebull;
  return k ^ (k >> 31);
}

}  // namespace

// ---- ByteStringTable --------------------------------------------------------

void ByteStringTable::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  if (cap > slots_.size()) {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(cap, Slot{});
    for (const Slot& s : old) {
      if (s.id < 0) continue;
      size_t i = s.hash & (cap - 1);
      while (slots_[i].id >= 0) i = (i + 1) & (cap - 1);
      slots_[i] = s;
    }
  }
}

void ByteStringTable::grow() { reserve(std::max<size_t>(16, slots_.size())); }

bool ByteStringTable::insert(std::string_view key, int32_t id) {
  if ((count_ + 1) * 2 > slots_.size()) grow();
  const uint64_t h = hash_bytes(key);
  const size_t mask = slots_.size() - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    Slot& s = slots_[i];
    if (s.id < 0) {
      s = Slot{h, static_cast<uint32_t>(arena_.size()), static_cast<uint32_t>(key.size()), id};
      arena_.append(key.data(), key.size());
      ++count_;
      return true;
    }
    if (s.hash == h && std::string_view(arena_.data() + s.offset, s.length) == key) return false;
  }
}

int32_t ByteStringTable::find(std::string_view key) const {
  if (slots_.empty()) return -1;
  const uint64_t h = hash_bytes(key);
  const size_t mask = slots_.size() - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.id < 0) return -1;
    if (s.hash == h && s.length == key.size() && std::string_view(arena_.data() + s.offset, s.length) == key)
      return s.id;
  }
}

// ---- BpeModel ---------------------------------------------------------------

BpeModel::BpeModel(const nlohmann::json& model, const std::string& file) : cache_(new CacheShard[kShards]) {
  auto where = [&](const std::string& key) { return file + ": model." + key; };
  if (!model.is_object()) fail(file, ": \"model\" is missing or not an object");
  if (!model.contains("type") || model["type"] != "BPE")
    fail(where("type"), " is ", model.contains("type") ? model["type"].dump() : std::string("missing"),
         "; only BPE models are supported");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty())
      fail(where(key), " = ", model[key].dump(), " is not supported (byte-level BPE has none)");
  }
  if (model.value("byte_fallback", false)) fail(where("byte_fallback"), " = true is not supported");
  ignore_merges_ = model.value("ignore_merges", false);
  if (!model.contains("vocab") || !model["vocab"].is_object()) fail(where("vocab"), " is missing or not an object");
  if (!model.contains("merges") || !model["merges"].is_array()) fail(where("merges"), " is missing or not an array");

  const nlohmann::json& vocab = model["vocab"];
  vocab_.reserve(vocab.size());
  int32_t max_id = -1;
  std::string bytes;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer()) fail(where("vocab"), "[\"", it.key(), "\"] is not an integer id");
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id > INT32_MAX / 2) fail(where("vocab"), "[\"", it.key(), "\"] has id ", id, " out of range");
    if (!byte_level_to_bytes(it.key(), bytes))
      fail(where("vocab"), " entry \"", it.key(), "\" is not a byte-level (GPT-2 alphabet) token");
    vocab_.insert(bytes, static_cast<int32_t>(id));
    if (static_cast<int32_t>(id) >= static_cast<int32_t>(id_bytes_.size())) {
      id_bytes_.resize(static_cast<size_t>(id) + 1);
      has_id_.resize(static_cast<size_t>(id) + 1, 0);
    }
    id_bytes_[static_cast<size_t>(id)] = bytes;
    has_id_[static_cast<size_t>(id)] = 1;
    max_id = std::max(max_id, static_cast<int32_t>(id));
  }
  for (int b = 0; b < 256; ++b) {
    byte_ids_[b] = vocab_.find(std::string(1, static_cast<char>(b)));
    if (byte_ids_[b] < 0)
      fail(where("vocab"), " has no token for byte 0x", std::hex, b, std::dec,
           " (a byte-level BPE vocabulary holds all 256 single-byte tokens)");
  }

  const nlohmann::json& merges = model["merges"];
  num_merges_ = merges.size();
  size_t cap = 16;
  while (cap < num_merges_ * 2) cap <<= 1;
  merges_.assign(cap, MergeSlot{});
  std::string left, right, a_bytes, b_bytes;
  for (size_t r = 0; r < merges.size(); ++r) {
    const nlohmann::json& m = merges[r];
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        fail(where("merges"), "[", r, "] = \"", s, "\" is not two tokens separated by one space");
      left = s.substr(0, sp);
      right = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else {
      fail(where("merges"), "[", r, "] = ", m.dump(), " is neither \"a b\" nor [\"a\", \"b\"]");
    }
    if (!byte_level_to_bytes(left, a_bytes) || !byte_level_to_bytes(right, b_bytes))
      fail(where("merges"), "[", r, "] = ", m.dump(), " has a token outside the byte-level alphabet");
    int32_t a = vocab_.find(a_bytes), b = vocab_.find(b_bytes), c = vocab_.find(a_bytes + b_bytes);
    if (a < 0 || b < 0 || c < 0)
      fail(where("merges"), "[", r, "] = ", m.dump(), ": '", a < 0 ? left : b < 0 ? right : left + right,
           "' is not in model.vocab");
    const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
    for (size_t i = mix(key) & (cap - 1);; i = (i + 1) & (cap - 1)) {
      if (merges_[i].key == key) break;  // a repeated merge keeps its first (best) rank
      if (merges_[i].rank < 0) {
        merges_[i] = MergeSlot{key, static_cast<int32_t>(r), c};
        break;
      }
    }
  }
}

BpeModel::~BpeModel() = default;

bool BpeModel::find_merge(int32_t a, int32_t b, int32_t& rank, int32_t& merged) const {
  const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  const size_t mask = merges_.size() - 1;
  for (size_t i = mix(key) & mask;; i = (i + 1) & mask) {
    const MergeSlot& s = merges_[i];
    if (s.rank < 0) return false;
    if (s.key == key) {
      rank = s.rank;
      merged = s.merged;
      return true;
    }
  }
}

void BpeModel::merge_small(BpeScratch& s) const {
  std::vector<int32_t>& syms = s.syms;
  std::vector<int32_t>& ranks = s.ranks;
  std::vector<int32_t>& merged = s.merged;
  size_t n = syms.size();
  ranks.resize(n);
  merged.resize(n);
  auto pair_at = [&](size_t i) {
    if (!find_merge(syms[i], syms[i + 1], ranks[i], merged[i])) ranks[i] = INT32_MAX;
  };
  for (size_t i = 0; i + 1 < n; ++i) pair_at(i);
  while (n > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < n; ++i)
      if (ranks[i] < ranks[best]) best = i;
    if (ranks[best] == INT32_MAX) break;
    syms[best] = merged[best];
    for (size_t i = best + 1; i + 1 < n; ++i) {
      syms[i] = syms[i + 1];
      ranks[i] = ranks[i + 1];
      merged[i] = merged[i + 1];
    }
    --n;
    if (best > 0) pair_at(best - 1);
    if (best + 1 < n) pair_at(best);
  }
  syms.resize(n);
}

void BpeModel::merge_large(BpeScratch& s) const {
  std::vector<int32_t>& syms = s.syms;
  const int n = static_cast<int>(syms.size());
  std::vector<int> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n));
  std::vector<uint8_t> alive(static_cast<size_t>(n), 1);
  for (int i = 0; i < n; ++i) {
    prev[static_cast<size_t>(i)] = i - 1;
    next[static_cast<size_t>(i)] = i + 1 < n ? i + 1 : -1;
  }
  struct Cand { int32_t rank; int pos; int32_t left, right, merged; };
  auto worse = [](const Cand& x, const Cand& y) { return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos; };
  std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
  auto push = [&](int i) {
    if (i < 0) return;
    int j = next[static_cast<size_t>(i)];
    if (j < 0) return;
    int32_t rank, merged;
    if (find_merge(syms[static_cast<size_t>(i)], syms[static_cast<size_t>(j)], rank, merged))
      heap.push(Cand{rank, i, syms[static_cast<size_t>(i)], syms[static_cast<size_t>(j)], merged});
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    const auto i = static_cast<size_t>(c.pos);
    if (!alive[i] || syms[i] != c.left) continue;
    int j = next[i];
    if (j < 0 || syms[static_cast<size_t>(j)] != c.right) continue;  // stale candidate
    syms[i] = c.merged;
    alive[static_cast<size_t>(j)] = 0;
    next[i] = next[static_cast<size_t>(j)];
    if (next[i] >= 0) prev[static_cast<size_t>(next[i])] = c.pos;
    push(prev[i]);
    push(c.pos);
  }
  size_t k = 0;
  for (int i = 0; i >= 0 && i < n; i = next[static_cast<size_t>(i)]) syms[k++] = syms[static_cast<size_t>(i)];
  syms.resize(k);
}

void BpeModel::encode_piece(std::string_view piece, std::vector<int32_t>& out, BpeScratch& s) const {
  if (piece.empty()) return;
  if (piece.size() == 1) {
    out.push_back(byte_ids_[static_cast<unsigned char>(piece[0])]);
    return;
  }
  if (ignore_merges_) {  // a piece that is a vocabulary token is emitted whole
    int32_t id = vocab_.find(piece);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  constexpr size_t kMaxCachedBytes = 128;
  CacheShard* shard = nullptr;
  if (piece.size() <= kMaxCachedBytes) {
    s.key.assign(piece.data(), piece.size());
    shard = &cache_[hash_bytes(piece) % kShards];
    std::lock_guard<std::mutex> lock(shard->mu);
    auto it = shard->map.find(s.key);
    if (it != shard->map.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  s.syms.resize(piece.size());
  for (size_t i = 0; i < piece.size(); ++i) s.syms[i] = byte_ids_[static_cast<unsigned char>(piece[i])];
  if (s.syms.size() <= 48)
    merge_small(s);
  else
    merge_large(s);
  out.insert(out.end(), s.syms.begin(), s.syms.end());
  if (shard) {
    std::lock_guard<std::mutex> lock(shard->mu);
    if (shard->map.size() >= kMaxPerShard) shard->map.clear();
    shard->map.emplace(s.key, s.syms);
  }
}

}  // namespace temper
