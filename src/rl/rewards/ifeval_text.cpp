// Words, sentences and capitalised tokens as the official IFEval checkers count them
// (ifeval_text.h). Python's character classes come from unicode_text.h.
//
// Sentences: nltk's Punkt tokenizer (english.pickle) splits after a token that ends in
// '.', '?' or '!' (closing quotes and brackets may follow) and is followed by white space.
// '?' and '!' always end a sentence. A period does too, except:
//  * an abbreviation (a known one such as "Dr.", "etc.", "e.g.", or letters joined by
//    periods such as "U.S."), an initial ("J.") or an ellipsis ("...") ends a sentence only
//    when the next word is one that starts sentences (a capitalised "The", "It", "But", ...);
//  * a number ("1999.") does not when the next word starts in lower case.
// Line breaks alone never end a sentence. Punkt's trained tables (abbreviation types,
// orthographic contexts, sentence starters) are replaced by the word lists below.
#include "rl/rewards/ifeval_text.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "rl/rewards/unicode_text.h"

namespace temper::ifeval {
namespace {

using utext::decode;
using utext::encode;

const char* const kAbbreviations[] = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ft", "vs", "etc", "e.g", "i.e", "eg", "ie", "cf", "al",
    "inc", "ltd", "co", "corp", "dept", "univ", "gen", "gov", "sen", "rep", "col", "lt", "sgt", "capt", "cmdr", "adm",
    "rev", "hon", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mon", "tue",
    "wed", "thu", "fri", "sat", "sun", "no", "nos", "vol", "vols", "fig", "figs", "approx", "est", "misc", "ca",
    "a.m", "p.m", "u.s", "u.k", "u.n", "u.s.a", "e.u", "d.c", "ph.d", "b.a", "m.a", "b.sc", "m.sc", "n.y", "l.a",
    "ave", "blvd", "rd", "pp", "p", "op", "ed", "eds", "esp", "ibid", "viz", "wt", "oz", "lb", "lbs", "min", "max",
    "sq", "cu", "mi", "km", "yr", "yrs", "hr", "hrs", "mo", "mos", "pt", "pts", "tel", "ext", "dist", "assn", "bros"};

// Capitalised words that start sentences (Punkt's sentence starters and the words its
// orthographic statistics show in lower case inside sentences).
const char* const kStarters[] = {
    "the", "a", "an", "i", "it", "he", "she", "we", "they", "you", "this", "that", "these", "those", "there", "here",
    "what", "when", "where", "why", "how", "who", "which", "but", "and", "so", "or", "if", "in", "on", "at", "for",
    "to", "as", "my", "our", "your", "his", "her", "their", "its", "then", "now", "also", "however", "yes", "no",
    "not", "do", "does", "did", "is", "are", "was", "were", "be", "can", "could", "will", "would", "should", "let",
    "please", "thank", "thanks", "well", "oh", "after", "before", "since", "while", "although", "though", "because",
    "with", "without", "by", "from", "of", "all", "some", "many", "most", "each", "every", "one", "two", "first",
    "second", "finally", "next", "another", "other", "such", "both", "either", "neither", "only", "even", "just",
    "still", "yet", "thus", "therefore", "hence", "moreover", "furthermore", "instead", "meanwhile", "otherwise",
    "perhaps", "maybe", "indeed", "overall", "today", "tomorrow", "yesterday", "once", "again", "never", "always",
    "sometimes", "often", "really", "very", "more", "less", "much", "any", "no", "none", "nothing", "everything",
    "something", "anything", "someone", "everyone", "we're", "i'm", "it's", "that's", "there's", "here's", "don't",
    "let's", "wait", "hi", "hello", "dear", "sure", "okay", "ok", "note", "remember", "imagine", "consider", "make",
    "take", "use", "try", "keep", "go", "get", "have", "has", "had", "being", "having", "like", "unlike"};

template <size_t N>
bool listed(const char* const (&list)[N], const std::string& w) {
  for (const char* x : list)
    if (w == x) return true;
  return false;
}

bool closer(char32_t c) {
  return c == '"' || c == '\'' || c == ')' || c == ']' || c == '}' || c == '*' || c == 0x201D || c == 0x2019 ||
         c == 0xBB || c == '>';
}
bool opener(char32_t c) {
  return c == '"' || c == '\'' || c == '(' || c == '[' || c == '{' || c == '*' || c == 0x201C || c == 0x2018 ||
         c == 0xAB || c == '<';
}

std::vector<std::u32string> chunks(const std::u32string& t) {
  std::vector<std::u32string> out;
  std::u32string cur;
  for (char32_t c : t) {
    if (utext::is_space(c)) {
      if (!cur.empty()) out.push_back(cur), cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

// Does the next chunk start a sentence (a capitalised word that starts sentences)?
bool starter(const std::u32string& next) {
  size_t k = 0;
  while (k < next.size() && opener(next[k])) ++k;
  if (k >= next.size() || !utext::is_upper(next[k])) return false;
  std::u32string w;
  for (; k < next.size() && (utext::is_word(next[k]) || next[k] == '\''); ++k) w += next[k];
  return listed(kStarters, utext::lower(encode(w)));
}

bool lower_start(const std::u32string& next) {
  size_t k = 0;
  while (k < next.size() && opener(next[k])) ++k;
  return k < next.size() && utext::is_lower(next[k]);
}

}  // namespace

size_t count_words(const std::string& text) {
  size_t n = 0;
  bool in = false;
  for (char32_t c : decode(text)) {
    bool w = utext::is_word(c);
    if (w && !in) ++n;
    in = w;
  }
  return n;
}

size_t count_sentences(const std::string& text) {
  std::vector<std::u32string> cs = chunks(decode(text));
  if (cs.empty()) return 0;
  size_t breaks = 0;
  for (size_t i = 0; i + 1 < cs.size(); ++i) {
    std::u32string core = cs[i];
    while (!core.empty() && closer(core.back())) core.pop_back();
    if (core.empty()) continue;
    char32_t last = core.back();
    if (last == '?' || last == '!') {
      ++breaks;
      continue;
    }
    if (last != '.') continue;
    const std::u32string& next = cs[i + 1];
    std::u32string word = core.substr(0, core.size() - 1);
    size_t k = 0;
    while (k < word.size() && opener(word[k])) ++k;
    word = word.substr(k);
    if (word.size() >= 1 && word.back() == '.') {  // an ellipsis "..."
      if (starter(next)) ++breaks;
      continue;
    }
    std::string w = utext::lower(encode(word));
    bool dotted = w.find('.') != std::string::npos &&
                  std::all_of(w.begin(), w.end(), [](char c) { return c == '.' || (c >= 'a' && c <= 'z'); });
    bool initial = word.size() == 1 && utext::is_word(word[0]) && !(word[0] >= '0' && word[0] <= '9');
    if (listed(kAbbreviations, w) || dotted || initial) {
      if (starter(next)) ++breaks;
      continue;
    }
    bool number = !word.empty() && std::all_of(word.begin(), word.end(), [](char32_t c) {
      return (c >= '0' && c <= '9') || c == ',' || c == '.';
    });
    if (number && lower_start(next)) continue;
    ++breaks;
  }
  return breaks + 1;
}

// nltk.word_tokenize (Treebank rules) as far as they change which tokens are all capitals:
// quotes, brackets, "...", "?", "!", ";", "@", "#", "$", "%", "&" and a ":" or "," before a
// non-digit are split off; "n't", "'s", "'m", "'d", "'ll", "'re", "'ve" are their own tokens;
// hyphens, slashes and inner periods ("U.S.") stay inside the token.
size_t count_capital_words(const std::string& text) {
  size_t n = 0;
  auto count = [&](const std::u32string& tok) {
    if (tok.empty()) return;
    std::u32string low = utext::lower(tok);
    static const char* const endings[] = {"n't", "'ll", "'re", "'ve", "'s", "'m", "'d"};
    for (const char* e : endings) {
      std::u32string end = decode(e);
      if (low.size() > end.size() && low.compare(low.size() - end.size(), end.size(), end) == 0) {
        std::u32string stem = tok.substr(0, tok.size() - end.size()), tail = tok.substr(tok.size() - end.size());
        n += utext::isupper(stem) ? 1 : 0;
        n += utext::isupper(tail) ? 1 : 0;
        return;
      }
    }
    n += utext::isupper(tok) ? 1 : 0;
  };
  for (const std::u32string& chunk : chunks(decode(text))) {
    std::u32string cur;
    for (size_t i = 0; i < chunk.size(); ++i) {
      char32_t c = chunk[i];
      bool split = c == '"' || c == '(' || c == ')' || c == '[' || c == ']' || c == '{' || c == '}' || c == '<' ||
                   c == '>' || c == '?' || c == '!' || c == ';' || c == '@' || c == '#' || c == '$' || c == '%' ||
                   c == '&' || c == 0x201C || c == 0x201D || c == 0x2018 || c == 0x2019 || c == '`';
      if ((c == ',' || c == ':') && !(i + 1 < chunk.size() && chunk[i + 1] >= '0' && chunk[i + 1] <= '9')) split = true;
      if (c == '.' && i + 2 < chunk.size() && chunk[i + 1] == '.' && chunk[i + 2] == '.') split = true;
      if (c == '\'' && (cur.empty() || i + 1 == chunk.size())) split = true;  // quotes, not apostrophes
      if (split) {
        count(cur);
        cur.clear();
        while (c == '.' && i + 1 < chunk.size() && chunk[i + 1] == '.') ++i;
        continue;
      }
      cur += c;
    }
    count(cur);
  }
  return n;
}

}  // namespace temper::ifeval
