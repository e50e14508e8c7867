// Instruction-following reward: IFEval's verifiable instructions, judged as the official
// checkers (google-research instruction_following_eval: instructions.py,
// instructions_util.py, evaluation_lib.py) judge them. A constraint is
// {"type": <IFEval instruction id or temper alias>, ...kwargs}; docs/rewards.md lists both
// and every place where temper differs. Strict mode checks the response as is; loose mode
// also accepts it with '*' removed and/or its first or last line dropped.
#include <algorithm>
#include <functional>

#include "core/error.h"
#include "rl/rewards/ifeval_format.h"
#include "rl/rewards/ifeval_text.h"
#include "rl/rewards/reward.h"
#include "rl/rewards/unicode_text.h"

namespace temper {
namespace {

using json = nlohmann::json;
using utext::decode;
using utext::encode;

enum class Rel { AtLeast, AtMost, LessThan, MoreThan, Exactly };

bool compare(long long got, Rel rel, long long n) {
  switch (rel) {
    case Rel::AtLeast: return got >= n;
    case Rel::AtMost: return got <= n;
    case Rel::LessThan: return got < n;
    case Rel::MoreThan: return got > n;
    case Rel::Exactly: return got == n;
  }
  return false;
}

using Check = std::function<bool(const std::string& response, std::string* why)>;

struct Constraint {
  std::string type;
  Check check;
};

class Spec {  // typed access to one constraint object, with actionable errors
 public:
  Spec(const json& j, size_t idx) : j_(j), idx_(idx) {}
  std::string where() const { return cat("instruction constraint #", idx_, " (", j_.dump(), ")"); }
  bool has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }
  long long n(std::initializer_list<const char*> keys) const {
    for (const char* key : keys) {
      if (!has(key)) continue;
      TEMPER_CHECK(j_[key].is_number_integer() && j_[key].get<long long>() >= 0, where(), ": \"", key,
                   "\" must be a non-negative integer");
      return j_[key].get<long long>();
    }
    fail(where(), ": needs a non-negative integer \"", *keys.begin(), "\"");
  }
  std::string str(std::initializer_list<const char*> keys) const {
    for (const char* key : keys) {
      if (!has(key)) continue;
      TEMPER_CHECK(j_[key].is_string() && !j_[key].get<std::string>().empty(), where(), ": \"", key,
                   "\" must be a non-empty string");
      return j_[key].get<std::string>();
    }
    fail(where(), ": needs a string \"", *keys.begin(), "\"");
  }
  std::vector<std::string> list(std::initializer_list<const char*> keys) const {
    for (const char* key : keys) {
      if (!has(key)) continue;
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
  Rel rel(std::initializer_list<const char*> keys, Rel dflt) const {
    for (const char* key : keys) {
      if (!has(key)) continue;
      std::string r = utext::lower(str({key}));
      std::replace(r.begin(), r.end(), '_', ' ');
      if (r == "at least" || r == ">=") return Rel::AtLeast;
      if (r == "at most" || r == "<=") return Rel::AtMost;
      if (r == "less than" || r == "<") return Rel::LessThan;
      if (r == "more than" || r == ">") return Rel::MoreThan;
      if (r == "exactly" || r == "==" || r == "=") return Rel::Exactly;
      fail(where(), ": unknown relation '", r, "' (use less than, at least, at most, more than, exactly)");
    }
    return dflt;
  }

 private:
  const json& j_;
  size_t idx_;
};

// A counting constraint: holds when counter(response) <relation> n.
Check counted(Rel rel, long long n, std::function<long long(const std::string&)> counter) {
  return [=](const std::string& r, std::string* why) {
    long long got = counter(r);
    *why = cat("got ", got, ", want ", n);
    return compare(got, rel, n);
  };
}

Check simple(std::function<bool(const std::string&)> f) {
  return [f](const std::string& r, std::string*) { return f(r); };
}

size_t count_occurrences(const std::u32string& hay, const std::u32string& needle) {
  size_t n = 0;
  if (needle.empty()) return 0;
  for (size_t p = hay.find(needle); p != std::u32string::npos; p = hay.find(needle, p + needle.size())) ++n;
  return n;
}

// re.search(r"\b" + word + r"\b", text, re.IGNORECASE)
bool whole_word(const std::u32string& text_low, const std::u32string& word_low) {
  if (word_low.empty()) return false;
  auto w = [&](size_t i) { return i < text_low.size() && utext::is_word(text_low[i]); };
  for (size_t p = text_low.find(word_low); p != std::u32string::npos; p = text_low.find(word_low, p + 1)) {
    size_t e = p + word_low.size();
    bool left = (p > 0 && w(p - 1)) != w(p), right = w(e - 1) != w(e);
    if (left && right) return true;
  }
  return false;
}

bool json_ok(const std::string& response) {
  std::string s = utext::strip(response);
  for (const char* pre : {"```json", "```Json", "```JSON", "```"})
    if (s.rfind(pre, 0) == 0) {
      s = s.substr(std::string(pre).size());
      break;
    }
  if (s.size() >= 3 && s.compare(s.size() - 3, 3, "```") == 0) s.resize(s.size() - 3);
  s = utext::strip(s);
  int depth = 0, max_depth = 0;  // refuse absurd nesting before handing it to the parser
  for (char c : s) {
    if (c == '[' || c == '{') max_depth = std::max(max_depth, ++depth);
    if (c == ']' || c == '}') --depth;
  }
  if (max_depth > 256) return false;
  return !json::parse(s, nullptr, false).is_discarded();
}

// The language checks: undetectable text (no letters) counts as followed, as officially.
bool in_language(const std::string& text, const std::string& lang) {
  std::string got = ifeval::detect_language(text);
  return got.empty() || got == lang;
}

Constraint make(const json& j, size_t idx) {
  TEMPER_CHECK(j.is_object() && j.contains("type") && j["type"].is_string(), "instruction constraint #", idx,
               " must be an object with a string \"type\", got ", j.dump());
  Spec sp(j, idx);
  const std::string type = j["type"].get<std::string>();
  auto with = [&](Check c) { return Constraint{type, std::move(c)}; };
  const Rel lt_or_ge = Rel::AtLeast;
  // ---- counts -------------------------------------------------------------------
  if (type == "length_constraints:number_words" || type == "word_count")
    return with(counted(sp.rel({"relation"}, lt_or_ge), sp.n({"num_words", "n"}),
                        [](const std::string& r) { return long(ifeval::count_words(r)); }));
  if (type == "length_constraints:number_sentences" || type == "sentence_count")
    return with(counted(sp.rel({"relation"}, lt_or_ge), sp.n({"num_sentences", "n"}),
                        [](const std::string& r) { return long(ifeval::count_sentences(r)); }));
  if (type == "length_constraints:number_paragraphs" || type == "paragraph_count") {
    Rel rel = sp.rel({"relation"}, Rel::Exactly);
    long long n = sp.n({"num_paragraphs", "n"});
    return with([rel, n](const std::string& r, std::string* why) {
      long got = ifeval::count_star_paragraphs(decode(r));
      *why = got < 0 ? std::string("an empty paragraph between two ***") : cat("got ", got, ", want ", n);
      return got >= 0 && compare(got, rel, n);
    });
  }
  if (type == "length_constraints:nth_paragraph_first_word") {
    long long n = sp.n({"num_paragraphs"}), nth = sp.n({"nth_paragraph"});
    std::u32string first = utext::lower(decode(sp.str({"first_word"})));
    return with(simple([n, nth, first](const std::string& r) {
      std::vector<std::u32string> paras = ifeval::split(decode(r), U"\n\n");
      long long count = 0;
      for (const auto& p : paras) count += utext::strip(p).empty() ? 0 : 1;
      if (nth < 1 || nth > count || static_cast<size_t>(nth) > paras.size()) return false;
      std::u32string p = utext::strip(paras[static_cast<size_t>(nth - 1)]);
      if (p.empty()) return false;
      size_t e = 0;
      while (e < p.size() && !utext::is_space(p[e])) ++e;
      std::u32string word = p.substr(0, e);
      size_t a = 0;
      while (a < word.size() && word[a] == '\'') ++a;
      while (a < word.size() && word[a] == '"') ++a;
      std::u32string got;
      for (size_t k = a; k < word.size(); ++k) {
        char32_t c = word[k];
        if (c == '.' || c == ',' || c == '?' || c == '!' || c == '\'' || c == '"') break;
        got += c;
      }
      return count == n && utext::lower(got) == first;
    }));
  }
  if (type == "detectable_content:number_placeholders" || type == "placeholders")
    return with(counted(sp.rel({"relation"}, Rel::AtLeast), sp.n({"num_placeholders", "n"}),
                        [](const std::string& r) { return long(ifeval::count_placeholders(decode(r))); }));
  if (type == "detectable_format:number_bullet_lists" || type == "bullet_count")
    return with(counted(sp.rel({"relation"}, Rel::Exactly), sp.n({"num_bullets", "n"}),
                        [](const std::string& r) { return long(ifeval::count_bullets(decode(r))); }));
  if (type == "detectable_format:number_highlighted_sections" || type == "highlighted_sections")
    return with(counted(sp.rel({"relation"}, Rel::AtLeast), sp.n({"num_highlights", "n"}),
                        [](const std::string& r) { return long(ifeval::count_highlights(decode(r))); }));
  if (type == "detectable_format:multiple_sections" || type == "sections") {
    std::u32string splitter = utext::strip(decode(sp.has("section_spliter") || sp.has("splitter")
                                                      ? sp.str({"section_spliter", "splitter"})
                                                      : std::string("SECTION")));
    return with(counted(sp.rel({"relation"}, Rel::AtLeast), sp.n({"num_sections", "n"}), [splitter](const std::string& r) {
      return long(ifeval::count_sections(decode(r), splitter));
    }));
  }
  if (type == "change_case:capital_word_frequency")
    return with(counted(sp.rel({"capital_relation", "relation"}, lt_or_ge), sp.n({"capital_frequency", "n"}),
                        [](const std::string& r) { return long(ifeval::count_capital_words(r)); }));
  // ---- keywords -------------------------------------------------------------------
  if (type == "keywords:existence" || type == "include_keywords" || type == "keywords") {
    std::vector<std::u32string> kws;
    for (const auto& k : sp.list({"keywords", "words"})) kws.push_back(utext::lower(decode(k)));
    return with([kws](const std::string& r, std::string* why) {
      std::u32string low = utext::lower(decode(r));
      for (const auto& k : kws)
        if (low.find(k) == std::u32string::npos) return *why = "missing '" + encode(k) + "'", false;
      return true;
    });
  }
  if (type == "keywords:forbidden_words" || type == "forbidden_words") {
    std::vector<std::u32string> words;
    for (const auto& w : sp.list({"forbidden_words", "words", "keywords"})) words.push_back(utext::lower(decode(w)));
    return with([words](const std::string& r, std::string* why) {
      std::u32string low = utext::lower(decode(r));
      for (const auto& w : words)
        if (whole_word(low, w)) return *why = "contains '" + encode(w) + "'", false;
      return true;
    });
  }
  if (type == "keywords:frequency" || type == "keyword_frequency") {
    std::u32string kw = utext::lower(utext::strip(decode(sp.str({"keyword"}))));
    return with(counted(sp.rel({"relation"}, lt_or_ge), sp.n({"frequency", "n"}), [kw](const std::string& r) {
      return long(count_occurrences(utext::lower(decode(r)), kw));
    }));
  }
  if (type == "keywords:letter_frequency" || type == "letter_frequency") {
    std::u32string letter = utext::lower(utext::strip(decode(sp.str({"letter"}))));
    TEMPER_CHECK(letter.size() == 1, sp.where(), ": \"letter\" must be one character");
    char32_t c = letter[0];
    return with(counted(sp.rel({"let_relation", "relation"}, lt_or_ge), sp.n({"let_frequency", "n"}),
                        [c](const std::string& r) {
                          std::u32string low = utext::lower(decode(r));
                          return long(std::count(low.begin(), low.end(), c));
                        }));
  }
  // ---- case and language ------------------------------------------------------------
  if (type == "change_case:english_capital")
    return with(simple([](const std::string& r) { return utext::isupper(decode(r)) && in_language(r, "en"); }));
  if (type == "change_case:english_lowercase")
    return with(simple([](const std::string& r) { return utext::islower(decode(r)) && in_language(r, "en"); }));
  if (type == "all_uppercase") return with(simple([](const std::string& r) { return utext::isupper(decode(r)); }));
  if (type == "all_lowercase") return with(simple([](const std::string& r) { return utext::islower(decode(r)); }));
  if (type == "language:response_language" || type == "response_language") {
    std::string lang = sp.str({"language"});
    return with([lang](const std::string& r, std::string* why) {
      std::string got = ifeval::detect_language(r);
      *why = "language '" + got + "', want '" + lang + "'";
      return got.empty() || got == lang;
    });
  }
  // ---- format -------------------------------------------------------------------------
  if (type == "detectable_format:json_format" || type == "json_format") return with(simple(json_ok));
  if (type == "detectable_format:title" || type == "title")
    return with(simple([](const std::string& r) { return ifeval::has_title(decode(r)); }));
  if (type == "punctuation:no_comma" || type == "no_commas")
    return with(simple([](const std::string& r) { return r.find(',') == std::string::npos; }));
  if (type == "startend:quotation" || type == "quotation") {
    return with(simple([](const std::string& r) {
      std::u32string t = utext::strip(decode(r));
      return t.size() > 1 && t.front() == '"' && t.back() == '"';
    }));
  }
  if (type == "startend:end_checker" || type == "ends_with") {
    std::u32string phrase = utext::lower(utext::strip(decode(sp.str({"end_phrase", "phrase"}))));
    return with(simple([phrase](const std::string& r) {
      std::u32string t = utext::strip(decode(r));
      size_t a = 0, b = t.size();
      while (a < b && t[a] == '"') ++a;
      while (b > a && t[b - 1] == '"') --b;
      t = utext::lower(t.substr(a, b - a));
      return t.size() >= phrase.size() && t.compare(t.size() - phrase.size(), phrase.size(), phrase) == 0;
    }));
  }
  if (type == "starts_with") {  // multi-turn:constrained_start: a line that begins with the phrase
    std::u32string phrase = utext::strip(decode(sp.str({"starter", "phrase"})));
    return with(simple([phrase](const std::string& r) {
      std::u32string t = decode(r);
      for (size_t p = 0; p <= t.size();) {
        size_t q = p;
        while (q < t.size() && utext::is_space(t[q])) ++q;
        if (t.compare(q, phrase.size(), phrase) == 0) return true;
        size_t nl = t.find(U'\n', p);
        if (nl == std::u32string::npos) break;
        p = nl + 1;
      }
      return false;
    }));
  }
  if (type == "detectable_content:postscript" || type == "postscript") {
    std::string marker = utext::strip(sp.has("postscript_marker") || sp.has("marker")
                                          ? sp.str({"postscript_marker", "marker"})
                                          : std::string("P.S."));
    return with(simple([marker](const std::string& r) {
      std::u32string t = utext::lower(decode(r));
      auto dot_letters = [&](const std::vector<char32_t>& letters, bool final_dot) {
        for (size_t p = 0; p < t.size(); ++p) {  // p\.\s?p\.\s?s  /  p\.\s?s\.
          size_t k = p;
          bool ok = true;
          for (size_t i = 0; i < letters.size() && ok; ++i) {
            if (i > 0 && k < t.size() && utext::is_space(t[k])) ++k;
            ok = k < t.size() && t[k] == letters[i];
            ++k;
            bool dot = i + 1 < letters.size() || final_dot;
            if (ok && dot) ok = k < t.size() && t[k++] == '.';
          }
          if (ok) return true;
        }
        return false;
      };
      if (marker == "P.P.S") return dot_letters({U'p', U'p', U's'}, false);
      if (marker == "P.S.") return dot_letters({U'p', U's'}, true);
      return t.find(utext::lower(decode(marker))) != std::u32string::npos;
    }));
  }
  if (type == "detectable_format:constrained_response") {
    return with(simple([](const std::string& r) {
      std::string t = utext::strip(r);
      for (const char* o : {"My answer is yes.", "My answer is no.", "My answer is maybe."})
        if (t.find(o) != std::string::npos) return true;
      return false;
    }));
  }
  if (type == "combination:two_responses") {
    return with(simple([](const std::string& r) {
      std::vector<std::u32string> parts = ifeval::split(decode(r), U"******"), valid;
      for (size_t i = 0; i < parts.size(); ++i) {
        if (!utext::strip(parts[i]).empty()) valid.push_back(parts[i]);
        else if (i != 0 && i + 1 != parts.size()) return false;
      }
      return valid.size() == 2 && utext::strip(valid[0]) != utext::strip(valid[1]);
    }));
  }
  if (type == "combination:repeat_prompt") {
    std::u32string prompt = utext::lower(utext::strip(decode(sp.str({"prompt_to_repeat"}))));
    return with(simple([prompt](const std::string& r) {
      return utext::lower(utext::strip(decode(r))).compare(0, prompt.size(), prompt) == 0;
    }));
  }
  fail("instruction constraint #", idx, ": unknown type '", type,
       "' (the 25 IFEval instruction ids, e.g. length_constraints:number_words, or temper's word_count, "
       "sentence_count, paragraph_count, include_keywords, forbidden_words, keyword_frequency, letter_frequency, "
       "all_uppercase, all_lowercase, response_language, json_format, bullet_count, title, ends_with, starts_with, "
       "no_commas, placeholders, highlighted_sections, sections, quotation, postscript)");
}

// evaluation_lib.py's loose variants: as is, without '*', without the first and/or last
// line (stripped), and those without '*'.
std::vector<std::string> loose_variants(const std::string& r) {
  std::vector<std::string> lines;
  size_t from = 0;
  for (size_t p = r.find('\n'); p != std::string::npos; p = r.find('\n', from)) {
    lines.push_back(r.substr(from, p - from));
    from = p + 1;
  }
  lines.push_back(r.substr(from));
  auto join = [&](size_t a, size_t b) {
    std::string out;
    for (size_t i = a; i < b && i < lines.size(); ++i) out += (i > a ? "\n" : "") + lines[i];
    return utext::strip(out);
  };
  auto no_stars = [](std::string s) {
    s.erase(std::remove(s.begin(), s.end(), '*'), s.end());
    return s;
  };
  size_t n = lines.size();
  std::string first = join(1, n), last = n ? join(0, n - 1) : "", both = n > 1 ? join(1, n - 1) : "";
  return {r, no_stars(r), first, last, both, no_stars(first), no_stars(last), no_stars(both)};
}

// {"instruction_id_list": [...], "kwargs": [...]} (an IFEval record) as constraints.
json from_ifeval_record(const json& c) {
  const json& ids = c["instruction_id_list"];
  const json kwargs = c.contains("kwargs") ? c["kwargs"] : json::array();
  TEMPER_CHECK(ids.is_array() && kwargs.is_array() && (kwargs.empty() || kwargs.size() == ids.size()),
               "instruction constraints: \"instruction_id_list\" and \"kwargs\" must be arrays of equal length");
  json out = json::array();
  for (size_t i = 0; i < ids.size(); ++i) {
    json o = kwargs.empty() || !kwargs[i].is_object() ? json::object() : kwargs[i];
    o["type"] = ids[i];
    out.push_back(o);
  }
  return out;
}

}  // namespace

RewardResult instruction_reward(const std::string& response, const nlohmann::json& constraints_in, bool loose) {
  const json constraints = constraints_in.is_object() && constraints_in.contains("instruction_id_list")
                               ? from_ifeval_record(constraints_in)
                               : constraints_in;
  std::vector<Constraint> cs;
  if (constraints.is_array()) {
    for (size_t i = 0; i < constraints.size(); ++i) cs.push_back(make(constraints[i], i));
  } else {
    cs.push_back(make(constraints, 0));
  }
  TEMPER_CHECK(!cs.empty(), "instruction reward: the constraint list is empty");

  RewardResult res;
  auto body = strip_think(response);
  if (!body) {
    res.verdict = Verdict::Unparsable;
    res.detail = "unterminated <think> block";
    return res;
  }
  if (utext::strip(*body).empty()) {
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
      if (utext::strip(v).empty()) continue;
      std::string w;
      if (c.check(v, &w)) {
        ok = true;
        break;
      }
      if (why.empty()) why = w;
    }
    if (ok) ++held;
    else failed += cat(failed.empty() ? "" : "; ", c.type, why.empty() ? "" : " (" + why + ")");
  }
  bool all = held == cs.size();
  res.reward = all ? 1 : 0;
  res.verdict = all ? Verdict::Correct : Verdict::Wrong;
  res.detail = all ? cat("all ", cs.size(), " constraints hold") : cat(held, "/", cs.size(), " hold; failed: ", failed);
  return res;
}

bool ifeval_instruction_followed(const std::string& response, const nlohmann::json& constraint, bool loose) {
  Constraint c = make(constraint, 0);
  std::vector<std::string> variants = loose ? loose_variants(response) : std::vector<std::string>{response};
  for (const auto& v : variants) {
    std::string why;
    if (!utext::strip(v).empty() && c.check(v, &why)) return true;
  }
  return false;
}

}  // namespace temper
