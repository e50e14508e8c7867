// JSONL conversations: one {"messages": [{"role", "content"}...], ...} record
// per line. Other fields ("task", "answer", "constraints", ...) are kept.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/chat_template.h"

namespace temper {

struct Conversation {
  std::vector<Message> messages;
  nlohmann::json extra = nlohmann::json::object();  // every field but "messages"
  std::string source;                               // "file:line", for messages
};

// Parses one record; `where` ("file:line") prefixes every error.
Conversation parse_conversation(const std::string& line, const std::string& where);

// Reads a whole file. Blank lines are skipped; errors name file and line
// (malformed JSON, missing "messages", unknown role, non-string content), and
// a file with no records is an error.
std::vector<Conversation> read_jsonl(const std::string& path);

// One record per line; creates or truncates the file.
void write_jsonl(const std::string& path, const std::vector<nlohmann::json>& records);
nlohmann::json conversation_to_json(const Conversation& c);

}  // namespace temper
