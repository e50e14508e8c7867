// Tokenizer for math answers: LaTeX, plain text and a few Unicode symbols become
// one token stream (see math_expr.h). Spacing and sizing commands, math-mode
// delimiters and \left/\right disappear here; everything with a meaning is kept.
#include <cctype>
#include <cstring>

#include "rl/rewards/math_expr.h"

namespace temper::mathx {
namespace {

bool alpha(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }
bool digit(char c) { return c >= '0' && c <= '9'; }
bool space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Commands that only change spacing or size: dropped ("\left(" keeps its "(").
const char* const kDropped[] = {"left", "right", "bigl", "bigr", "Bigl", "Bigr", "big", "Big", "biggl", "biggr",
                                "bigg", "Bigg", "middle", "displaystyle", "textstyle", "limits", "nolimits", "boxed",
                                "fbox", "mathbf", "boldsymbol", "bm", "mathit", "mathbb", "mathcal", "mathsf",
                                "mathscr", "mathfrak", "vec", "hat", "bar", "overline", "widehat", "tilde",
                                "overrightarrow", "underline", "rm", "it", "bf", "nonumber", "notag"};
// Commands that stand for a space.
const char* const kSpaces[] = {"quad", "qquad", "enspace", "thinspace", "medspace", "thickspace", "space", "hfill"};
// \text-like commands: their braced argument becomes one Text token.
const char* const kTextCmds[] = {"text", "textbf", "textit", "textrm", "textnormal", "textsf", "texttt", "mbox",
                                 "mathrm", "operatorname", "hbox", "textup", "emph"};
const char* const kGreek[] = {"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta",
                              "vartheta", "iota", "kappa", "lambda", "mu", "nu", "xi", "rho", "varrho", "sigma",
                              "varsigma", "tau", "upsilon", "phi", "varphi", "chi", "psi", "omega", "Gamma", "Delta",
                              "Theta", "Lambda", "Xi", "Sigma", "Upsilon", "Phi", "Psi", "Omega", "ell"};

template <size_t N>
bool in(const char* const (&list)[N], const std::string& w) {
  for (const char* x : list)
    if (w == x) return true;
  return false;
}

struct Lexer {
  const std::string& s;
  size_t i = 0;
  std::vector<Token> out;
  bool pending_space = false;
  int depth = 0;  // open ( [ \{: inside them "12,102" is two numbers unless grouped again ("1,000,000")

  explicit Lexer(const std::string& src) : s(src) {}

  void emit(Tok k, std::string text) {
    if (k == Tok::Punct) {
      if (text == "(" || text == "[" || text == "\\{") ++depth;
      if ((text == ")" || text == "]" || text == "\\}") && depth > 0) --depth;
    }
    out.push_back(Token{k, std::move(text), pending_space});
    pending_space = false;
  }
  void punct(const char* p) { emit(Tok::Punct, p); }

  // The braced group starting at j ("{...}"); returns its content and moves j past it.
  bool braced(size_t& j, std::string* content) {
    while (j < s.size() && space(s[j])) ++j;
    if (j >= s.size() || s[j] != '{') return false;
    int open = 0;
    for (size_t k = j; k < s.size(); ++k) {
      if (s[k] == '\\' && k + 1 < s.size()) {
        ++k;
        continue;
      }
      if (s[k] == '{') ++open;
      if (s[k] == '}' && --open == 0) {
        *content = s.substr(j + 1, k - j - 1);
        j = k + 1;
        return true;
      }
    }
    return false;
  }

  // Thousands separators after a leading group of 1-3 digits: ",ddd", "{,}ddd",
  // ",\!ddd" (spaces allowed after \!), "\,ddd", "\ ddd", "~ddd" and " ddd", each
  // followed by a non-digit. ", ddd" (comma then space) is a list, not a number.
  size_t group_sep(size_t j) const {
    static const char* const seps[] = {"{,}", ",\\!", "\\,", "\\ ", "\\!", ",", "~", " "};
    for (const char* sep : seps) {
      size_t n = std::strlen(sep);
      if (s.compare(j, n, sep) != 0) continue;
      size_t k = j + n;
      if (std::strcmp(sep, ",\\!") == 0 || std::strcmp(sep, "\\!") == 0)
        while (k < s.size() && s[k] == ' ') ++k;
      if (k + 3 <= s.size() && digit(s[k]) && digit(s[k + 1]) && digit(s[k + 2]) &&
          (k + 3 == s.size() || !digit(s[k + 3])))
        return k - j;
    }
    return 0;
  }

  size_t count_groups(size_t j) const {
    size_t n = 0;
    for (size_t k; (k = group_sep(j)) > 0; j += k + 3) ++n;
    return n;
  }

  void number() {
    std::string t;
    size_t lead = 0;
    while (i < s.size() && digit(s[i])) t += s[i++], ++lead;
    bool plain_comma = i + 1 < s.size() && s[i] == ',' && s[i + 1] != '\\';
    size_t groups_needed = depth > 0 && plain_comma ? 2 : 1;
    if (lead >= 1 && lead <= 3 && t[0] != '0' && count_groups(i) >= groups_needed) {
      for (size_t n; i < s.size() && (n = group_sep(i)) > 0;) {
        i += n;
        t.append(s, i, 3);
        i += 3;
      }
    }
    if (i + 1 < s.size() && s[i] == '.' && digit(s[i + 1])) {
      t += s[i++];
      while (i < s.size() && digit(s[i])) t += s[i++];
    } else if (i < s.size() && s[i] == '.' && !t.empty() && (i + 1 == s.size() || !alpha(s[i + 1])) &&
               s.compare(i + 1, 9, "\\overline") != 0) {
      ++i;  // "7." -> 7 (a trailing period is not part of the number, nor a sentence end)
    }
    // a repeating decimal: 0.\overline{3}, 0.1\overline{6}, 0.1\dot{6} -> "0.1(6)"
    for (const char* bar : {"\\overline", "\\dot"}) {
      size_t k = i, n = std::strlen(bar);
      if (k < s.size() && s[k] == '.' && t.find('.') == std::string::npos) ++k;
      if (s.compare(k, n, bar) != 0 || (k + n < s.size() && alpha(s[k + n]))) continue;
      k += n;
      std::string rep;
      if (!braced(k, &rep) || rep.empty() || rep.find_first_not_of("0123456789") != std::string::npos) continue;
      if (t.find('.') == std::string::npos) t += '.';
      t += "(" + rep + ")";
      i = k;
      break;
    }
    // scientific notation written without spaces: 2.5e-3, 1E6
    if (i + 1 < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      size_t k = i + 1;
      if (k < s.size() && (s[k] == '-' || s[k] == '+')) ++k;
      size_t d = k;
      while (k < s.size() && digit(s[k])) ++k;
      if (k > d && (k == s.size() || !alpha(s[k]))) {
        emit(Tok::Num, t);
        emit(Tok::Cmd, "sci");
        emit(Tok::Num, s.substr(i + 1, k - i - 1));
        i = k;
        return;
      }
    }
    emit(Tok::Num, t);
  }

  void command() {
    size_t j = i + 1;
    if (j >= s.size()) {
      ++i;
      return;
    }
    if (!alpha(s[j])) {  // control symbol
      char c = s[j];
      i = j + 1;
      switch (c) {
        case '{': punct("\\{"); return;
        case '}': punct("\\}"); return;
        case '\\': punct("\\\\"); return;
        case '%': punct("%"); return;
        case '$': return;                       // \$ (currency)
        case '(': case ')': case '[': case ']': pending_space = true; return;  // math delimiters
        case '!': return;                       // negative thin space
        case ',': case ';': case ':': case ' ': case '>': pending_space = true; return;
        case '|': punct("|"); return;
        case '#': case '&': case '_': { char b[2] = {c, 0}; emit(Tok::Punct, b); return; }
        default: { char b[3] = {'\\', c, 0}; emit(Tok::Punct, b); return; }
      }
    }
    size_t e = j;
    while (e < s.size() && alpha(s[e])) ++e;
    std::string w = s.substr(j, e - j);
    // "\quadx" (a spacing command run into a letter): the command, then the letters
    for (const char* pre : {"qquad", "quad", "cdot", "times"}) {
      size_t n = std::strlen(pre);
      if (w.size() > n && w.compare(0, n, pre) == 0 && !in(kGreek, w) && w != "timesbar") {
        e = j + n;
        w = pre;
        break;
      }
    }
    i = e;
    if (in(kDropped, w)) {
      if (w == "left" || w == "right" || w == "middle") {  // "\left." is an invisible delimiter
        while (i < s.size() && space(s[i])) ++i;
        if (i < s.size() && s[i] == '.') ++i;
      }
      return;
    }
    if (in(kSpaces, w)) {
      pending_space = true;
      return;
    }
    if (in(kTextCmds, w)) {
      std::string content;
      size_t k = i;
      if (braced(k, &content)) {
        i = k;
        emit(Tok::Text, content);
      }
      return;
    }
    if (w == "color" || w == "textcolor" || w == "label" || w == "tag" || w == "phantom" || w == "hphantom") {
      std::string content;
      size_t k = i;
      if (braced(k, &content)) i = k;  // drop the argument (textcolor keeps the text that follows)
      return;
    }
    if (w == "begin" || w == "end") {
      std::string env;
      size_t k = i;
      if (!braced(k, &env)) {
        emit(Tok::Cmd, w);
        return;
      }
      i = k;
      if (w == "begin" && (env == "array" || env == "tabular")) {
        std::string spec;
        size_t m = i;
        if (braced(m, &spec)) i = m;
      }
      emit(Tok::Cmd, w + ":" + env);
      return;
    }
    if (w == "dfrac" || w == "tfrac" || w == "cfrac") w = "frac";
    if (w == "dbinom" || w == "tbinom") w = "binom";
    if (w == "lt") return punct("<");
    if (w == "gt") return punct(">");
    if (w == "le" || w == "leq" || w == "leqslant" || w == "leqq") return punct("<=");
    if (w == "ge" || w == "geq" || w == "geqslant" || w == "geqq") return punct(">=");
    if (w == "ne" || w == "neq") return punct("!=");
    if (w == "cdot" || w == "times" || w == "ast" || w == "cdotp") return punct("*");
    if (w == "div") return punct("/");
    if (w == "lbrace") return punct("\\{");
    if (w == "rbrace") return punct("\\}");
    if (w == "lbrack") return punct("[");
    if (w == "rbrack") return punct("]");
    if (w == "langle") return punct("(");
    if (w == "rangle") return punct(")");
    if (w == "vert" || w == "lvert" || w == "rvert" || w == "mid") return punct("|");
    if (w == "degree") return punct("\xC2\xB0");
    if (w == "prime") return punct("'");
    if (w == "ldots" || w == "cdots" || w == "dots" || w == "dotsc" || w == "dotsb" || w == "dotsm") {
      return emit(Tok::Cmd, "dots");
    }
    if (w == "varnothing") w = "emptyset";
    if (w == "land" || w == "wedge") w = "and";
    if (w == "lor" || w == "vee") w = "or";
    if (in(kGreek, w)) return emit(Tok::Ident, w);
    emit(Tok::Cmd, w);
  }

  // UTF-8 symbols with a meaning; returns false for anything else.
  bool unicode() {
    struct U {
      const char* utf8;
      Tok kind;
      const char* text;
    };
    static const U table[] = {
        {"\xE2\x88\x92", Tok::Punct, "-"},    {"\xE2\x80\x93", Tok::Punct, "-"},   {"\xC3\x97", Tok::Punct, "*"},
        {"\xC2\xB7", Tok::Punct, "*"},        {"\xE2\x8B\x85", Tok::Punct, "*"},   {"\xC3\xB7", Tok::Punct, "/"},
        {"\xCF\x80", Tok::Cmd, "pi"},         {"\xE2\x88\x9A", Tok::Cmd, "sqrt"},  {"\xE2\x88\x9E", Tok::Cmd, "infty"},
        {"\xE2\x89\xA4", Tok::Punct, "<="},   {"\xE2\x89\xA5", Tok::Punct, ">="},  {"\xE2\x89\xA0", Tok::Punct, "!="},
        {"\xE2\x88\xAA", Tok::Cmd, "cup"},    {"\xE2\x88\x88", Tok::Cmd, "in"},    {"\xC2\xB1", Tok::Cmd, "pm"},
        {"\xE2\x89\x88", Tok::Cmd, "approx"}, {"\xC2\xB0", Tok::Punct, "\xC2\xB0"}, {"\xE2\x80\x99", Tok::Punct, "'"},
        {"\xC2\xB2", Tok::Cmd, "sup2"},       {"\xC2\xB3", Tok::Cmd, "sup3"},      {"\xE2\x88\x85", Tok::Cmd, "emptyset"},
    };
    for (const U& u : table) {
      size_t n = std::strlen(u.utf8);
      if (s.compare(i, n, u.utf8) == 0) {
        i += n;
        if (u.kind == Tok::Cmd && std::strcmp(u.text, "sup2") == 0) {
          punct("^");
          return emit(Tok::Num, "2"), true;
        }
        if (u.kind == Tok::Cmd && std::strcmp(u.text, "sup3") == 0) {
          punct("^");
          return emit(Tok::Num, "3"), true;
        }
        emit(u.kind, u.text);
        return true;
      }
    }
    if (s.compare(i, 2, "\xC2\xA0") == 0) {  // no-break space
      i += 2;
      pending_space = true;
      return true;
    }
    return false;
  }

  void run() {
    while (i < s.size()) {
      char c = s[i];
      if (space(c) || c == '~' || c == '$') {
        ++i;
        pending_space = true;
      } else if (digit(c) || (c == '.' && i + 1 < s.size() && digit(s[i + 1]))) {
        if (c == '.') {  // ".5"
          std::string t = "0.";
          ++i;
          while (i < s.size() && digit(s[i])) t += s[i++];
          emit(Tok::Num, t);
        } else {
          number();
        }
      } else if (c == '\\') {
        command();
      } else if (alpha(c)) {
        size_t e = i;
        while (e < s.size() && alpha(s[e])) ++e;
        if (e - i == 1) {
          emit(Tok::Ident, std::string(1, c));
        } else {
          emit(Tok::Word, s.substr(i, e - i));
        }
        i = e;
      } else if (static_cast<unsigned char>(c) >= 0x80) {
        if (!unicode()) {  // a letter of another script (or an unknown symbol): part of a word
          size_t e = i + 1;
          while (e < s.size() && (static_cast<unsigned char>(s[e]) & 0xC0) == 0x80) ++e;
          emit(Tok::Word, s.substr(i, e - i));
          i = e;
        }
      } else {
        ++i;
        std::string two = s.substr(i - 1, 2);
        if (two == "<=" || two == ">=" || two == "!=" || two == "=<" || two == "=>") {
          ++i;
          emit(Tok::Punct, two == "=<" ? "<=" : two == "=>" ? ">=" : two);
        } else if (two == "**") {
          ++i;
          punct("^");
        } else {
          emit(Tok::Punct, std::string(1, c));
        }
      }
    }
    emit(Tok::End, "");
  }
};

}  // namespace

std::vector<Token> tokenize(const std::string& text) {
  // "\\frac" (a doubled backslash before a command, from over-escaped strings) is "\frac",
  // except inside matrices where "\\" ends a row
  std::string s = text;
  if (s.find("\\begin") == std::string::npos) {
    for (size_t p = s.find("\\\\"); p != std::string::npos; p = s.find("\\\\", p + 1))
      if (p + 2 < s.size() && alpha(s[p + 2])) s.erase(p, 1);
  }
  Lexer lx(s);
  lx.run();
  return std::move(lx.out);
}

}  // namespace temper::mathx
