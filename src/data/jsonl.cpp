// JSONL conversation reader/writer (see jsonl.h).
#include "data/jsonl.h"

#include <fstream>

#include "core/error.h"
#include "core/file_write.h"

namespace temper {

using nlohmann::json;

Conversation parse_conversation(const std::string& line, const std::string& where) {
  json rec;
  try {
    rec = json::parse(line);
  } catch (const json::parse_error& e) {
    fail(where, ": malformed JSON: ", e.what());
  }
  if (!rec.is_object()) fail(where, ": expected a JSON object with a \"messages\" array, got ", rec.type_name());
  auto it = rec.find("messages");
  if (it == rec.end()) fail(where, ": missing \"messages\" (expected \"messages\": [{\"role\": ..., \"content\": ...}])");
  if (!it->is_array() || it->empty()) fail(where, ": \"messages\" must be a non-empty array");
  Conversation c;
  c.source = where;
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    if (!m.is_object()) fail(where, ": messages[", i, "] is not an object");
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) fail(where, ": messages[", i, "] has no string \"role\"");
    const std::string r = role->get<std::string>();
    if (r != "system" && r != "user" && r != "assistant")
      fail(where, ": messages[", i, "] has unknown role '", r, "' (expected system, user or assistant)");
    auto content = m.find("content");
    if (content == m.end()) fail(where, ": messages[", i, "] has no \"content\"");
    if (!content->is_string())
      fail(where, ": messages[", i, "] \"content\" must be a string, got ", content->type_name());
    c.messages.push_back({r, content->get<std::string>()});
  }
  rec.erase("messages");
  c.extra = std::move(rec);
  return c;
}

static bool blank(const std::string& s) {
  for (char ch : s)
    if (ch != ' ' && ch != '\t' && ch != '\r' && ch != '\n') return false;
  return true;
}

std::vector<Conversation> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(path, ": cannot open the data file (check the path in the deck)");
  std::vector<Conversation> out;
  std::string line;
  for (int64_t lineno = 1; std::getline(in, line); ++lineno) {
    if (blank(line)) continue;
    out.push_back(parse_conversation(line, cat(path, ":", lineno)));
  }
  if (out.empty()) fail(path, ":1: the file is empty (no JSONL records)");
  return out;
}

json conversation_to_json(const Conversation& c) {
  json rec = json::object();
  json msgs = json::array();
  for (const Message& m : c.messages) msgs.push_back({{"role", m.role}, {"content", m.content}});
  rec["messages"] = std::move(msgs);
  for (auto it = c.extra.begin(); it != c.extra.end(); ++it) rec[it.key()] = it.value();
  return rec;
}

void write_jsonl(const std::string& path, const std::vector<json>& records) {
  std::string text;
  for (const json& r : records) text += r.dump() + '\n';
  write_file_atomic(path, text);
}

}  // namespace temper
