// Reading a deck: a line scanner for the INI structure (line numbers,
// sections, duplicates), Boost.Program_options for the typed conversion of
// each value, then range/choice checks, overrides and the resolved echo.
#include "deck/deck.h"

#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <boost/program_options.hpp>

#include "core/error.h"

namespace temper {
namespace po = boost::program_options;
namespace {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

bool blank_or_comment(const std::string& rest) {
  const std::string t = trim(rest);
  return t.empty() || t[0] == '#';
}

// Cuts an inline comment ('#' at the start or after whitespace) off a line.
std::string strip_comment(const std::string& s) {
  for (size_t i = 0; i < s.size(); ++i)
    if (s[i] == '#' && (i == 0 || std::isspace(static_cast<unsigned char>(s[i - 1]))))
      return trim(s.substr(0, i));
  return trim(s);
}

// The value after '=': "quoted" (quotes removed, may hold '#') or bare
// (an inline comment removed).
std::string parse_raw_value(const std::string& after_eq, const std::string& ctx,
                            const std::string& key) {
  const std::string v = trim(after_eq);
  if (v.empty() || v[0] != '"') return strip_comment(v);
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] == '"' && blank_or_comment(v.substr(i + 1))) return v.substr(1, i - 1);
  fail(ctx, "unterminated quote in the value of '", key, "' (a quoted value must end with '\"')");
}

std::vector<std::string> split_list(const std::string& raw, const std::string& ctx,
                                    const std::string& key) {
  std::vector<std::string> out;
  if (trim(raw).empty()) return out;
  std::stringstream ss(raw);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item = trim(item);
    TEMPER_CHECK(!item.empty(), ctx, "empty element in the list '", key, "' = '", raw,
                 "' (elements are separated by single commas)");
    out.push_back(item);
  }
  if (!raw.empty() && trim(raw).back() == ',')
    fail(ctx, "empty element in the list '", key, "' = '", raw, "' (trailing comma)");
  return out;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
  return s;
}

// Converts tokens to T through Boost.Program_options' typed value semantics.
template <typename T>
T po_convert(const std::string& name, const std::vector<std::string>& tokens) {
  po::options_description one;
  one.add_options()(name.c_str(), po::value<T>()->multitoken());
  po::parsed_options parsed(&one);
  parsed.options.emplace_back(name, tokens);
  po::variables_map vm;
  po::store(parsed, vm);
  return vm[name].as<T>();
}

const char* a_type(KeyType t) {
  switch (t) {
    case KeyType::Int: return "an integer";
    case KeyType::Float: return "a number";
    case KeyType::Bool: return "a bool (true/false/yes/no/on/off/1/0)";
    case KeyType::IntList: return "a comma-separated list of integers";
    default: return "a string";
  }
}

void check_range(const KeySpec& spec, double v, const std::string& shown, const std::string& ctx) {
  if (!spec.range.contains(v))
    fail(ctx, "'", spec.full_name(), "' = ", shown, " is out of range: it must be ",
         spec.range.describe());
}

std::string unknown_key_message(const std::string& full) {
  std::string msg = cat("unknown key '", full, "'");
  const std::string s = suggest_key(full);
  if (!s.empty()) return msg + cat(" (did you mean '", s, "'?)");
  const size_t dot = full.find('.');
  return msg + cat(" (see 'temper --help' for the keys of [", full.substr(0, dot), "])");
}

std::vector<std::string> section_names() {
  std::vector<std::string> v;
  for (const auto& s : deck_sections()) v.push_back(s.name);
  return v;
}

// Sections in which a bare key name exists, for "key outside any section".
std::string sections_with_key(const std::string& key) {
  std::string s;
  for (const auto& k : deck_schema())
    if (k.name == key) s += (s.empty() ? "[" : ", [") + k.section + "]";
  return s;
}

// The lines of a deck: LF, CR LF and CR-only (old Mac editors) line ends all count.
std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::string cur;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n' || c == '\r') {
      lines.push_back(cur);
      cur.clear();
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) lines.push_back(cur);
  return lines;
}

// A NUL byte would cut every message that quotes the line: refuse the file, saying where.
void check_no_nul(const std::vector<std::string>& lines, const std::string& source_name) {
  for (size_t n = 0; n < lines.size(); ++n) {
    const size_t col = lines[n].find('\0');
    if (col == std::string::npos) continue;
    fail(source_name, ":", n + 1, ": the line holds a NUL byte (column ", col + 1,
         "): a deck is a plain text file; was it saved by a word processor, or is it a binary file?");
  }
}

bool needs_quotes(const std::string& s) {
  if (s.empty()) return false;
  return s.find('#') != std::string::npos || s[0] == '"' ||
         std::isspace(static_cast<unsigned char>(s.front())) ||
         std::isspace(static_cast<unsigned char>(s.back()));
}

}  // namespace

Deck::Value Deck::convert(const KeySpec& spec, const std::string& raw, const std::string& ctx) {
  const std::string full = spec.full_name();
  Value v;
  try {
    switch (spec.type) {
      case KeyType::Int:
      case KeyType::Float:
      case KeyType::Bool:
        TEMPER_CHECK(!trim(raw).empty(), ctx, "'", full, "' has no value (expected ",
                     a_type(spec.type), ")");
        break;
      default: break;
    }
    switch (spec.type) {
      case KeyType::Int:
        v.i = po_convert<int64_t>(full, {raw});
        check_range(spec, static_cast<double>(v.i), std::to_string(v.i), ctx);
        v.text = std::to_string(v.i);
        break;
      case KeyType::Float:
        v.f = po_convert<double>(full, {raw});
        TEMPER_CHECK(std::isfinite(v.f), ctx, "'", full, "' = ", raw, " is not a finite number");
        check_range(spec, v.f, raw, ctx);
        v.text = format_number(v.f);
        break;
      case KeyType::Bool:
        v.b = po_convert<bool>(full, {raw});
        v.text = v.b ? "true" : "false";
        break;
      case KeyType::String:
        if (!spec.choices.empty()) {
          bool ok = false;
          for (const auto& c : spec.choices) ok = ok || c == raw;
          if (!ok) {
            std::string msg = cat(ctx, "'", full, "' = '", raw, "' is not ", spec.constraint());
            const std::string s = suggest_word(raw, spec.choices);
            if (!s.empty()) msg += cat(" (did you mean '", s, "'?)");
            throw Error(msg);
          }
        }
        v.text = raw;
        break;
      case KeyType::List: {
        auto items = split_list(raw, ctx, full);
        if (!items.empty()) v.list = po_convert<std::vector<std::string>>(full, items);
        v.text = join(v.list);
        break;
      }
      case KeyType::IntList: {
        v.list = split_list(raw, ctx, full);
        for (const auto& item : v.list) {
          int64_t x = 0;
          try {
            x = po_convert<int64_t>(full, {item});
          } catch (const po::error&) {
            fail(ctx, "'", full, "' = '", raw, "': element '", item, "' is not an integer");
          }
          check_range(spec, static_cast<double>(x), std::to_string(x) + " (an element)", ctx);
          v.ints.push_back(x);
        }
        v.text = join(v.list);
        break;
      }
    }
  } catch (const po::error&) {
    fail(ctx, "'", full, "' = '", raw, "' is not ", a_type(spec.type));
  }
  return v;
}

std::string read_deck_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  TEMPER_CHECK(fs::exists(path, ec), "deck file '", path, "' does not exist");
  TEMPER_CHECK(!fs::is_directory(path, ec), "deck file '", path, "' is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  TEMPER_CHECK(in.good(), "deck file '", path, "' cannot be read (check its permissions)");
  std::ostringstream ss;
  ss << in.rdbuf();
  TEMPER_CHECK(!in.bad(), "deck file '", path, "': read error");
  return ss.str();
}

Deck Deck::load(const std::string& path, const std::vector<std::string>& overrides) {
  const std::string text = read_deck_file(path);
  return build(&text, path, overrides);
}

Deck Deck::parse(const std::string& text, const std::string& source_name,
                 const std::vector<std::string>& overrides) {
  return build(&text, source_name, overrides);
}

Deck Deck::defaults(const std::vector<std::string>& overrides) {
  return build(nullptr, "<defaults>", overrides);
}

Deck Deck::build(const std::string* text, const std::string& source_name,
                 const std::vector<std::string>& overrides) {
  Deck d;
  d.source_ = source_name;
  const auto& schema = deck_schema();
  for (const auto& spec : schema)
    d.values_.push_back(convert(spec, spec.default_text, "schema default: "));

  if (text) {
    const std::vector<std::string> lines = split_lines(*text);
    check_no_nul(lines, source_name);
    std::string section;
    std::vector<int> first_line(schema.size(), 0);
    bool any = false;
    for (int n = 1; n <= int(lines.size()); ++n) {
      std::string line = lines[size_t(n - 1)];
      if (n == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line = line.substr(3);  // UTF-8 BOM
      const std::string t = trim(line);
      if (t.empty() || t[0] == '#' || t[0] == ';') continue;
      any = true;
      const std::string ctx = cat(source_name, ":", n, ": ");
      if (t[0] == '[') {
        const size_t close = t.find(']');
        TEMPER_CHECK(close != std::string::npos && blank_or_comment(t.substr(close + 1)), ctx,
                     "malformed section header '", t, "' (expected '[name]')");
        const std::string name = trim(t.substr(1, close - 1));
        if (!deck_has_section(name)) {
          std::string msg = cat(ctx, "unknown section '[", name, "]'");
          const std::string s = suggest_word(name, section_names());
          if (!s.empty()) msg += cat(" (did you mean '[", s, "]'?)");
          throw Error(msg + "; sections are: " + join(section_names()));
        }
        section = name;
        continue;
      }
      const size_t eq = t.find('=');
      TEMPER_CHECK(eq != std::string::npos, ctx, "expected 'key = value' or a '[section]' header, got '",
                   t, "'");
      const std::string key = trim(t.substr(0, eq));
      TEMPER_CHECK(!key.empty(), ctx, "missing key name before '='");
      if (section.empty()) {
        std::string msg = cat(ctx, "key '", key, "' is outside any section; put it under a [section] header");
        const std::string where = sections_with_key(key);
        if (!where.empty()) msg += " (" + key + " exists in " + where + ")";
        throw Error(msg);
      }
      const std::string full = section + "." + key;
      const int idx = deck_key_index(full);
      if (idx < 0) throw Error(ctx + unknown_key_message(full));
      TEMPER_CHECK(first_line[idx] == 0, ctx, "duplicate key '", full, "' (first set on line ",
                   first_line[idx], ", again on line ", n, ")");
      first_line[idx] = n;
      Value v = convert(schema[idx], parse_raw_value(t.substr(eq + 1), ctx, full), ctx);
      v.origin = Origin::File;
      v.line = n;
      d.values_[idx] = std::move(v);
    }
    TEMPER_CHECK(any, "deck file '", source_name,
                 "' is empty (no sections or keys); see 'temper --help' for the deck format");
  }
  d.apply_overrides(overrides);
  d.resolve_defaults();
  d.check_consistency();
  return d;
}

void Deck::apply_overrides(const std::vector<std::string>& overrides) {
  const auto& schema = deck_schema();
  for (const auto& arg : overrides) {
    const std::string ctx = cat("command-line override '", arg, "': ");
    const size_t eq = arg.find('=');
    TEMPER_CHECK(arg.rfind("--", 0) == 0 && eq != std::string::npos, ctx,
                 "expected --section.key=value");
    const std::string full = trim(arg.substr(2, eq - 2));
    TEMPER_CHECK(full.find('.') != std::string::npos, ctx, "'", full,
                 "' is not of the form section.key");
    const int idx = deck_key_index(full);
    if (idx < 0) throw Error(ctx + unknown_key_message(full));
    Value v = convert(schema[idx], trim(arg.substr(eq + 1)), ctx);
    v.origin = Origin::Override;
    v.override = arg;
    values_[idx] = std::move(v);
  }
}

// String defaults may refer to other keys as {section.key}.
void Deck::resolve_defaults() {
  const auto& schema = deck_schema();
  for (size_t i = 0; i < schema.size(); ++i) {
    if (values_[i].origin != Origin::Default || schema[i].type != KeyType::String) continue;
    std::string s = values_[i].text;
    size_t open;
    while ((open = s.find('{')) != std::string::npos) {
      const size_t close = s.find('}', open);
      TEMPER_CHECK(close != std::string::npos, "schema default of '", schema[i].full_name(),
                   "': unmatched '{'");
      const std::string ref = s.substr(open + 1, close - open - 1);
      s.replace(open, close - open + 1, value(ref).text);
    }
    values_[i].text = s;
  }
}

const Deck::Value& Deck::value(const std::string& key) const {
  const int idx = deck_key_index(key);
  if (idx < 0) {
    std::string msg = cat("Deck: no key '", key, "' in the schema (a programming error)");
    const std::string s = suggest_key(key);
    if (!s.empty()) msg += cat("; did you mean '", s, "'?");
    throw Error(msg);
  }
  return values_[idx];
}

Deck::Value& Deck::mutable_value(const std::string& key) {
  return const_cast<Value&>(static_cast<const Deck*>(this)->value(key));
}

const Deck::Value& Deck::value(const std::string& key, KeyType expected, const char* getter) const {
  const Value& v = value(key);
  const KeyType t = deck_schema()[deck_key_index(key)].type;
  TEMPER_CHECK(t == expected, "Deck::", getter, "('", key, "'): the key is of type ", key_type_name(t),
               ", not ", key_type_name(expected), " (a programming error)");
  return v;
}

int64_t Deck::get_int(const std::string& key) const { return value(key, KeyType::Int, "get_int").i; }
double Deck::get_float(const std::string& key) const {
  return value(key, KeyType::Float, "get_float").f;
}
bool Deck::get_bool(const std::string& key) const { return value(key, KeyType::Bool, "get_bool").b; }
std::string Deck::get_string(const std::string& key) const { return value(key).text; }
std::vector<std::string> Deck::get_list(const std::string& key) const {
  const Value& v = value(key);  // throws for an undeclared key
  if (deck_schema()[deck_key_index(key)].type == KeyType::IntList) return v.list;
  return value(key, KeyType::List, "get_list").list;
}
std::vector<int64_t> Deck::get_int_list(const std::string& key) const {
  return value(key, KeyType::IntList, "get_int_list").ints;
}

bool Deck::is_default(const std::string& key) const { return value(key).origin == Origin::Default; }
Deck::Origin Deck::origin(const std::string& key) const { return value(key).origin; }

std::string Deck::where(const std::string& key) const {
  const Value& v = value(key);
  switch (v.origin) {
    case Origin::File: return cat(source_, ":", v.line);
    case Origin::Override: return "override " + v.override;
    default: return v.note.empty() ? "default" : "default, " + v.note;
  }
}

std::string Deck::resolved_text() const {
  std::ostringstream os;
  os << "# temper " << TEMPER_VERSION << " resolved deck (from " << source_ << ")\n"
     << "# every key with its value; each comment says where the value came from\n";
  const auto& schema = deck_schema();
  for (const auto& sec : deck_sections()) {
    os << "\n[" << sec.name << "]\n";
    for (size_t i = 0; i < schema.size(); ++i) {
      if (schema[i].section != sec.name) continue;
      const std::string& t = values_[i].text;
      std::string line = schema[i].name + " = " + (needs_quotes(t) ? "\"" + t + "\"" : t);
      if (line.size() < 40) line.resize(40, ' ');
      os << line << "  # " << where(schema[i].full_name()) << "\n";
    }
  }
  return os.str();
}

}  // namespace temper
