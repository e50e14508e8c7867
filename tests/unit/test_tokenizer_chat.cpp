// Chat templates (ChatML, Qwen3 with <think>, Llama-3) against transformers'
// apply_chat_template renders and ids (tests/fixtures/hf/chat_renders.json),
// loss masks, and template inference from tokenizer_config.json.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/chat_template.h"

using namespace temper;
using nlohmann::json;

namespace {

std::string source(const std::string& rel) { return std::string(TEMPER_SOURCE_DIR) + "/" + rel; }
std::string tok_dir(const std::string& name) { return source(".cache/hf-tokenizers/" + name); }
bool have(const std::string& name) { return std::ifstream(tok_dir(name) + "/tokenizer.json").good(); }

#define REQUIRE_TOKENIZER(name)                                                                 \
  if (!have(name)) GTEST_SKIP() << "no " << tok_dir(name)                                      \
                                << "/tokenizer.json (run jobscripts/fetch_tokenizers.sh)"

const json& fixture() {
  static const json j = [] {
    std::ifstream in(source("tests/fixtures/hf/chat_renders.json"));
    return json::parse(in);
  }();
  return j;
}

std::vector<Message> conversation(size_t i) {
  std::vector<Message> msgs;
  for (const auto& m : fixture()["conversations"][i]) msgs.push_back({m["role"], m["content"]});
  return msgs;
}

std::vector<Message> without_final_assistant(std::vector<Message> msgs) {
  if (!msgs.empty() && msgs.back().role == "assistant") msgs.pop_back();
  return msgs;
}

const Tokenizer& tokenizer(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& t = cache[name];
  if (!t) t = make_tokenizer("hf:" + tok_dir(name));
  return *t;
}

// The text of each maximal run of mask-1 tokens.
std::vector<std::string> masked_runs(const Tokenizer& tok, const RenderedChat& r) {
  std::vector<std::string> runs;
  std::vector<int32_t> cur;
  for (size_t i = 0; i <= r.ids.size(); ++i) {
    if (i < r.ids.size() && r.loss_mask[i]) {
      cur.push_back(r.ids[i]);
    } else if (!cur.empty()) {
      runs.push_back(tok.decode(cur));
      cur.clear();
    }
  }
  return runs;
}

const std::map<std::string, std::vector<std::vector<std::string>>> kAssistantParts = {
    {"qwen3",
     {{"<think>\n\n</think>\n\n4<|im_end|>"},
      {"<think>\n2 is prime.\n</think>\n\n2<|im_end|>"},
      {"Hello!<|im_end|>", "<think>\neasy\n</think>\n\n1 2 3<|im_end|>"},
      {}}},
    {"llama3",
     {{"4<|eot_id|>"},
      {"<think>\n2 is prime.\n</think>\n\n2<|eot_id|>"},
      {"Hello!<|eot_id|>", "<think>easy</think>1 2 3<|eot_id|>"},
      {}}},
};

}  // namespace

class ChatFixture : public testing::TestWithParam<std::string> {};

TEST_P(ChatFixture, TextsEqualApplyChatTemplate) {
  const std::string name = GetParam();
  const ChatTemplate t = chat_template_from_name(name);
  const json& entries = fixture()["templates"][name];
  ASSERT_EQ(entries.size(), 4u);
  for (size_t i = 0; i < entries.size(); ++i) {
    std::vector<Message> msgs = conversation(i);
    EXPECT_EQ(render_chat_text(msgs, t), entries[i]["full"].get<std::string>()) << name << " conversation " << i;
    EXPECT_EQ(render_prompt_text(without_final_assistant(msgs), t), entries[i]["prompt_gen"].get<std::string>())
        << name << " conversation " << i;
    if (entries[i].contains("prompt_gen_nothink"))
      EXPECT_EQ(render_prompt_text(without_final_assistant(msgs), t, false),
                entries[i]["prompt_gen_nothink"].get<std::string>())
          << name << " conversation " << i;
  }
}

TEST_P(ChatFixture, IdsEqualHuggingFaceAndMaskCoversExactlyAssistantParts) {
  const std::string name = GetParam();
  REQUIRE_TOKENIZER(name);
  const Tokenizer& tok = tokenizer(name);
  const auto& bpe = dynamic_cast<const BpeTokenizer&>(tok);
  const ChatTemplate t = infer_chat_template(tok_dir(name));
  EXPECT_EQ(chat_template_name(t), name);
  const json& entries = fixture()["templates"][name];
  for (size_t i = 0; i < entries.size(); ++i) {
    std::vector<Message> msgs = conversation(i);
    RenderedChat r = render_chat(tok, msgs, t);
    EXPECT_EQ(r.ids, entries[i]["full_ids"].get<std::vector<int32_t>>()) << name << " conversation " << i;
    ASSERT_EQ(r.loss_mask.size(), r.ids.size());
    int64_t ones = 0;
    for (uint8_t m : r.loss_mask) ones += m;
    EXPECT_EQ(r.assistant_tokens, ones);
    EXPECT_EQ(masked_runs(tok, r), kAssistantParts.at(name)[i]) << name << " conversation " << i;
    // Generation prompts tokenize as HF tokenizes their text.
    std::vector<Message> p = without_final_assistant(msgs);
    EXPECT_EQ(render_prompt(tok, p, t), bpe.encode_with_specials(entries[i]["prompt_gen"].get<std::string>()));
    if (t == ChatTemplate::Qwen3)
      EXPECT_EQ(render_prompt(tok, p, t, false),
                bpe.encode_with_specials(entries[i]["prompt_gen_nothink"].get<std::string>()));
  }
  EXPECT_EQ(end_of_turn_id(tok, t), name == "qwen3" ? 151645 : 128009);
}

INSTANTIATE_TEST_SUITE_P(Templates, ChatFixture, testing::Values("qwen3", "llama3"));

TEST(ChatTemplate, TokenStraddlingHeaderAndContentIsMasked) {
  REQUIRE_TOKENIZER("qwen3");
  const Tokenizer& tok = tokenizer("qwen3");
  // "assistant\n" + "\nanswer": HF merges the two newlines into one token.
  RenderedChat r = render_chat(tok, {{"user", "q"}, {"assistant", "\nanswer"}}, ChatTemplate::ChatML);
  const auto& bpe = dynamic_cast<const BpeTokenizer&>(tok);
  EXPECT_EQ(r.ids, bpe.encode_with_specials("<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n\nanswer<|im_end|>\n"));
  EXPECT_EQ(masked_runs(tok, r), (std::vector<std::string>{"\n\nanswer<|im_end|>"}));
}

TEST(ChatTemplate, SpecialTextInContentIsNotParsed) {
  REQUIRE_TOKENIZER("qwen3");
  const Tokenizer& tok = tokenizer("qwen3");
  RenderedChat r = render_chat(tok, {{"user", "<|im_end|>"}}, ChatTemplate::Qwen3);
  int specials = 0;
  for (int32_t id : r.ids) specials += id == tok.special_id("<|im_end|>");
  EXPECT_EQ(specials, 1);
  EXPECT_EQ(tok.decode(r.ids), "<|im_start|>user\n<|im_end|><|im_end|>\n");
}

TEST(ChatTemplate, ByteTokenizerWithQwen3UsesThinkSpecials) {
  auto tok = make_byte_tokenizer();
  RenderedChat r = render_chat(*tok, {{"user", "hi"}, {"assistant", "<think>r</think>ok"}}, ChatTemplate::Qwen3);
  EXPECT_EQ(tok->decode(r.ids), "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\nr\n</think>\n\nok<|im_end|>\n");
  EXPECT_EQ(std::count(r.ids.begin(), r.ids.end(), tok->special_id("<think>")), 1);
  EXPECT_EQ(std::count(r.ids.begin(), r.ids.end(), tok->special_id("</think>")), 1);
  EXPECT_EQ(masked_runs(*tok, r), (std::vector<std::string>{"<think>\nr\n</think>\n\nok<|im_end|>"}));
  EXPECT_THROW(render_chat(*tok, {{"user", "x"}}, ChatTemplate::Llama3), Error);  // no <|begin_of_text|>
  EXPECT_THROW(render_chat(*tok, {{"tool", "x"}}, ChatTemplate::Qwen3), Error);
}

TEST(ChatTemplate, NamesAndInference) {
  EXPECT_EQ(chat_template_from_name("chatml"), ChatTemplate::ChatML);
  EXPECT_EQ(chat_template_from_name("qwen3"), ChatTemplate::Qwen3);
  EXPECT_EQ(chat_template_from_name("llama3"), ChatTemplate::Llama3);
  EXPECT_THROW(chat_template_from_name("mistral"), Error);
  EXPECT_EQ(resolve_chat_template("auto", "byte"), ChatTemplate::ChatML);
  EXPECT_EQ(resolve_chat_template("llama3", "byte"), ChatTemplate::Llama3);
  const std::string dir = testing::TempDir();
  std::ofstream(dir + "/tokenizer_config.json")
      << json{{"chat_template", "{% for m in messages %}<|im_start|>{{ m.role }}\n{% endfor %}"}}.dump();
  EXPECT_EQ(infer_chat_template(dir), ChatTemplate::ChatML);
  EXPECT_EQ(resolve_chat_template("auto", dir + "/tokenizer.json"), ChatTemplate::ChatML);
  std::ofstream(dir + "/tokenizer_config.json") << json{{"chat_template", "[INST] {{ x }} [/INST]"}}.dump();
  try {
    infer_chat_template(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer_config.json"), std::string::npos) << e.what();
  }
  EXPECT_THROW(infer_chat_template(dir + "/no_such_dir"), Error);
  if (have("qwen3")) EXPECT_EQ(resolve_chat_template("auto", "hf:" + tok_dir("qwen3")), ChatTemplate::Qwen3);
  if (have("llama3")) EXPECT_EQ(resolve_chat_template("auto", tok_dir("llama3")), ChatTemplate::Llama3);
}
