// The BPE model of a tokenizer.json: vocabulary (stored as raw bytes, not the
// byte-level characters), merges by rank, and the merge loop with a cache of
// results per pre-token piece. Thread-safe: encode_piece may be called from
// several threads (the cache is sharded behind mutexes).
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace temper {

// Open-addressing hash table from byte strings to ids (keys kept in one arena);
// lookups take a string_view and allocate nothing.
class ByteStringTable {
 public:
  void reserve(size_t n);
  bool insert(std::string_view key, int32_t id);   // false when the key is already present
  int32_t find(std::string_view key) const;        // -1 when absent
  size_t size() const { return count_; }

 private:
  struct Slot { uint64_t hash = 0; uint32_t offset = 0, length = 0; int32_t id = -1; };
  void grow();
  std::vector<Slot> slots_;
  std::string arena_;
  size_t count_ = 0;
};

// Per-call working memory of BpeModel::encode_piece (reused across pieces).
struct BpeScratch {
  std::vector<int32_t> syms, merged;
  std::vector<int32_t> ranks;
  std::string key;
};

class BpeModel {
 public:
  // `model` is tokenizer.json's "model" object; `file` names the file in errors.
  BpeModel(const nlohmann::json& model, const std::string& file);
  ~BpeModel();

  // Appends the ids of one pre-token piece (raw bytes).
  void encode_piece(std::string_view piece, std::vector<int32_t>& out, BpeScratch& scratch) const;
  int32_t byte_id(unsigned char b) const { return byte_ids_[b]; }
  int32_t token_id(std::string_view bytes) const { return vocab_.find(bytes); }
  // Largest vocabulary id + 1.
  int32_t size() const { return static_cast<int32_t>(id_bytes_.size()); }
  // Raw bytes of a vocabulary id ("" for ids without an entry).
  const std::string& bytes_of(int32_t id) const { return id_bytes_[static_cast<size_t>(id)]; }
  bool has_id(int32_t id) const { return id >= 0 && id < size() && has_id_[static_cast<size_t>(id)]; }
  size_t num_merges() const { return num_merges_; }

 private:
  struct MergeSlot { uint64_t key = ~0ull; int32_t rank = -1, merged = -1; };
  bool find_merge(int32_t a, int32_t b, int32_t& rank, int32_t& merged) const;
  void merge_small(BpeScratch& s) const;   // O(n^2), short pieces
  void merge_large(BpeScratch& s) const;   // heap over a linked list, long pieces

  ByteStringTable vocab_;
  std::vector<std::string> id_bytes_;
  std::vector<uint8_t> has_id_;
  int32_t byte_ids_[256];
  std::vector<MergeSlot> merges_;   // open addressing on (a, b)
  size_t num_merges_ = 0;
  bool ignore_merges_ = false;

  struct CacheShard {
    std::mutex mu;
    std::unordered_map<std::string, std::vector<int32_t>> map;
  };
  static constexpr int kShards = 16;
  static constexpr size_t kMaxPerShard = 1 << 15;
  mutable std::unique_ptr<CacheShard[]> cache_;
};

}  // namespace temper
