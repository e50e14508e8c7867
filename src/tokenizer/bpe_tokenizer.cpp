// Byte-level BPE tokenizer from tokenizer.json (see bpe_tokenizer.h).
#include "tokenizer/bpe_tokenizer.h"

#include <algorithm>
#include <fstream>
#include <functional>
#include <sstream>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/byte_unicode.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/unicode_nfc.h"

namespace temper {

// Added tokens grouped by first byte, longest first, so the first hit at a
// position is the longest match there (leftmost-longest overall).
struct BpeTokenizer::MatchTable {
  std::vector<std::vector<int>> by_first = std::vector<std::vector<int>>(256);
  bool any = false;
};

struct BpeTokenizer::Context {
  std::unique_ptr<PreTokenizer::Scratch, void (*)(PreTokenizer::Scratch*)> pre{nullptr, nullptr};
  std::vector<std::pair<uint32_t, uint32_t>> pieces;
  BpeScratch bpe;
  std::string normalized, prefixed;
};

namespace {

bool is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_word(unsigned char c) { return c >= 0x80 || c == '_' || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'); }

bool file_exists(const std::string& p) {
  struct stat st{};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
bool dir_exists(const std::string& p) {
  struct stat st{};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void check_normalizer(const nlohmann::json& n, const std::string& where, bool& nfc) {
  if (n.is_null()) return;
  if (!n.is_object() || !n.contains("type")) fail(where, " has no \"type\"");
  const std::string type = n["type"].is_string() ? n["type"].get<std::string>() : n["type"].dump();
  if (type == "NFC") {
    nfc = true;
  } else if (type == "Sequence" && n.contains("normalizers") && n["normalizers"].is_array()) {
    for (size_t i = 0; i < n["normalizers"].size(); ++i)
      check_normalizer(n["normalizers"][i], where + ".normalizers[" + std::to_string(i) + "]", nfc);
  } else {
    fail(where, ": normalizer type '", type, "' is not supported (NFC or none)");
  }
}

}  // namespace

BpeTokenizer::BpeTokenizer(const std::string& path) : path_(path) { load(path); }
BpeTokenizer::~BpeTokenizer() = default;

void BpeTokenizer::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read tokenizer file '", path, "'");
  std::stringstream buf;
  buf << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(buf.str());
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": not valid JSON: ", e.what());
  }
  if (!j.is_object()) fail(path, ": the top level is not a JSON object");
  if (!j.contains("model")) fail(path, ": missing key \"model\"");
  model_ = std::make_unique<BpeModel>(j["model"], path);
  if (!j.contains("pre_tokenizer")) fail(path, ": missing key \"pre_tokenizer\"");
  pre_ = std::make_unique<PreTokenizer>(j["pre_tokenizer"], path);
  bool nfc = false;
  if (j.contains("normalizer")) check_normalizer(j["normalizer"], path + ": normalizer", nfc);
  if (nfc) nfc_ = std::make_unique<NfcNormalizer>();
  if (j.contains("decoder") && !j["decoder"].is_null()) {
    const nlohmann::json& d = j["decoder"];
    if (!d.is_object() || d.value("type", std::string()) != "ByteLevel")
      fail(path, ": decoder ", d.dump(), " is not supported (ByteLevel only)");
  }

  vocab_size_ = model_->size();
  if (j.contains("added_tokens")) {
    const nlohmann::json& at = j["added_tokens"];
    if (!at.is_array()) fail(path, ": \"added_tokens\" is not an array");
    for (size_t i = 0; i < at.size(); ++i) {
      const nlohmann::json& t = at[i];
      const std::string where = path + ": added_tokens[" + std::to_string(i) + "]";
      if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer())
        fail(where, " has no integer \"id\"");
      if (!t.contains("content") || !t["content"].is_string() || t["content"].get<std::string>().empty())
        fail(where, " has no \"content\" string");
      AddedToken a;
      a.content = t["content"];
      a.id = t["id"].get<int32_t>();
      if (a.id < 0) fail(where, ".id = ", a.id, " is negative");
      a.special = t.value("special", false);
      a.lstrip = t.value("lstrip", false);
      a.rstrip = t.value("rstrip", false);
      a.single_word = t.value("single_word", false);
      added_by_content_[a.content] = a.id;
      vocab_size_ = std::max(vocab_size_, a.id + 1);
      added_.push_back(std::move(a));
    }
  }
  added_index_.assign(static_cast<size_t>(vocab_size_), -1);
  for (size_t i = 0; i < added_.size(); ++i) added_index_[static_cast<size_t>(added_[i].id)] = static_cast<int32_t>(i);

  match_all_ = std::make_unique<MatchTable>();
  match_plain_ = std::make_unique<MatchTable>();
  std::vector<int> order(added_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return added_[a].content.size() > added_[b].content.size(); });
  for (int i : order) {
    auto first = static_cast<unsigned char>(added_[static_cast<size_t>(i)].content[0]);
    match_all_->by_first[first].push_back(i);
    match_all_->any = true;
    if (!added_[static_cast<size_t>(i)].special) {
      match_plain_->by_first[first].push_back(i);
      match_plain_->any = true;
    }
  }

  // Post-processor: the template around one sequence, for add_special_tokens.
  std::function<void(const nlohmann::json&)> post = [&](const nlohmann::json& p) {
    if (p.is_null()) return;
    const std::string type = p.value("type", std::string());
    if (type == "ByteLevel") return;
    if (type == "Sequence" && p.contains("processors")) {
      for (const auto& q : p["processors"]) post(q);
      return;
    }
    if (type == "TemplateProcessing" && p.contains("single") && p["single"].is_array()) {
      bool after = false;
      for (const auto& item : p["single"]) {
        if (item.contains("Sequence")) {
          after = true;
        } else if (item.contains("SpecialToken")) {
          std::string name = item["SpecialToken"].value("id", std::string());
          const auto& st = p.value("special_tokens", nlohmann::json::object());
          if (!st.contains(name) || !st[name].contains("ids"))
            fail(path, ": post_processor.special_tokens has no ids for '", name, "'");
          for (const auto& id : st[name]["ids"]) (after ? post_suffix_ : post_prefix_).push_back(id.get<int32_t>());
        }
      }
      return;
    }
    post_unsupported_ = "post_processor type '" + type + "' is not supported";
  };
  if (j.contains("post_processor")) post(j["post_processor"]);
}

int BpeTokenizer::vocab_size() const { return vocab_size_; }

std::unique_ptr<BpeTokenizer::Context> BpeTokenizer::acquire() const {
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    if (!pool_.empty()) {
      std::unique_ptr<Context> c = std::move(pool_.back());
      pool_.pop_back();
      return c;
    }
  }
  auto c = std::make_unique<Context>();
  c->pre = pre_->new_scratch();
  return c;
}

void BpeTokenizer::release(std::unique_ptr<Context> ctx) const {
  std::lock_guard<std::mutex> lock(pool_mu_);
  if (pool_.size() < 64) pool_.push_back(std::move(ctx));
}

void BpeTokenizer::encode_valid(std::string_view text, bool first_in_segment, std::vector<int32_t>& out,
                                Context& ctx) const {
  if (nfc_ && nfc_->may_change(text)) {
    nfc_->normalize(text, ctx.normalized);
    text = ctx.normalized;
  }
  if (first_in_segment && pre_->add_prefix_space() && !text.empty() && text[0] != ' ') {
    ctx.prefixed.assign(1, ' ');
    ctx.prefixed.append(text.data(), text.size());
    text = ctx.prefixed;
  }
  TEMPER_CHECK(text.size() < (1ull << 32), "tokenizer ", path_, ": cannot encode a single text run of ", text.size(),
               " bytes (the limit is 4 GiB)");
  pre_->split(text, ctx.pieces, *ctx.pre);
  for (const auto& p : ctx.pieces) model_->encode_piece(text.substr(p.first, p.second - p.first), out, ctx.bpe);
}

void BpeTokenizer::encode_segment(std::string_view seg, std::vector<int32_t>& out, Context& ctx) const {
  // Valid UTF-8 runs go through normalizer, pre-tokenizer and BPE; each invalid
  // byte is emitted as its single-byte token.
  size_t run = 0, i = 0;
  const size_t n = seg.size();
  while (i < n) {
    auto c = static_cast<unsigned char>(seg[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len = utf8_sequence_length(seg, i);
    if (len > 0) {
      i += static_cast<size_t>(len);
      continue;
    }
    if (i > run) encode_valid(seg.substr(run, i - run), run == 0, out, ctx);
    out.push_back(model_->byte_id(c));
    run = ++i;
  }
  if (n > run) encode_valid(seg.substr(run), run == 0, out, ctx);
}

void BpeTokenizer::encode_into(std::string_view text, bool parse_specials, std::vector<int32_t>& out) const {
  std::unique_ptr<Context> ctx = acquire();
  const MatchTable& mt = parse_specials ? *match_all_ : *match_plain_;
  size_t seg_start = 0;
  const size_t n = text.size();
  if (mt.any) {
    for (size_t i = 0; i < n;) {
      const std::vector<int>& cands = mt.by_first[static_cast<unsigned char>(text[i])];
      const AddedToken* hit = nullptr;
      for (int k : cands) {
        const AddedToken& a = added_[static_cast<size_t>(k)];
        if (text.compare(i, a.content.size(), a.content) != 0) continue;
        if (a.single_word) {
          bool before_ok = i == 0 || !is_word(static_cast<unsigned char>(text[i - 1]));
          size_t e = i + a.content.size();
          bool after_ok = e >= n || !is_word(static_cast<unsigned char>(text[e]));
          if (!before_ok || !after_ok) continue;
        }
        hit = &a;
        break;
      }
      if (!hit) {
        ++i;
        continue;
      }
      size_t seg_end = i, next = i + hit->content.size();
      if (hit->lstrip)
        while (seg_end > seg_start && is_space(static_cast<unsigned char>(text[seg_end - 1]))) --seg_end;
      if (hit->rstrip)
        while (next < n && is_space(static_cast<unsigned char>(text[next]))) ++next;
      if (seg_end > seg_start) encode_segment(text.substr(seg_start, seg_end - seg_start), out, *ctx);
      out.push_back(hit->id);
      i = seg_start = next;
    }
  }
  if (n > seg_start) encode_segment(text.substr(seg_start), out, *ctx);
  release(std::move(ctx));
}

std::vector<int32_t> BpeTokenizer::encode(const std::string& text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  encode_into(text, false, ids);
  return ids;
}

std::vector<int32_t> BpeTokenizer::encode_with_specials(const std::string& text, bool add_special_tokens) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special_tokens) {
    TEMPER_CHECK(post_unsupported_.empty(), path_, ": cannot add special tokens: ", post_unsupported_);
    ids = post_prefix_;
  }
  encode_into(text, true, ids);
  if (add_special_tokens) ids.insert(ids.end(), post_suffix_.begin(), post_suffix_.end());
  return ids;
}

void BpeTokenizer::append_token_bytes(int32_t id, std::string& out) const {
  if (id >= 0 && id < vocab_size_) {
    int32_t a = added_index_[static_cast<size_t>(id)];
    if (a >= 0) {
      out += added_[static_cast<size_t>(a)].content;
      return;
    }
    if (model_->has_id(id)) {
      out += model_->bytes_of(id);
      return;
    }
  }
  fail("tokenizer ", path_, ": cannot decode token id ", id, " (not in the vocabulary of ", vocab_size_, " ids)");
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const { return decode(ids, false); }

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::string out;
  out.reserve(ids.size() * 4);
  for (int32_t id : ids) {
    if (skip_special_tokens && is_special(id)) continue;
    append_token_bytes(id, out);
  }
  return out;
}

int32_t BpeTokenizer::special_id(const std::string& name) const {
  auto it = added_by_content_.find(name);
  if (it != added_by_content_.end()) return it->second;
  std::string known;
  for (size_t i = 0; i < added_.size() && i < 8; ++i) known += (i ? ", " : "") + added_[i].content;
  if (added_.size() > 8) known += ", ...";
  fail("tokenizer ", path_, " has no special token '", name, "' (its added tokens: ",
       known.empty() ? std::string("none") : known, ")");
}

bool BpeTokenizer::is_special(int32_t id) const {
  if (id < 0 || id >= vocab_size_) return false;
  int32_t a = added_index_[static_cast<size_t>(id)];
  return a >= 0 && added_[static_cast<size_t>(a)].special;
}

std::string BpeTokenizer::name() const { return "bpe:" + path_; }

std::string BpeTokenizer::id_to_token(int32_t id) const {
  if (id >= 0 && id < vocab_size_ && added_index_[static_cast<size_t>(id)] >= 0)
    return added_[static_cast<size_t>(added_index_[static_cast<size_t>(id)])].content;
  TEMPER_CHECK(model_->has_id(id), "tokenizer ", path_, ": no token with id ", id);
  return bytes_to_byte_level(model_->bytes_of(id));
}

int32_t BpeTokenizer::token_to_id(const std::string& token) const {
  auto it = added_by_content_.find(token);
  if (it != added_by_content_.end()) return it->second;
  std::string bytes;
  if (!byte_level_to_bytes(token, bytes)) return -1;
  return model_->token_id(bytes);
}

std::unique_ptr<BpeTokenizer> make_bpe_tokenizer(const std::string& path) {
  return std::make_unique<BpeTokenizer>(path);
}

std::unique_ptr<Tokenizer> make_tokenizer_from_dir(const std::string& dir) {
  std::string path = dir + "/tokenizer.json";
  if (!dir_exists(dir)) fail("tokenizer directory '", dir, "' does not exist");
  if (!file_exists(path)) fail("tokenizer directory '", dir, "' has no tokenizer.json");
  return make_bpe_tokenizer(path);
}

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& spec) {
  if (spec == "byte") return make_byte_tokenizer();
  std::string p = spec.rfind("hf:", 0) == 0 ? spec.substr(3) : spec;
  if (dir_exists(p)) return make_tokenizer_from_dir(p);
  if (file_exists(p)) return make_bpe_tokenizer(p);
  fail("tokenizer '", spec, "': expected 'byte', 'hf:DIR', a directory holding tokenizer.json or a tokenizer.json path");
}

}  // namespace temper
