// Chat templates: a conversation rendered to token ids plus a per-token loss
// mask (1 on what the assistant says, 0 elsewhere), and the generation prompt.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace temper {

struct Message {
  std::string role;     // system | user | assistant
  std::string content;
};

// ChatML: "<|im_start|>role\ncontent<|im_end|>\n" per message (Qwen and others).
// Llama3 arrives with the BPE tokenizer.
enum class ChatTemplate { ChatML };
ChatTemplate chat_template_from_name(const std::string& name);  // "chatml"; throws otherwise
const char* chat_template_name(ChatTemplate t);

struct RenderedChat {
  std::vector<int32_t> ids;
  std::vector<uint8_t> loss_mask;    // same length as ids
  int64_t assistant_tokens = 0;      // number of mask-1 tokens
};

// Every message rendered; the mask is 1 exactly on each assistant message's
// content tokens and its <|im_end|> token.
RenderedChat render_chat(const Tokenizer& tok, const std::vector<Message>& messages,
                         ChatTemplate tmpl = ChatTemplate::ChatML);

// All messages, then the opening of an assistant turn ("<|im_start|>assistant\n").
std::vector<int32_t> render_prompt(const Tokenizer& tok, const std::vector<Message>& messages,
                                   ChatTemplate tmpl = ChatTemplate::ChatML);

// The id that ends an assistant turn (generation stops on it): <|im_end|> for ChatML.
int32_t end_of_turn_id(const Tokenizer& tok, ChatTemplate tmpl = ChatTemplate::ChatML);

}  // namespace temper
