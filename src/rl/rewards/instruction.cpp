// Instruction-following reward: IFEval-style verifiable constraints given as JSON
// ({"type":"word_count","relation":"at least","n":50}, ...). Strict mode checks
// the response as is; loose mode also accepts it with '*' removed and/or its first
// or last line dropped, as IFEval's loose accuracy does.
#include <algorithm>
#include <cctype>
#include <functional>
#include <sstream>

#include "core/error.h"
#include "rl/rewards/reward.h"

namespace temper {
namespace {

using json = nlohmann::json;

bool word_char(char c) {
  auto u = static_cast<unsigned char>(c);
  return std::isalnum(u) || c == '_' || u >= 0x80;  // UTF-8 letters count as word characters
}
std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string trim(const std::string& s, const char* ws = " \t\r\n") {
  size_t b = s.find_first_not_of(ws), e = s.find_last_not_of(ws);
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}
std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}
size_t count_substr(const std::string& hay, const std::string& needle) {
  if (needle.empty()) return 0;
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + needle.size())) ++n;
  return n;
}

size_t count_words(const std::string& s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size();) {
    if (!word_char(s[i])) { ++i; continue; }
    ++n;
    while (i < s.size() && word_char(s[i])) ++i;
  }
  return n;
}

// Sentences end in . ! or ? followed by whitespace or the end; a trailing fragment
// with words counts too.
size_t count_sentences(const std::string& s) {
  size_t n = 0;
  bool has_words = false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (word_char(s[i])) has_words = true;
    bool end_punct = s[i] == '.' || s[i] == '!' || s[i] == '?';
    if (end_punct && (i + 1 == s.size() || std::isspace(static_cast<unsigned char>(s[i + 1])) || s[i + 1] == '"')) {
      if (has_words) ++n;
      has_words = false;
    }
  }
  return n + (has_words ? 1 : 0);
}

// Paragraphs are separated by "***" or by blank lines.
size_t count_paragraphs(const std::string& s) {
  std::string t = s;
  for (size_t p; (p = t.find("***")) != std::string::npos;) t.replace(p, 3, "\n\n");
  size_t n = 0;
  bool in_par = false;
  for (const auto& l : lines_of(t)) {
    bool blank = trim(l).empty();
    if (!blank && !in_par) ++n;
    in_par = !blank;
  }
  return n;
}

bool whole_word_present(const std::string& hay_low, const std::string& word_low) {
  if (word_low.empty()) return false;
  for (size_t p = hay_low.find(word_low); p != std::string::npos; p = hay_low.find(word_low, p + 1)) {
    bool left = p == 0 || !word_char(hay_low[p - 1]);
    size_t e = p + word_low.size();
    bool right = e >= hay_low.size() || !word_char(hay_low[e]);
    if (left && right) return true;
  }
  return false;
}

bool json_ok(const std::string& response) {
  std::string s = trim(response);
  if (s.rfind("```", 0) == 0) {
    size_t nl = s.find('\n');
    std::string tag = lower(trim(s.substr(3, nl == std::string::npos ? std::string::npos : nl - 3)));
    if (nl == std::string::npos || !(tag.empty() || tag == "json")) return false;
    s = s.substr(nl + 1);
    s = trim(s);
    if (s.size() < 3 || s.compare(s.size() - 3, 3, "```") != 0) return false;
    s = trim(s.substr(0, s.size() - 3));
  }
  int depth = 0, max_depth = 0;  // refuse absurd nesting before handing it to the parser
  for (char c : s) {
    if (c == '[' || c == '{') max_depth = std::max(max_depth, ++depth);
    if (c == ']' || c == '}') --depth;
  }
  if (max_depth > 256) return false;
  return !json::parse(s, nullptr, false).is_discarded();
}

enum class Rel { AtLeast, AtMost, LessThan, MoreThan, Exactly };

struct Constraint {
  std::string type, label;
  std::function<bool(const std::string&, std::string*)> check;  // (response, why) -> holds
};

class Spec {  // typed access to one constraint object, with actionable errors
 public:
  Spec(const json& j, size_t idx) : j_(j), idx_(idx) {}
  std::string where() const { return cat("instruction constraint #", idx_, " (", j_.dump(), ")"); }
  long long n(const char* key = "n") const {
    TEMPER_CHECK(j_.contains(key) && j_[key].is_number_integer() && j_[key].get<long long>() >= 0, where(),
                 ": needs a non-negative integer \"", key, "\"");
    return j_[key].get<long long>();
  }
  std::string str(const char* key) const {
    TEMPER_CHECK(j_.contains(key) && j_[key].is_string() && !j_[key].get<std::string>().empty(), where(),
                 ": needs a non-empty string \"", key, "\"");
    return j_[key].get<std::string>();
  }
  std::string str_or(const char* key, const std::string& dflt) const { return j_.contains(key) ? str(key) : dflt; }
  std::vector<std::string> list(std::initializer_list<const char*> keys) const {
    for (const char* key : keys) {
      if (!j_.contains(key)) continue;
      const json& v = j_[key];
      TEMPER_CHECK(v.is_array() && !v.empty(), where(), ": \"", key, "\" must be a non-empty array of strings");
      std::vector<std::string> out;
      for (const auto& e : v) {
        TEMPER_CHECK(e.is_string() && !e.get<std::string>().empty(), where(), ": \"", key, "\" holds a non-string");
        out.push_back(e.get<std::string>());
      }
      return out;
    }
    fail(where(), ": needs an array \"", *keys.begin(), "\"");
  }
  Rel rel(Rel dflt) const {
    if (!j_.contains("relation")) return dflt;
    std::string r = lower(str("relation"));
    std::replace(r.begin(), r.end(), '_', ' ');
    if (r == "at least" || r == ">=") return Rel::AtLeast;
    if (r == "at most" || r == "<=") return Rel::AtMost;
    if (r == "less than" || r == "<") return Rel::LessThan;
    if (r == "more than" || r == ">") return Rel::MoreThan;
    if (r == "exactly" || r == "==" || r == "=") return Rel::Exactly;
    fail(where(), ": unknown relation '", r, "' (use at least, at most, less than, more than, exactly)");
  }

 private:
  const json& j_;
  size_t idx_;
};

bool compare(size_t got, Rel rel, long long n) {
  auto g = static_cast<long long>(got);
  switch (rel) {
    case Rel::AtLeast: return g >= n;
    case Rel::AtMost: return g <= n;
    case Rel::LessThan: return g < n;
    case Rel::MoreThan: return g > n;
    case Rel::Exactly: return g == n;
  }
  return false;
}

// A counting constraint: holds when counter(response) <relation> n.
Constraint counted(const std::string& type, Rel rel, long long n, std::function<size_t(const std::string&)> counter) {
  return {type, type, [=](const std::string& r, std::string* why) {
            size_t got = counter(r);
            *why = cat("got ", got, ", want ", n);
            return compare(got, rel, n);
          }};
}

Constraint parse_constraint(const json& j, size_t idx) {
  TEMPER_CHECK(j.is_object() && j.contains("type") && j["type"].is_string(), "instruction constraint #", idx,
               " must be an object with a string \"type\", got ", j.dump());
  Spec sp(j, idx);
  const std::string type = j["type"].get<std::string>();
  if (type == "word_count") return counted(type, sp.rel(Rel::AtLeast), sp.n(), count_words);
  if (type == "sentence_count") return counted(type, sp.rel(Rel::AtLeast), sp.n(), count_sentences);
  if (type == "paragraph_count") return counted(type, sp.rel(Rel::Exactly), sp.n(), count_paragraphs);
  if (type == "bullet_count") {
    return counted(type, sp.rel(Rel::Exactly), sp.n(), [](const std::string& r) {
      size_t n = 0;
      for (const auto& l : lines_of(r)) {
        std::string t = trim(l);
        if (t.size() >= 2 && (t[0] == '*' || t[0] == '-') && t[1] == ' ') ++n;
      }
      return n;
    });
  }
  if (type == "placeholders") {
    return counted(type, sp.rel(Rel::AtLeast), sp.n(), [](const std::string& r) {
      size_t n = 0;
      for (size_t p = r.find('['); p != std::string::npos; p = r.find('[', p + 1)) {
        size_t e = r.find_first_of("[]\n", p + 1);
        if (e != std::string::npos && r[e] == ']' && e > p + 1) ++n;
      }
      return n;
    });
  }
  if (type == "highlighted_sections") {
    return counted(type, sp.rel(Rel::AtLeast), sp.n(), [](const std::string& r) {
      size_t n = 0;  // *text* spans on one line (not **bold** markers)
      for (size_t p = r.find('*'); p != std::string::npos;) {
        size_t e = r.find_first_of("*\n", p + 1);
        if (e == std::string::npos) break;
        if (r[e] == '*' && e > p + 1 && !trim(r.substr(p + 1, e - p - 1)).empty()) {
          ++n;
          p = r.find('*', e + 1);
        } else {
          p = r[e] == '*' ? e : r.find('*', e + 1);
        }
      }
      return n;
    });
  }
  if (type == "sections") {
    std::string splitter = sp.str_or("splitter", "SECTION");
    return counted(type, sp.rel(Rel::Exactly), sp.n(), [splitter](const std::string& r) {
      size_t n = 0;
      for (const auto& l : lines_of(r)) {
        std::string t = trim(trim(l), "#* \t");  // allow markdown "## SECTION 1" / "**SECTION 1**"
        if (t.rfind(splitter, 0) == 0 && t.size() > splitter.size() + 1 && t[splitter.size()] == ' ' &&
            !std::isspace(static_cast<unsigned char>(t[splitter.size() + 1])))
          ++n;
      }
      return n;
    });
  }
  if (type == "letter_frequency") {
    std::string letter = lower(sp.str("letter"));
    TEMPER_CHECK(letter.size() == 1 && std::isalpha(static_cast<unsigned char>(letter[0])), sp.where(),
                 ": \"letter\" must be a single ASCII letter");
    return counted(type, sp.rel(Rel::AtLeast), sp.n(),
                   [letter](const std::string& r) { return count_substr(lower(r), letter); });
  }
  if (type == "keyword_frequency") {
    std::string kw = lower(sp.str("keyword"));
    return counted(type, sp.rel(Rel::AtLeast), sp.n(),
                   [kw](const std::string& r) { return count_substr(lower(r), kw); });
  }
  auto simple = [&](std::function<bool(const std::string&)> f) {
    return Constraint{type, type, [f](const std::string& r, std::string*) { return f(r); }};
  };
  if (type == "include_keywords" || type == "keywords") {
    auto kws = sp.list({"keywords", "words"});
    return {type, type, [kws](const std::string& r, std::string* why) {
              std::string low = lower(r);
              for (const auto& k : kws)
                if (low.find(lower(k)) == std::string::npos) return *why = "missing '" + k + "'", false;
              return true;
            }};
  }
  if (type == "forbidden_words") {
    auto words = sp.list({"words", "forbidden_words", "keywords"});
    return {type, type, [words](const std::string& r, std::string* why) {
              std::string low = lower(r);
              for (const auto& w : words)
                if (whole_word_present(low, lower(w))) return *why = "contains '" + w + "'", false;
              return true;
            }};
  }
  if (type == "all_uppercase" || type == "all_lowercase") {
    bool upper = type == "all_uppercase";
    return simple([upper](const std::string& r) {
      bool letter = false;
      for (char c : r) {
        auto u = static_cast<unsigned char>(c);
        if (!std::isalpha(u)) continue;
        letter = true;
        if (upper ? std::islower(u) : std::isupper(u)) return false;
      }
      return letter;
    });
  }
  if (type == "json_format") return simple(json_ok);
  if (type == "no_commas") return simple([](const std::string& r) { return r.find(',') == std::string::npos; });
  if (type == "title") {
    return simple([](const std::string& r) {
      for (size_t p = r.find("<<"); p != std::string::npos; p = r.find("<<", p + 2)) {
        size_t e = r.find(">>", p + 2);
        if (e == std::string::npos) return false;
        std::string inner = r.substr(p + 2, e - p - 2);
        if (inner.find('\n') == std::string::npos && !trim(inner).empty()) return true;
      }
      return false;
    });
  }
  if (type == "quotation") {
    return simple([](const std::string& r) {
      std::string t = trim(r);
      return t.size() >= 2 && t.front() == '"' && t.back() == '"';
    });
  }
  if (type == "ends_with" || type == "starts_with") {
    std::string phrase = lower(trim(sp.str("phrase")));
    bool ends = type == "ends_with";
    return simple([phrase, ends](const std::string& r) {
      std::string t = lower(trim(trim(r), "\""));  // IFEval ignores surrounding quotes
      if (t.size() < phrase.size()) return false;
      return ends ? t.compare(t.size() - phrase.size(), phrase.size(), phrase) == 0 : t.rfind(phrase, 0) == 0;
    });
  }
  if (type == "postscript") {
    std::string marker = lower(sp.str_or("marker", "P.S."));
    return simple([marker](const std::string& r) {
      for (const auto& l : lines_of(lower(r)))
        if (lower(trim(l)).rfind(marker, 0) == 0) return true;
      return false;
    });
  }
  fail("instruction constraint #", idx, ": unknown type '", type,
       "' (known: word_count, sentence_count, paragraph_count, include_keywords, forbidden_words, "
       "keyword_frequency, letter_frequency, all_uppercase, all_lowercase, json_format, bullet_count, title, "
       "ends_with, starts_with, no_commas, placeholders, highlighted_sections, sections, quotation, postscript)");
}

// IFEval's loose variants: as is, without '*', without the first and/or last line.
std::vector<std::string> loose_variants(const std::string& r) {
  auto ls = lines_of(r);
  auto join = [&](size_t from, size_t to) {
    std::string out;
    for (size_t i = from; i < to && i < ls.size(); ++i) out += (i > from ? "\n" : "") + ls[i];
    return out;
  };
  size_t n = ls.size();
  std::vector<std::string> base = {r, join(1, n), n > 0 ? join(0, n - 1) : "", n > 1 ? join(1, n - 1) : ""};
  std::vector<std::string> out;
  for (const auto& b : base) {
    out.push_back(b);
    std::string stars = b;
    stars.erase(std::remove(stars.begin(), stars.end(), '*'), stars.end());
    out.push_back(stars);
  }
  return out;
}

}  // namespace

RewardResult instruction_reward(const std::string& response, const nlohmann::json& constraints, bool loose) {
  std::vector<Constraint> cs;
  if (constraints.is_array()) {
    for (size_t i = 0; i < constraints.size(); ++i) cs.push_back(parse_constraint(constraints[i], i));
  } else {
    cs.push_back(parse_constraint(constraints, 0));
  }
  TEMPER_CHECK(!cs.empty(), "instruction reward: the constraint list is empty");

  RewardResult res;
  auto body = strip_think(response);
  if (!body) {
    res.verdict = Verdict::Unparsable;
    res.detail = "unterminated <think> block";
    return res;
  }
  if (trim(*body).empty()) {
    res.detail = "empty response";
    return res;
  }
  std::vector<std::string> variants = loose ? loose_variants(*body) : std::vector<std::string>{*body};
  size_t held = 0;
  std::string failed;
  for (const auto& c : cs) {
    bool ok = false;
    std::string why;
    for (const auto& v : variants) {
      if (trim(v).empty()) continue;
      std::string w;
      if (c.check(v, &w)) {
        ok = true;
        break;
      }
      if (why.empty()) why = w;
    }
    if (ok) ++held;
    else failed += cat(failed.empty() ? "" : "; ", c.label, why.empty() ? "" : " (" + why + ")");
  }
  bool all = held == cs.size();
  res.reward = all ? 1 : 0;
  res.verdict = all ? Verdict::Correct : Verdict::Wrong;
  res.detail = all ? cat("all ", cs.size(), " constraints hold") : cat(held, "/", cs.size(), " hold; failed: ", failed);
  return res;
}

}  // namespace temper
