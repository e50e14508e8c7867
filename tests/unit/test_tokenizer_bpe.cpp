// BPE tokenizer from tokenizer.json against Hugging Face `tokenizers` ids
// (tests/fixtures/hf/tokenizer_ids.json) for Qwen3 and Llama-3; round trips,
// invalid UTF-8, NFC, streaming decode, and errors for bad files.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/unicode_nfc.h"

using namespace temper;
using nlohmann::json;

namespace {

std::string source(const std::string& rel) { return std::string(TEMPER_SOURCE_DIR) + "/" + rel; }

std::string tok_path(const std::string& name) { return source(".cache/hf-tokenizers/" + name + "/tokenizer.json"); }

bool have(const std::string& name) { return std::ifstream(tok_path(name)).good(); }

#define REQUIRE_TOKENIZER(name)                                                                   \
  if (!have(name)) GTEST_SKIP() << "no " << tok_path(name)                                       \
                                << " (run jobscripts/fetch_tokenizers.sh to fetch the tokenizer files)"

const json& fixture() {
  static const json j = [] {
    std::ifstream in(source("tests/fixtures/hf/tokenizer_ids.json"));
    return json::parse(in);
  }();
  return j;
}

const BpeTokenizer& tokenizer(const std::string& name) {
  static std::map<std::string, std::unique_ptr<BpeTokenizer>> cache;
  auto& t = cache[name];
  if (!t) t = make_bpe_tokenizer(tok_path(name));
  return *t;
}

std::vector<int32_t> ids_of(const json& j) { return j.get<std::vector<int32_t>>(); }

std::string write_temp(const std::string& name, const std::string& text) {
  std::string p = testing::TempDir() + "/" + name;
  std::ofstream(p) << text;
  return p;
}

}  // namespace

class HfFixture : public testing::TestWithParam<std::string> {};

TEST_P(HfFixture, EncodeMatchesHuggingFaceIdsForEveryString) {
  const std::string name = GetParam();
  REQUIRE_TOKENIZER(name);
  const BpeTokenizer& tok = tokenizer(name);
  const json& f = fixture();
  const json& e = f["tokenizers"][name];
  ASSERT_EQ(f["strings"].size(), 22u);
  for (size_t i = 0; i < f["strings"].size(); ++i) {
    const std::string s = f["strings"][i];
    EXPECT_EQ(tok.encode_with_specials(s), ids_of(e["plain"][i])) << name << " string " << i << ": " << s;
    EXPECT_EQ(tok.encode_with_specials(s, true), ids_of(e["with_special"][i])) << name << " string " << i;
  }
}

TEST_P(HfFixture, DecodeAndIdToTokenMatchHuggingFace) {
  const std::string name = GetParam();
  REQUIRE_TOKENIZER(name);
  const BpeTokenizer& tok = tokenizer(name);
  const json& e = fixture()["tokenizers"][name];
  for (size_t i = 0; i < e["plain"].size(); ++i)
    EXPECT_EQ(tok.decode(ids_of(e["plain"][i])), e["decoded"][i].get<std::string>()) << name << " string " << i;
  for (auto it = e["id_to_token"].begin(); it != e["id_to_token"].end(); ++it) {
    int32_t id = std::stoi(it.key());
    EXPECT_EQ(tok.id_to_token(id), it.value().get<std::string>()) << name << " id " << id;
    EXPECT_EQ(tok.token_to_id(it.value().get<std::string>()), id);
  }
}

TEST_P(HfFixture, PlainEncodeLeavesSpecialTextAsText) {
  const std::string name = GetParam();
  REQUIRE_TOKENIZER(name);
  const BpeTokenizer& tok = tokenizer(name);
  const json& f = fixture();
  for (size_t i = 0; i < f["strings"].size(); ++i) {
    const std::string s = f["strings"][i];
    std::vector<int32_t> ids = tok.encode(s);
    for (int32_t id : ids) EXPECT_FALSE(tok.is_special(id)) << name << " string " << i;
    EXPECT_EQ(tok.decode(ids), s);
    if (s.find("<|") == std::string::npos) EXPECT_EQ(ids, ids_of(f["tokenizers"][name]["plain"][i]));
  }
  const std::string end = name == "qwen3" ? "<|im_end|>" : "<|eot_id|>";
  EXPECT_EQ(tok.encode_with_specials("a" + end), (std::vector<int32_t>{tok.encode("a")[0], tok.special_id(end)}));
  EXPECT_GT(tok.encode("a" + end).size(), 2u);
}

TEST_P(HfFixture, RoundTripsVariedTextAndInvalidBytes) {
  const std::string name = GetParam();
  REQUIRE_TOKENIZER(name);
  const BpeTokenizer& tok = tokenizer(name);
  std::mt19937 rng(7);
  const std::vector<std::string> pieces = {"the", " quick", "\n", "\t", "  ", "123", "é", "日本", "😀", "🇫🇷",
                                           "'s", "<|", "|>", "\r\n", "ß", "x", "\xff", "\xc3", "\x80", "\xe2\x82"};
  for (int trial = 0; trial < 200; ++trial) {
    std::string s;
    int n = static_cast<int>(rng() % 30);
    for (int k = 0; k < n; ++k) s += pieces[rng() % pieces.size()];
    std::vector<int32_t> ids = tok.encode(s);
    ASSERT_EQ(tok.decode(ids), s) << "trial " << trial;
  }
  std::string bytes;
  for (int b = 0; b < 256; ++b) bytes.push_back(static_cast<char>(b));
  EXPECT_EQ(tok.decode(tok.encode(bytes)), bytes);
  // An invalid byte becomes its own byte token and splits the text around it.
  std::vector<int32_t> ids = tok.encode("ab\xff" "cd");
  std::vector<int32_t> a = tok.encode("ab"), c = tok.encode("cd");
  std::vector<int32_t> expect = a;
  expect.push_back(tok.token_to_id(tok.id_to_token(ids[a.size()])));
  expect.insert(expect.end(), c.begin(), c.end());
  EXPECT_EQ(ids, expect);
  EXPECT_EQ(tok.decode({ids[a.size()]}), "\xff");
}

TEST_P(HfFixture, StreamingDecodeHoldsBackSplitCharacters) {
  const std::string name = GetParam();
  REQUIRE_TOKENIZER(name);
  const BpeTokenizer& tok = tokenizer(name);
  const std::string text = "ok 😀🎉 family: 👨‍👩‍👧 日本語 done";
  std::vector<int32_t> ids = tok.encode(text);
  StreamDecoder sd(tok);
  std::string out;
  bool held_some = false;
  for (int32_t id : ids) {
    std::string piece = sd.push(id);
    held_some |= sd.pending_bytes() > 0;
    // Every emitted chunk is complete UTF-8 on its own.
    for (size_t i = 0; i < piece.size();) {
      auto c = static_cast<unsigned char>(piece[i]);
      int len = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
      ASSERT_LE(i + len, piece.size()) << "chunk ends inside a character";
      i += static_cast<size_t>(len);
    }
    out += piece;
  }
  out += sd.flush();
  EXPECT_EQ(out, text);
  EXPECT_TRUE(held_some) << "expected at least one emoji split over byte tokens";
  StreamDecoder sd2(tok);
  std::string partial = sd2.push(tok.token_to_id(tok.id_to_token(tok.encode("\xf0")[0])));
  EXPECT_EQ(partial, "");
  EXPECT_EQ(sd2.flush(), "\xf0");
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, HfFixture, testing::Values("qwen3", "llama3"));

TEST(BpeTokenizer, QwenNormalizesToNfcLlamaDoesNot) {
  REQUIRE_TOKENIZER("qwen3");
  REQUIRE_TOKENIZER("llama3");
  const BpeTokenizer& q = tokenizer("qwen3");
  const BpeTokenizer& l = tokenizer("llama3");
  EXPECT_TRUE(q.normalizes_nfc());
  EXPECT_FALSE(l.normalizes_nfc());
  EXPECT_EQ(q.encode("cafe\xcc\x81"), q.encode("caf\xc3\xa9"));
  EXPECT_NE(l.encode("cafe\xcc\x81"), l.encode("caf\xc3\xa9"));
  EXPECT_EQ(l.decode(l.encode("cafe\xcc\x81")), "cafe\xcc\x81");
}

TEST(BpeTokenizer, SpecialTokensAndVocabSize) {
  REQUIRE_TOKENIZER("qwen3");
  const BpeTokenizer& q = tokenizer("qwen3");
  EXPECT_EQ(q.vocab_size(), 151669);
  EXPECT_EQ(q.special_id("<|im_start|>"), 151644);
  EXPECT_EQ(q.special_id("<|im_end|>"), 151645);
  EXPECT_EQ(q.special_id("<think>"), 151667);
  EXPECT_TRUE(q.is_special(151645));
  EXPECT_FALSE(q.is_special(151667));  // <think> is an added, non-special token
  EXPECT_EQ(q.encode("<think>x</think>").front(), 151667);  // ... so plain encode parses it, as HF does
  EXPECT_EQ(padding_id(q), 151643);                          // no <|pad|>: <|endoftext|>
  EXPECT_EQ(q.decode({151644, 872, 151645}, true), "user");
  try {
    q.special_id("<|no_such|>");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'<|no_such|>'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(q.decode({q.vocab_size()}), Error);
  if (have("llama3")) EXPECT_EQ(padding_id(tokenizer("llama3")), 128001);  // <|end_of_text|>
  EXPECT_THROW(q.decode({-1}), Error);
}

TEST(BpeTokenizer, ConcurrentEncodesAgree) {
  REQUIRE_TOKENIZER("llama3");
  const BpeTokenizer& l = tokenizer("llama3");
  const std::string text = "Concurrent encoders share the cache; 12345 words, 日本語, and more text.\n";
  std::string big;
  for (int i = 0; i < 200; ++i) big += std::to_string(i) + text;
  std::vector<int32_t> expect = l.encode(big);
  std::vector<std::vector<int32_t>> got(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([&, t] { got[static_cast<size_t>(t)] = l.encode(big); });
  for (auto& th : threads) th.join();
  for (const auto& g : got) EXPECT_EQ(g, expect);
}

TEST(Nfc, ComposesReordersAndDecomposesSingletons) {
  NfcNormalizer n;
  auto nfc = [&](const std::string& s) {
    std::string out;
    n.normalize(s, out);
    return out;
  };
  EXPECT_EQ(nfc("e\xcc\x81"), "\xc3\xa9");                          // e + U+0301 -> é
  EXPECT_EQ(nfc("\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8"), "\xea\xb0\x81");  // Hangul L V T -> U+AC01
  EXPECT_EQ(nfc("a\xcc\x82\xcc\xa3"), "\xe1\xba\xad");              // a + 0302 + 0323 -> U+1EAD (reordered)
  EXPECT_EQ(nfc("\xe2\x84\xab"), "\xc3\x85");                       // U+212B -> U+00C5
  EXPECT_EQ(nfc("\xcd\x84"), "\xcc\x88\xcc\x81");                   // U+0344 -> 0308 0301
  EXPECT_EQ(nfc("e\xcc\x81\xcc\x81"), "\xc3\xa9\xcc\x81");          // second acute is blocked
  EXPECT_EQ(nfc("\xe0\xa4\x95\xe0\xa4\xbc"), "\xe0\xa4\x95\xe0\xa4\xbc");  // composition exclusion
  EXPECT_FALSE(n.may_change("plain ASCII and caf\xc3\xa9 and \xe6\x97\xa5\xe6\x9c\xac"));
  EXPECT_TRUE(n.may_change("e\xcc\x81"));
}

// ---- bad files -----------------------------------------------------------------

namespace {

json minimal_tokenizer_json() {
  // All 256 byte tokens (GPT-2 alphabet) plus "ab", with the merge "a b".
  json vocab = json::object();
  int next = 256, id = 0;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    uint32_t cp = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(next++);
    std::string s;
    if (cp < 0x80) {
      s.push_back(static_cast<char>(cp));
    } else {
      s.push_back(static_cast<char>(0xc0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
    vocab[s] = id++;
  }
  vocab["ab"] = id++;
  json j;
  j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({"a b"})}};
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  j["added_tokens"] = json::array({{{"id", id}, {"content", "<|end|>"}, {"special", true}}});
  j["decoder"] = {{"type", "ByteLevel"}};
  return j;
}

void expect_error(const json& j, const std::string& file, const std::vector<std::string>& needles) {
  std::string p = write_temp(file, j.dump());
  try {
    make_bpe_tokenizer(p);
    FAIL() << "expected an error for " << file;
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(p), std::string::npos) << msg;
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

}  // namespace

TEST(BpeTokenizerFile, MinimalFileWorksWithArrayOrStringMerges) {
  json j = minimal_tokenizer_json();
  auto t1 = make_bpe_tokenizer(write_temp("min1.json", j.dump()));
  EXPECT_EQ(t1->encode("ab"), (std::vector<int32_t>{256}));
  EXPECT_EQ(t1->encode("abc"), (std::vector<int32_t>{256, 'c'}));
  EXPECT_EQ(t1->encode_with_specials("ab<|end|>"), (std::vector<int32_t>{256, 257}));
  j["model"]["merges"] = json::array({json::array({"a", "b"})});
  auto t2 = make_bpe_tokenizer(write_temp("min2.json", j.dump()));
  EXPECT_EQ(t2->encode("xab"), t1->encode("xab"));
  EXPECT_EQ(t2->vocab_size(), 258);
}

TEST(BpeTokenizerFile, ErrorsNameTheFileAndKey) {
  EXPECT_THROW(make_bpe_tokenizer(testing::TempDir() + "/does_not_exist.json"), Error);
  {
    std::string p = write_temp("broken.json", "{ \"model\": ");
    EXPECT_THROW(make_bpe_tokenizer(p), Error);
  }
  json j = minimal_tokenizer_json();
  json no_model = j;
  no_model.erase("model");
  expect_error(no_model, "no_model.json", {"\"model\""});
  json wp = j;
  wp["model"]["type"] = "WordPiece";
  expect_error(wp, "wordpiece.json", {"model.type", "WordPiece"});
  json no_vocab = j;
  no_vocab["model"].erase("vocab");
  expect_error(no_vocab, "no_vocab.json", {"model.vocab"});
  json bad_merge = j;
  bad_merge["model"]["merges"] = json::array({"a zz"});
  expect_error(bad_merge, "bad_merge.json", {"model.merges[0]", "zz"});
  json bad_pre = j;
  bad_pre["pre_tokenizer"] = {{"type", "Whitespace"}};
  expect_error(bad_pre, "bad_pre.json", {"pre_tokenizer", "Whitespace"});
  json bad_regex = j;
  bad_regex["pre_tokenizer"] = {{"type", "Sequence"},
                                {"pretokenizers", json::array({{{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}},
                                                               {{"type", "ByteLevel"}, {"use_regex", false}}})}};
  expect_error(bad_regex, "bad_regex.json", {"pre_tokenizer.pretokenizers[0]", "regex"});
  json bad_norm = j;
  bad_norm["normalizer"] = {{"type", "Lowercase"}};
  expect_error(bad_norm, "bad_norm.json", {"normalizer", "Lowercase"});
  json bad_added = j;
  bad_added["added_tokens"][0].erase("content");
  expect_error(bad_added, "bad_added.json", {"added_tokens[0]", "content"});
  EXPECT_THROW(make_tokenizer_from_dir(testing::TempDir() + "/no_such_dir"), Error);
  EXPECT_EQ(make_tokenizer("byte")->name(), "byte");
}
