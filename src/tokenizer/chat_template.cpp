// ChatML rendering with loss masks (see chat_template.h).
#include "tokenizer/chat_template.h"

#include <algorithm>

#include "core/error.h"

namespace temper {

ChatTemplate chat_template_from_name(const std::string& name) {
  if (name == "chatml") return ChatTemplate::ChatML;
  fail("unknown chat template '", name, "' (supported: chatml)");
}

const char* chat_template_name(ChatTemplate t) {
  switch (t) {
    case ChatTemplate::ChatML: return "chatml";
  }
  return "?";
}

namespace {

void append(RenderedChat& out, const std::vector<int32_t>& ids, uint8_t mask) {
  out.ids.insert(out.ids.end(), ids.begin(), ids.end());
  out.loss_mask.insert(out.loss_mask.end(), ids.size(), mask);
  if (mask) out.assistant_tokens += static_cast<int64_t>(ids.size());
}

void append_id(RenderedChat& out, int32_t id, uint8_t mask) {
  out.ids.push_back(id);
  out.loss_mask.push_back(mask);
  if (mask) out.assistant_tokens += 1;
}

// "role\ncontent" as the text between two specials. A BPE tokenizer sees that
// text as one piece, so it is encoded whole when the header's tokens are a
// prefix of the whole (the usual case) to match Hugging Face's tokenization;
// otherwise header and content are encoded separately so the mask boundary
// falls on a token boundary.
void append_turn_text(const Tokenizer& tok, RenderedChat& out, const std::string& role,
                      const std::string& content, uint8_t content_mask) {
  std::vector<int32_t> header = tok.encode(role + "\n");
  std::vector<int32_t> whole = tok.encode(role + "\n" + content);
  bool prefix = whole.size() >= header.size() && std::equal(header.begin(), header.end(), whole.begin());
  if (prefix) {
    append(out, header, 0);
    append(out, std::vector<int32_t>(whole.begin() + header.size(), whole.end()), content_mask);
  } else {
    append(out, header, 0);
    append(out, tok.encode(content), content_mask);
  }
}

void check_role(const Message& m, size_t index) {
  if (m.role != "system" && m.role != "user" && m.role != "assistant")
    fail("chat template: message ", index, " has role '", m.role, "' (expected system, user or assistant)");
}

}  // namespace

RenderedChat render_chat(const Tokenizer& tok, const std::vector<Message>& messages, ChatTemplate tmpl) {
  (void)tmpl;  // ChatML is the only template so far
  const int32_t start = tok.special_id("<|im_start|>");
  const int32_t end = tok.special_id("<|im_end|>");
  const std::vector<int32_t> newline = tok.encode("\n");
  RenderedChat out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const Message& m = messages[i];
    check_role(m, i);
    const uint8_t mask = m.role == "assistant" ? 1 : 0;
    append_id(out, start, 0);
    append_turn_text(tok, out, m.role, m.content, mask);
    append_id(out, end, mask);
    append(out, newline, 0);
  }
  return out;
}

std::vector<int32_t> render_prompt(const Tokenizer& tok, const std::vector<Message>& messages,
                                   ChatTemplate tmpl) {
  RenderedChat chat = render_chat(tok, messages, tmpl);
  chat.ids.push_back(tok.special_id("<|im_start|>"));
  std::vector<int32_t> header = tok.encode("assistant\n");
  chat.ids.insert(chat.ids.end(), header.begin(), header.end());
  return chat.ids;
}

int32_t end_of_turn_id(const Tokenizer& tok, ChatTemplate tmpl) {
  (void)tmpl;
  return tok.special_id("<|im_end|>");
}

}  // namespace temper
