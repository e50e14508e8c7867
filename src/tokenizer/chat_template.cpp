// Chat templates (ChatML, Qwen3 with reasoning, Llama-3) with loss masks
// (see chat_template.h). A render is first laid out as pieces (special
// tokens and text, each with its mask); text between two specials is
// tokenized as one string, as Hugging Face tokenizes the rendered text.
#include "tokenizer/chat_template.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace temper {

ChatTemplate chat_template_from_name(const std::string& name) {
  if (name == "chatml") return ChatTemplate::ChatML;
  if (name == "qwen3") return ChatTemplate::Qwen3;
  if (name == "llama3") return ChatTemplate::Llama3;
  fail("unknown chat template '", name, "' (supported: chatml, qwen3, llama3)");
}

const char* chat_template_name(ChatTemplate t) {
  switch (t) {
    case ChatTemplate::ChatML: return "chatml";
    case ChatTemplate::Qwen3: return "qwen3";
    case ChatTemplate::Llama3: return "llama3";
  }
  return "?";
}

namespace {

// Special: always a special token. Marker: a special token when the tokenizer has
// it as one (<think> in the byte tokenizer), else text (Qwen's <think> is an added
// token that encode() matches anyway).
enum class Kind { Special, Marker, Text };
struct Piece {
  Kind kind;
  std::string text;
  uint8_t mask;
};

struct Layout {
  std::vector<Piece> pieces;
  void special(const char* s, uint8_t m = 0) { pieces.push_back({Kind::Special, s, m}); }
  void marker(const char* s, uint8_t m) { pieces.push_back({Kind::Marker, s, m}); }
  void text(std::string s, uint8_t m = 0) { pieces.push_back({Kind::Text, std::move(s), m}); }
};

void check_role(const Message& m, size_t index) {
  if (m.role != "system" && m.role != "user" && m.role != "assistant")
    fail("chat template: message ", index, " has role '", m.role, "' (expected system, user or assistant)");
}

std::string strip(const std::string& s, const char* chars, bool left, bool right) {
  size_t b = left ? s.find_first_not_of(chars) : 0;
  if (b == std::string::npos) return "";
  size_t e = right ? s.find_last_not_of(chars) + 1 : s.size();
  return s.substr(b, e - b);
}

void layout_chatml(const std::vector<Message>& msgs, bool gen_prompt, Layout& L) {
  for (const Message& m : msgs) {
    const uint8_t a = m.role == "assistant";
    L.special("<|im_start|>");
    L.text(m.role + "\n");
    L.text(m.content, a);
    L.special("<|im_end|>", a);
    L.text("\n");
  }
  if (gen_prompt) {
    L.special("<|im_start|>");
    L.text("assistant\n");
  }
}

// Qwen3's template (tokenizer_config.json), without tools.
void layout_qwen3(const std::vector<Message>& msgs, bool gen_prompt, bool thinking, Layout& L) {
  size_t last_query = msgs.empty() ? 0 : msgs.size() - 1;
  for (size_t k = msgs.size(); k-- > 0;) {
    if (msgs[k].role == "user") {
      last_query = k;
      break;
    }
  }
  for (size_t i = 0; i < msgs.size(); ++i) {
    const Message& m = msgs[i];
    if (m.role != "assistant") {
      L.special("<|im_start|>");
      L.text(m.role + "\n" + m.content);
      L.special("<|im_end|>");
      L.text("\n");
      continue;
    }
    std::string content = m.content, reasoning;
    const std::string close = "</think>";
    size_t last_close = content.rfind(close);
    if (last_close != std::string::npos) {
      std::string before = content.substr(0, content.find(close));
      before = strip(before, "\n", false, true);
      size_t open = before.rfind("<think>");
      if (open != std::string::npos) before = before.substr(open + 7);
      reasoning = strip(before, "\n", true, false);
      content = strip(content.substr(last_close + close.size()), "\n", true, false);
    }
    L.special("<|im_start|>");
    L.text("assistant\n");
    const bool last = i + 1 == msgs.size();
    if (i > last_query && (last || !reasoning.empty())) {
      L.marker("<think>", 1);
      L.text("\n" + strip(reasoning, "\n", true, true) + "\n", 1);
      L.marker("</think>", 1);
      L.text("\n\n" + strip(content, "\n", true, false), 1);
    } else {
      L.text(content, 1);
    }
    L.special("<|im_end|>", 1);
    L.text("\n");
  }
  if (gen_prompt) {
    L.special("<|im_start|>");
    L.text("assistant\n");
    if (!thinking) {
      L.marker("<think>", 0);
      L.text("\n\n");
      L.marker("</think>", 0);
      L.text("\n\n");
    }
  }
}

// Llama-3's template as shipped: the open assistant header is always appended.
void layout_llama3(const std::vector<Message>& msgs, Layout& L) {
  for (size_t i = 0; i < msgs.size(); ++i) {
    const Message& m = msgs[i];
    const uint8_t a = m.role == "assistant";
    if (i == 0) L.special("<|begin_of_text|>");
    L.special("<|start_header_id|>");
    L.text(m.role);
    L.special("<|end_header_id|>");
    L.text("\n\n");
    L.text(strip(m.content, " \t\n\r\f\v", true, true), a);
    L.special("<|eot_id|>", a);
  }
  L.special("<|start_header_id|>");
  L.text("assistant");
  L.special("<|end_header_id|>");
  L.text("\n\n");
}

Layout layout(const std::vector<Message>& msgs, ChatTemplate tmpl, bool gen_prompt, bool thinking) {
  for (size_t i = 0; i < msgs.size(); ++i) check_role(msgs[i], i);
  Layout L;
  switch (tmpl) {
    case ChatTemplate::ChatML: layout_chatml(msgs, gen_prompt, L); break;
    case ChatTemplate::Qwen3: layout_qwen3(msgs, gen_prompt, thinking, L); break;
    case ChatTemplate::Llama3: layout_llama3(msgs, L); break;
  }
  return L;
}

std::string layout_text(const Layout& L) {
  std::string s;
  for (const Piece& p : L.pieces) s += p.text;
  return s;
}

void append(RenderedChat& out, const std::vector<int32_t>& ids, size_t from, size_t to, uint8_t mask) {
  out.ids.insert(out.ids.end(), ids.begin() + static_cast<long>(from), ids.begin() + static_cast<long>(to));
  out.loss_mask.insert(out.loss_mask.end(), to - from, mask);
  if (mask) out.assistant_tokens += static_cast<int64_t>(to - from);
}

// Text between two special tokens: encoded whole; the mask switches from 0 to 1
// at the first token that differs from the encoding of the unmasked prefix.
void tokenize_run(const Tokenizer& tok, const std::vector<Piece>& pieces, size_t b, size_t e, RenderedChat& out) {
  std::string whole;
  size_t boundary = std::string::npos;
  for (size_t k = b; k < e; ++k) {
    if (pieces[k].mask && boundary == std::string::npos && !pieces[k].text.empty()) boundary = whole.size();
    TEMPER_CHECK(pieces[k].mask || boundary == std::string::npos || pieces[k].text.empty(),
                 "chat template: an unmasked piece follows a masked one in the same text run");
    whole += pieces[k].text;
  }
  if (whole.empty()) return;
  const std::vector<int32_t> ids = tok.encode(whole);
  if (boundary == std::string::npos) return append(out, ids, 0, ids.size(), 0);
  size_t k = 0;
  if (boundary > 0) {
    const std::vector<int32_t> head = tok.encode(whole.substr(0, boundary));
    while (k < head.size() && k < ids.size() && head[k] == ids[k]) ++k;
  }
  append(out, ids, 0, k, 0);
  append(out, ids, k, ids.size(), 1);
}

RenderedChat tokenize_layout(const Tokenizer& tok, const Layout& L) {
  RenderedChat out;
  std::map<std::string, int32_t> marker_ids;  // -1: not a special token of this tokenizer
  auto marker_id = [&](const std::string& s) {
    auto it = marker_ids.find(s);
    if (it != marker_ids.end()) return it->second;
    int32_t id = -1;
    try {
      id = tok.special_id(s);
      if (!tok.is_special(id)) id = -1;
    } catch (const Error&) {
      id = -1;
    }
    return marker_ids[s] = id;
  };
  const std::vector<Piece>& P = L.pieces;
  size_t run = 0;
  for (size_t k = 0; k <= P.size(); ++k) {
    int32_t id = -1;
    if (k < P.size()) {
      if (P[k].kind == Kind::Special) id = tok.special_id(P[k].text);
      if (P[k].kind == Kind::Marker) id = marker_id(P[k].text);
      if (id < 0) continue;  // text: extends the current run
    }
    tokenize_run(tok, P, run, k, out);
    if (k < P.size()) {
      out.ids.push_back(id);
      out.loss_mask.push_back(P[k].mask);
      out.assistant_tokens += P[k].mask;
    }
    run = k + 1;
  }
  return out;
}

bool is_dir(const std::string& p) {
  struct stat st{};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

RenderedChat render_chat(const Tokenizer& tok, const std::vector<Message>& messages, ChatTemplate tmpl) {
  return tokenize_layout(tok, layout(messages, tmpl, false, true));
}

std::vector<int32_t> render_prompt(const Tokenizer& tok, const std::vector<Message>& messages, ChatTemplate tmpl,
                                   bool enable_thinking) {
  return tokenize_layout(tok, layout(messages, tmpl, true, enable_thinking)).ids;
}

std::string render_chat_text(const std::vector<Message>& messages, ChatTemplate tmpl) {
  return layout_text(layout(messages, tmpl, false, true));
}

std::string render_prompt_text(const std::vector<Message>& messages, ChatTemplate tmpl, bool enable_thinking) {
  return layout_text(layout(messages, tmpl, true, enable_thinking));
}

int32_t end_of_turn_id(const Tokenizer& tok, ChatTemplate tmpl) {
  return tok.special_id(tmpl == ChatTemplate::Llama3 ? "<|eot_id|>" : "<|im_end|>");
}

ChatTemplate infer_chat_template(const std::string& dir) {
  const std::string path = dir + "/tokenizer_config.json";
  std::ifstream in(path);
  if (!in) fail("cannot infer the chat template: '", path, "' cannot be read (set data.chat_template)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": not valid JSON: ", e.what());
  }
  std::string t;
  if (j.contains("chat_template") && j["chat_template"].is_string()) {
    t = j["chat_template"];
  } else if (j.contains("chat_template") && j["chat_template"].is_array()) {  // [{name, template}, ...]
    for (const auto& e : j["chat_template"])
      if (e.value("name", std::string()) == "default") t = e.value("template", std::string());
  }
  if (t.empty()) fail(path, ": no \"chat_template\" string (set data.chat_template to chatml, qwen3 or llama3)");
  if (t.find("<|start_header_id|>") != std::string::npos) return ChatTemplate::Llama3;
  if (t.find("<|im_start|>") != std::string::npos)
    return t.find("<think>") != std::string::npos ? ChatTemplate::Qwen3 : ChatTemplate::ChatML;
  fail(path, ": \"chat_template\" is not one temper knows (ChatML, Qwen3, Llama-3); set data.chat_template");
}

ChatTemplate resolve_chat_template(const std::string& name, const std::string& tokenizer_spec) {
  if (name != "auto") return chat_template_from_name(name);
  if (tokenizer_spec == "byte") return ChatTemplate::ChatML;
  std::string p = tokenizer_spec.rfind("hf:", 0) == 0 ? tokenizer_spec.substr(3) : tokenizer_spec;
  if (!is_dir(p)) {
    size_t slash = p.find_last_of('/');
    p = slash == std::string::npos ? std::string(".") : p.substr(0, slash);
  }
  return infer_chat_template(p);
}

}  // namespace temper
