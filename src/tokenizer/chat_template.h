// Chat templates: a conversation rendered to token ids plus a per-token loss
// mask (1 on what the assistant says, 0 elsewhere), and the generation prompt.
// Texts are those of Hugging Face's apply_chat_template with each model's
// template (tests/fixtures/hf/chat_renders.json); ids equal HF's tokenization
// of that text, except that special-token text inside message content is
// never parsed as a special token (no injection of turn markers).
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

// ChatML:  "<|im_start|>role\ncontent<|im_end|>\n" per message.
// Qwen3:   ChatML with reasoning: an assistant turn after the last user message is
//          "<|im_start|>assistant\n<think>\nREASONING\n</think>\n\nANSWER<|im_end|>\n"
//          (the reasoning taken from "<think>...</think>" in the content; the last
//          turn always gets the block, empty if need be); earlier assistant turns
//          keep only the answer. The prompt ends "<|im_start|>assistant\n", plus
//          "<think>\n\n</think>\n\n" when thinking is disabled.
// Llama3:  "<|begin_of_text|>" then "<|start_header_id|>role<|end_header_id|>\n\n"
//          + trimmed content + "<|eot_id|>" per message; the template shipped in
//          tokenizer_config.json always ends with an open assistant header
//          ("<|start_header_id|>assistant<|end_header_id|>\n\n"), so full
//          renders end with it too (loss mask 0 there).
enum class ChatTemplate { ChatML, Qwen3, Llama3 };
ChatTemplate chat_template_from_name(const std::string& name);  // "chatml", "qwen3", "llama3"; throws otherwise
const char* chat_template_name(ChatTemplate t);

// The template of a Hugging Face tokenizer directory, read from the
// "chat_template" of DIR/tokenizer_config.json; throws naming the file when
// it is absent or not recognised.
ChatTemplate infer_chat_template(const std::string& dir);
// Deck helper: `name` is "auto" or a template name; `tokenizer_spec` is the
// data.tokenizer value ("byte" -> chatml, "hf:DIR", DIR or DIR/tokenizer.json -> inferred).
ChatTemplate resolve_chat_template(const std::string& name, const std::string& tokenizer_spec);

struct RenderedChat {
  std::vector<int32_t> ids;
  std::vector<uint8_t> loss_mask;    // same length as ids
  int64_t assistant_tokens = 0;      // number of mask-1 tokens
};

// Every message rendered; the mask is 1 exactly on each assistant message's
// rendered content (for Qwen3 including its <think> block) and its end-of-turn
// token. A token that straddles the header/content boundary counts as content.
RenderedChat render_chat(const Tokenizer& tok, const std::vector<Message>& messages,
                         ChatTemplate tmpl = ChatTemplate::ChatML);

// All messages, then the opening of an assistant turn. enable_thinking = false
// (Qwen3 only) appends the empty "<think>\n\n</think>\n\n" block.
std::vector<int32_t> render_prompt(const Tokenizer& tok, const std::vector<Message>& messages,
                                   ChatTemplate tmpl = ChatTemplate::ChatML, bool enable_thinking = true);

// The rendered text (what apply_chat_template returns with tokenize=False).
std::string render_chat_text(const std::vector<Message>& messages, ChatTemplate tmpl);
std::string render_prompt_text(const std::vector<Message>& messages, ChatTemplate tmpl,
                               bool enable_thinking = true);

// The id that ends an assistant turn (generation stops on it): <|im_end|> for
// ChatML and Qwen3, <|eot_id|> for Llama3.
int32_t end_of_turn_id(const Tokenizer& tok, ChatTemplate tmpl = ChatTemplate::ChatML);

}  // namespace temper
