// Language identification for IFEval's language checks (ifeval_text.h), standing in for
// the Python langdetect package the official checker uses. The writing system decides
// first: a script used by one language of langdetect's 55 (Telugu, Tamil, Kannada,
// Malayalam, Gujarati, Gurmukhi, Bengali, Thai, Hangul, kana, Hebrew, Greek) names it.
// Scripts shared by several languages (Latin, Cyrillic, Arabic, Devanagari, Han) go to
// Debian's libexttextcat (N-gram fingerprints), restricted to langdetect's languages of
// that script. Telugu has no libexttextcat fingerprint; its script identifies it.
#include <unistd.h>

#include <cstdlib>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "core/error.h"
#include "rl/rewards/ifeval_text.h"
#include "rl/rewards/unicode_text.h"

extern "C" {
#include <textcat.h>
}

#ifndef TEMPER_TEXTCAT_DATADIR
#define TEMPER_TEXTCAT_DATADIR "/usr/share/libexttextcat"
#endif

namespace temper::ifeval {
namespace {

enum class Script { None, Latin, Cyrillic, Arabic, Devanagari, Han, Unique };

struct Block {
  char32_t lo, hi;
  Script script;
  const char* lang;  // for Script::Unique
};
const Block kBlocks[] = {
    {0x0041, 0x024F, Script::Latin, ""},      {0x1E00, 0x1EFF, Script::Latin, ""},
    {0x0370, 0x03FF, Script::Unique, "el"},   {0x0400, 0x052F, Script::Cyrillic, ""},
    {0x0590, 0x05FF, Script::Unique, "he"},   {0x0600, 0x06FF, Script::Arabic, ""},
    {0x0750, 0x077F, Script::Arabic, ""},     {0xFB50, 0xFDFF, Script::Arabic, ""},
    {0xFE70, 0xFEFF, Script::Arabic, ""},     {0x0900, 0x097F, Script::Devanagari, ""},
    {0x0980, 0x09FF, Script::Unique, "bn"},   {0x0A00, 0x0A7F, Script::Unique, "pa"},
    {0x0A80, 0x0AFF, Script::Unique, "gu"},   {0x0B80, 0x0BFF, Script::Unique, "ta"},
    {0x0C00, 0x0C7F, Script::Unique, "te"},   {0x0C80, 0x0CFF, Script::Unique, "kn"},
    {0x0D00, 0x0D7F, Script::Unique, "ml"},   {0x0E00, 0x0E7F, Script::Unique, "th"},
    {0x1100, 0x11FF, Script::Unique, "ko"},   {0x3130, 0x318F, Script::Unique, "ko"},
    {0xAC00, 0xD7AF, Script::Unique, "ko"},   {0x3040, 0x30FF, Script::Unique, "ja"},
    {0x4E00, 0x9FFF, Script::Han, ""},
};

// langdetect's languages by script (those libexttextcat has fingerprints for are used).
const std::map<Script, std::vector<const char*>> kScriptLanguages = {
    {Script::Latin, {"af", "ca", "cs", "cy", "da", "de", "en", "es", "et", "fi", "fr", "hr", "hu", "id", "it", "lt",
                     "lv", "nl", "no", "pl", "pt", "ro", "sk", "sl", "so", "sq", "sv", "sw", "tl", "tr", "vi"}},
    {Script::Cyrillic, {"bg", "mk", "ru", "uk"}},
    {Script::Arabic, {"ar", "fa", "ur"}},
    {Script::Devanagari, {"hi", "mr", "ne"}},
};

// Frequent function words of langdetect's Latin-script languages: on short texts, where
// N-gram fingerprints are unreliable, they decide when they point clearly to one language.
const std::map<std::string, std::vector<const char*>> kStopwords = {
    {"en", {"the", "is", "and", "of", "to", "in", "that", "it", "you", "are", "was", "this", "with", "for", "not",
            "every", "what", "have", "be", "we", "they", "my", "your", "a", "an", "on", "at", "by", "i"}},
    {"de", {"der", "die", "das", "und", "ist", "nicht", "ich", "sie", "es", "ein", "eine", "zu", "mit", "den", "auf",
            "für", "sich", "dem", "auch", "wir", "wie", "aber", "sind", "ist", "im"}},
    {"fr", {"le", "la", "les", "et", "est", "un", "une", "des", "du", "que", "qui", "pas", "je", "vous", "nous", "dans",
            "pour", "sur", "avec", "ce", "il", "elle", "au", "sont"}},
    {"es", {"el", "la", "los", "las", "y", "es", "un", "una", "que", "de", "en", "no", "por", "con", "para", "del",
            "se", "lo", "como", "pero", "estoy", "está", "muy", "hoy"}},
    {"it", {"il", "lo", "la", "gli", "le", "e", "è", "un", "una", "che", "di", "non", "per", "con", "sono", "del",
            "della", "questo", "ma", "anche", "molto", "nel", "alla"}},
    {"pt", {"o", "a", "os", "as", "e", "é", "um", "uma", "que", "de", "não", "em", "para", "com", "do", "da", "se",
            "mas", "por", "são", "muito", "no", "na", "ele", "ela"}},
    {"nl", {"de", "het", "een", "en", "is", "van", "niet", "dat", "ik", "je", "op", "te", "zijn", "met", "voor", "maar",
            "ook", "er", "wij", "hij"}},
    {"sv", {"och", "är", "att", "det", "som", "en", "ett", "inte", "på", "jag", "med", "för", "av", "till", "har", "de"}},
    {"da", {"og", "er", "at", "det", "som", "en", "et", "ikke", "på", "jeg", "med", "til", "af", "har", "de", "den"}},
    {"no", {"og", "er", "å", "det", "som", "en", "et", "ikke", "på", "jeg", "med", "til", "av", "har", "de", "den"}},
    {"fi", {"ja", "on", "ei", "se", "että", "hän", "oli", "ovat", "mutta", "kun", "tämä", "niin", "myös", "joka",
            "olla", "ovat", "minä", "sinä"}},
    {"pl", {"i", "w", "nie", "na", "się", "jest", "to", "że", "z", "do", "jak", "ale", "co", "tak", "dla", "są"}},
    {"cs", {"a", "je", "v", "na", "se", "to", "že", "s", "z", "do", "jak", "ale", "co", "tak", "pro", "není"}},
    {"tr", {"ve", "bir", "bu", "da", "de", "için", "ile", "çok", "ne", "ama", "gibi", "daha", "olan", "değil"}},
    {"vi", {"là", "và", "của", "có", "không", "một", "những", "các", "được", "cho", "này", "với", "trong", "người",
            "tôi", "bạn"}},
    {"sw", {"na", "ya", "wa", "kwa", "ni", "za", "katika", "la", "kuwa", "hii", "cha", "hiyo", "sana", "yake", "hii"}},
    {"id", {"dan", "yang", "di", "ini", "itu", "dengan", "untuk", "tidak", "dari", "ada", "saya", "akan", "pada"}},
    {"ro", {"și", "este", "în", "un", "o", "de", "la", "nu", "cu", "pe", "care", "pentru", "sunt", "că"}},
    {"hu", {"a", "az", "és", "hogy", "nem", "egy", "van", "is", "de", "meg", "ez", "csak", "már"}},
    {"ca", {"el", "la", "els", "les", "i", "és", "un", "una", "que", "de", "no", "per", "amb", "del", "però"}},
};

// The Latin-script language the function words point to, or "" when they do not decide.
std::string by_stopwords(const std::string& text) {
  std::vector<std::u32string> words;
  std::u32string cur;
  for (char32_t c : utext::lower(utext::decode(text))) {
    if (utext::is_word(c)) {
      cur += c;
    } else if (!cur.empty()) {
      words.push_back(cur), cur.clear();
    }
  }
  if (!cur.empty()) words.push_back(cur);
  std::string best;
  size_t best_n = 0, second = 0;
  for (const auto& [lang, list] : kStopwords) {
    size_t n = 0;
    for (const auto& w : words)
      for (const char* sw : list)
        if (w == utext::decode(sw)) {
          ++n;
          break;
        }
    if (n > best_n) second = best_n, best_n = n, best = lang;
    else if (n > second) second = n;
  }
  bool decisive = best_n >= 2 && best_n >= 2 * second;
  bool short_text = words.size() <= 12 && best_n >= 1 && best_n > second;
  return decisive || short_text ? best : "";
}

std::string data_dir() {
  const char* env = std::getenv("TEMPER_TEXTCAT_DATA");
  return env && *env ? env : TEMPER_TEXTCAT_DATADIR;
}

struct Classifier {
  void* handle = nullptr;
  ~Classifier() {
    if (handle) textcat_Done(handle);
  }
};

// One libexttextcat classifier per shared script, built on first use from a
// configuration file listing that script's fingerprints.
void* classifier(Script s) {
  static std::mutex mu;
  static std::map<Script, std::unique_ptr<Classifier>> made;
  std::lock_guard<std::mutex> lock(mu);
  auto it = made.find(s);
  if (it != made.end()) return it->second->handle;
  const std::string dir = data_dir();
  std::string conf_text;
  for (const char* lang : kScriptLanguages.at(s)) {
    std::string lm = std::string(lang) + ".lm";
    if (FILE* f = std::fopen((dir + "/" + lm).c_str(), "r")) {
      std::fclose(f);
      conf_text += lm + " " + lang + "\n";
    }
  }
  TEMPER_CHECK(!conf_text.empty(), "language identification: no libexttextcat fingerprints (*.lm) in ", dir,
               " (install libexttextcat-data or set TEMPER_TEXTCAT_DATA)");
  const char* tmp = std::getenv("TMPDIR");
  std::string path = std::string(tmp && *tmp ? tmp : "/tmp") + "/temper-textcat-XXXXXX";
  std::vector<char> name(path.begin(), path.end());
  name.push_back('\0');
  int fd = mkstemp(name.data());
  TEMPER_CHECK(fd >= 0, "language identification: cannot create a temporary file in ", path);
  bool written = ::write(fd, conf_text.data(), conf_text.size()) == static_cast<ssize_t>(conf_text.size());
  ::close(fd);
  void* h = written ? special_textcat_Init(name.data(), (dir + "/").c_str()) : nullptr;
  ::unlink(name.data());
  TEMPER_CHECK(h != nullptr, "language identification: libexttextcat could not load the fingerprints in ", dir);
  textcat_SetProperty(h, TCPROP_UTF8AWARE, TC_TRUE);
  auto c = std::make_unique<Classifier>();
  c->handle = h;
  made[s] = std::move(c);
  return h;
}

}  // namespace

std::string detect_language(const std::string& text) {
  std::map<Script, size_t> letters;
  std::map<std::string, size_t> unique;
  for (char32_t c : utext::decode(text)) {
    if (!utext::is_word(c) || (c >= '0' && c <= '9') || c == '_') continue;
    for (const Block& b : kBlocks) {
      if (c < b.lo || c > b.hi) continue;
      ++letters[b.script];
      if (b.script == Script::Unique) ++unique[b.lang];
      break;
    }
  }
  if (letters.empty()) return "";
  Script best = Script::None;
  size_t most = 0;
  for (const auto& [s, n] : letters)
    if (n > most) best = s, most = n;
  if (best == Script::Unique) {
    std::string lang;
    size_t m = 0;
    for (const auto& [l, n] : unique)
      if (n > m) lang = l, m = n;
    return lang;
  }
  if (best == Script::Han) return unique.count("ja") ? "ja" : "zh-cn";
  if (best == Script::Latin) {
    std::string l = by_stopwords(text);
    if (!l.empty()) return l;
  }
  void* h = classifier(best);
  static std::mutex classify_mu;  // a libexttextcat handle is not reentrant
  std::lock_guard<std::mutex> guard(classify_mu);
  const std::string low = utext::lower(text);  // fingerprints are of ordinary (mostly lower-case) text
  const char* r = textcat_Classify(h, low.data(), low.size());
  std::string out = r ? r : "";
  if (out.size() >= 3 && out[0] == '[') return out.substr(1, out.find(']') - 1);
  return "und";  // UNKNOWN (no fingerprint close enough) or SHORT: no language, so no check passes
}

}  // namespace temper::ifeval
