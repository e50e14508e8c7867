// Byte tokenizer and ChatML template: round trips, specials, loss masks.
#include <gtest/gtest.h>

#include "core/error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

using namespace temper;

TEST(ByteTokenizer, RoundTripsAnyBytesIncludingInvalidUtf8) {
  auto tok = make_byte_tokenizer();
  std::string text = "h\xc3\xa9llo \xff\xfe\x80 <|im_end|>";
  text.push_back('\0');
  text += "\xc3";  // truncated UTF-8 sequence
  auto ids = tok->encode(text);
  ASSERT_EQ(ids.size(), text.size());
  EXPECT_EQ(ids[1], 0xc3);
  EXPECT_EQ(ids[7], 0xff);
  for (int32_t id : ids) EXPECT_FALSE(tok->is_special(id));  // special text is not parsed
  EXPECT_EQ(tok->decode(ids), text);
}

TEST(ByteTokenizer, SpecialsHaveFixedIdsAndDecodeToTheirText) {
  auto tok = make_byte_tokenizer();
  EXPECT_EQ(tok->vocab_size(), 262);
  EXPECT_EQ(tok->special_id("<|endoftext|>"), 256);
  EXPECT_EQ(tok->special_id("<|im_start|>"), 257);
  EXPECT_EQ(tok->special_id("<|im_end|>"), 258);
  EXPECT_EQ(tok->special_id("<think>"), 259);
  EXPECT_EQ(tok->special_id("</think>"), 260);
  EXPECT_EQ(tok->special_id("<|pad|>"), 261);
  EXPECT_EQ(padding_id(*tok), 261);
  EXPECT_TRUE(tok->is_special(258));
  EXPECT_FALSE(tok->is_special(255));
  EXPECT_FALSE(tok->is_special(262));
  EXPECT_THROW(tok->special_id("<|nope|>"), Error);
  std::vector<int32_t> ids = {257, 'h', 'i', 258, 0xff};
  EXPECT_EQ(tok->decode(ids), "<|im_start|>hi<|im_end|>\xff");
  EXPECT_THROW(tok->decode({262}), Error);
  EXPECT_THROW(tok->decode({-1}), Error);
  EXPECT_EQ(tok->name(), "byte");
}

TEST(ChatTemplate, ChatMLTextAndMaskExactlyOnAssistantContentAndImEnd) {
  auto tok = make_byte_tokenizer();
  std::vector<Message> msgs = {{"system", "S"}, {"user", "hi"}, {"assistant", "yo!"}, {"user", "q"}, {"assistant", "ok"}};
  RenderedChat r = render_chat(*tok, msgs);
  ASSERT_EQ(r.ids.size(), r.loss_mask.size());
  EXPECT_EQ(tok->decode(r.ids),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo!<|im_end|>\n"
            "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\nok<|im_end|>\n");
  // Rebuild the expected mask from the decoded pieces.
  std::string masked;
  for (size_t i = 0; i < r.ids.size(); ++i)
    if (r.loss_mask[i]) masked += tok->decode({r.ids[i]});
  EXPECT_EQ(masked, "yo!<|im_end|>ok<|im_end|>");
  EXPECT_EQ(r.assistant_tokens, 3 + 1 + 2 + 1);
  // The token right after each assistant <|im_end|> ("\n") is not masked; the header is not either.
  const int32_t im_end = tok->special_id("<|im_end|>");
  for (size_t i = 0; i + 1 < r.ids.size(); ++i)
    if (r.ids[i] == im_end && r.loss_mask[i]) EXPECT_EQ(r.loss_mask[i + 1], 0);
  EXPECT_EQ(r.loss_mask.back(), 0);
}

TEST(ChatTemplate, NoAssistantMeansEmptyMaskAndPromptOpensAssistantTurn) {
  auto tok = make_byte_tokenizer();
  std::vector<Message> msgs = {{"user", "2+2?"}};
  RenderedChat r = render_chat(*tok, msgs);
  EXPECT_EQ(r.assistant_tokens, 0);
  for (uint8_t m : r.loss_mask) EXPECT_EQ(m, 0);
  auto p = render_prompt(*tok, msgs);
  EXPECT_EQ(tok->decode(p), "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(end_of_turn_id(*tok), 258);
  EXPECT_THROW(render_chat(*tok, {{"tool", "x"}}), Error);
  EXPECT_EQ(chat_template_from_name("chatml"), ChatTemplate::ChatML);
  EXPECT_THROW(chat_template_from_name("llama9"), Error);
}
