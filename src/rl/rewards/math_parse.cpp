// Recursive-descent parser from tokens (math_lex.cpp) to an expression tree.
//
//   list     := rel ((',' | ';' | and | or) rel)*          a bare list (unordered)
//   rel      := ratio (relop ratio)*                        = < <= > >= != \approx \in
//   ratio    := union (':' union)*
//   union    := add (\cup add)*
//   add      := mul (('+' | '-' | \pm | \mp) mul)*
//   mul      := unary (('*' | '/' | implicit) postfix)*     units after a quantity dropped
//   unary    := ('-' | '+') unary | postfix
//   postfix  := primary ('^' arg | '_' arg | '!' | '%' | '°')*
//   primary  := number | letter | \frac | \sqrt | function | constant | ( ) [ ] { } \{ \} | |x| | matrix | text
#include <algorithm>
#include <cctype>

#include "rl/rewards/math_expr.h"

namespace temper::mathx {
namespace {

struct ParseFail {
  std::string why;
};

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string squash(const std::string& s) {  // trim and collapse whitespace
  std::string out;
  bool sp = false;
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      sp = !out.empty();
    } else {
      if (sp) out += ' ';
      out += c;
      sp = false;
    }
  }
  return out;
}

// Exact value of a decimal literal ("12", "3.50"); nullopt when it does not fit.
std::optional<Rat> decimal(const std::string& t) {
  __int128 n = 0, d = 1;
  bool neg = false, dot = false, any = false;
  size_t i = 0;
  if (i < t.size() && (t[i] == '-' || t[i] == '+')) neg = t[i++] == '-';
  for (; i < t.size(); ++i) {
    if (t[i] == '.') {
      if (dot) return std::nullopt;
      dot = true;
      continue;
    }
    if (t[i] < '0' || t[i] > '9') return std::nullopt;
    if (n > (static_cast<__int128>(1) << 110) || d > (static_cast<__int128>(1) << 110)) return std::nullopt;
    n = n * 10 + (t[i] - '0');
    if (dot) d *= 10;
    any = true;
  }
  if (!any) return std::nullopt;
  return rat_make(neg ? -n : n, d);
}

// "0.1(6)": a repeating decimal 0.1666... as an exact fraction.
std::optional<Rat> repeating(const std::string& t) {
  size_t open = t.find('('), dot = t.find('.');
  if (open == std::string::npos || dot == std::string::npos || t.back() != ')') return std::nullopt;
  std::string head = t.substr(0, open), rep = t.substr(open + 1, t.size() - open - 2);
  std::string digits = head.substr(0, dot) + head.substr(dot + 1);
  size_t frac_len = head.size() - dot - 1;
  auto a = decimal(digits + rep), b = decimal(digits.empty() ? "0" : digits);
  if (!a || !b || rep.size() > 18 || frac_len > 18) return std::nullopt;
  __int128 den = 1;
  for (size_t k = 0; k < rep.size(); ++k) den *= 10;
  den -= 1;
  for (size_t k = 0; k < frac_len; ++k) den *= 10;
  return rat_make(a->num - b->num, den);
}

ExprP number(const std::string& t) {
  if (t.find('(') != std::string::npos) {
    auto r = repeating(t);
    if (!r) throw ParseFail{"bad repeating decimal " + t};
    return num(*r);
  }
  if (auto r = decimal(t)) {
    auto e = std::const_pointer_cast<Expr>(num(*r, t.find('.') != std::string::npos));
    e->name = t;
    return e;
  }
  auto e = std::make_shared<Expr>();  // too long for 128 bits: kept as its digits and a double
  e->kind = K::Num;
  e->exact = false;
  e->val = std::strtold(t.c_str(), nullptr);
  e->is_float = t.find('.') != std::string::npos;
  e->name = t;
  return e;
}

ExprP integer(long long v) { return num(Rat{v, 1}); }
ExprP mul(ExprP a, ExprP b) { return node(K::Mul, {std::move(a), std::move(b)}); }
ExprP neg(ExprP a) { return mul(integer(-1), std::move(a)); }
ExprP inv(ExprP a) { return node(K::Pow, {std::move(a), integer(-1)}); }
ExprP func(const std::string& name, std::vector<ExprP> args) { return node(K::Func, std::move(args), name); }
ExprP constant(const std::string& name) {
  auto e = std::const_pointer_cast<Expr>(node(K::Const, {}, name));
  return e;
}

const char* const kFuncs[] = {"sin", "cos", "tan", "sec", "csc", "cot", "arcsin", "arccos", "arctan", "sinh", "cosh",
                              "tanh", "ln", "log", "exp", "lg", "gcd", "lcm", "max", "min", "arccot", "arcsec",
                              "arccsc", "coth", "sech", "csch"};
bool is_func_name(const std::string& w) {
  return std::find(std::begin(kFuncs), std::end(kFuncs), w) != std::end(kFuncs);
}

// Words that name a unit: dropped after a quantity ("12 cm", "5 \text{ cents}").
// Any \text{...} after a quantity is a unit too; plain words only when listed.
const char* const kUnits[] = {
    "cm", "m", "km", "mm", "in", "inch", "inches", "ft", "feet", "foot", "yd", "yard", "yards", "mile", "miles",
    "meter", "meters", "metre", "metres", "centimeter", "centimeters", "kilometer", "kilometers", "millimeter",
    "millimeters", "s", "sec", "second", "seconds", "min", "minute", "minutes", "h", "hr", "hrs", "hour", "hours",
    "day", "days", "week", "weeks", "month", "months", "year", "years", "yr", "yrs", "dollar", "dollars", "cent",
    "cents", "unit", "units", "sq", "square", "cubic", "cu", "kg", "g", "gram", "grams", "lb", "lbs", "pound",
    "pounds", "oz", "ounce", "ounces", "liter", "liters", "litre", "litres", "ml", "gallon", "gallons", "mph", "kmh",
    "kph", "mps", "point", "points", "people", "person", "persons", "students", "student", "apple", "apples",
    "ways", "way", "times", "steps", "step", "edges", "edge", "tiles", "tile", "digits", "digit", "coins", "coin",
    "marbles", "marble", "pages", "page", "boxes", "box", "books", "book", "cups", "cup", "balls", "ball", "pieces",
    "piece", "rupees", "rupee", "rs", "euros", "euro", "pence", "acres", "acre", "hectares", "hectare", "ohm", "ohms",
    "am", "pm", "o'clock", "radians", "radian", "rad", "sq.", "cm^2", "m^2", "items", "item", "men", "women",
    "children", "boys", "girls", "players", "teams", "games", "cars", "trees", "eggs", "cookies", "candies"};
bool is_unit(const std::string& w) {
  return std::find(std::begin(kUnits), std::end(kUnits), lower(w)) != std::end(kUnits);
}

// Number words that scale the quantity before them: "4 thousand" is 4000, not 4.
std::optional<long long> multiplier(const std::string& w) {
  std::string l = lower(w);
  if (l == "dozen") return 12;
  if (l == "hundred") return 100;
  if (l == "thousand") return 1000;
  if (l == "million") return 1000000;
  if (l == "billion") return 1000000000;
  if (l == "trillion") return 1000000000000LL;
  return std::nullopt;
}

bool is_percent_word(const std::string& w) {
  std::string l = lower(w);
  return l == "percent" || l == "pct" || l == "percentage" || l == "per cent";
}
bool is_degree_word(const std::string& w) {
  std::string l = lower(w);
  return l == "degree" || l == "degrees" || l == "deg" || l == "degs";
}
bool is_sep_word(const std::string& w) {
  std::string l = lower(squash(w));
  return l == "and" || l == "or" || l == ", and" || l == ", or" || l == ",and" || l == ",or";
}

class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {
    // a sentence's final period ("\\frac{14}{3}.") is not part of the answer
    while (t_.size() >= 2 && t_[t_.size() - 2].kind == Tok::Punct && t_[t_.size() - 2].text == ".")
      t_.erase(t_.end() - 2);
  }

  ExprP parse() {
    if (all_words()) return text_answer();
    ExprP e = list(kEnd);
    if (peek().kind != Tok::End) fail("unexpected '" + peek().text + "'");
    return e;
  }

 private:
  enum Stop { kEnd, kParen, kBrace, kSetBrace, kCell };
  std::vector<Token> t_;
  size_t p_ = 0;
  int depth_ = 0, abs_depth_ = 0;

  [[noreturn]] void fail(const std::string& why) { throw ParseFail{why}; }
  const Token& peek(size_t k = 0) const { return t_[std::min(p_ + k, t_.size() - 1)]; }
  const Token& next() {
    const Token& tk = peek();
    if (p_ < t_.size() - 1) ++p_;
    return tk;
  }
  bool punct(const char* s, size_t k = 0) const { return peek(k).kind == Tok::Punct && peek(k).text == s; }
  bool cmd(const char* s, size_t k = 0) const { return peek(k).kind == Tok::Cmd && peek(k).text == s; }
  bool wordish(size_t k = 0) const { return peek(k).kind == Tok::Word || peek(k).kind == Tok::Text; }
  void expect(const char* s) {
    if (!punct(s)) fail(std::string("expected '") + s + "', got '" + peek().text + "'");
    next();
  }
  struct Guard {  // bounds recursion on adversarial nesting
    Parser& p;
    explicit Guard(Parser& pp) : p(pp) {
      if (++p.depth_ > 200) p.fail("nesting too deep");
    }
    ~Guard() { --p.depth_; }
  };

  // An answer made only of words ("Evelyn", "\text{east}", "no solution") is text.
  bool all_words() const {
    bool word = false;
    for (const Token& tk : t_) {
      if (tk.kind == Tok::Word || tk.kind == Tok::Text) {
        std::string l = lower(squash(tk.text));
        if (is_func_name(l) || l == "pi" || l == "inf" || l == "infinity" || l.empty()) return false;
        if (tk.kind == Tok::Text) {  // \text{13}, \text{(C)} are text; \text{x^2} is not
          for (char c : l)
            if (std::string("+-*/^=<>_\\").find(c) != std::string::npos) return false;
        }
        word = true;
      } else if (tk.kind == Tok::Ident) {
        continue;
      } else if (tk.kind == Tok::Punct && (tk.text == "(" || tk.text == ")" || tk.text == "." || tk.text == "'")) {
        continue;
      } else if (tk.kind != Tok::End) {
        return false;
      }
    }
    return word;
  }
  ExprP text_answer() {
    std::string s;
    for (const Token& tk : t_) {
      if (tk.kind == Tok::End) break;
      if (tk.space_before && !s.empty()) s += ' ';
      s += tk.text;
    }
    return node(K::Text, {}, lower(squash(s)));
  }

  bool at_stop(Stop stop) const {
    const Token& tk = peek();
    if (tk.kind == Tok::End) return true;
    if (tk.kind == Tok::Cmd && tk.text.rfind("end:", 0) == 0) return true;
    if (tk.kind != Tok::Punct) return false;
    const std::string& x = tk.text;
    switch (stop) {
      case kEnd: return false;
      case kParen: return x == ")" || x == "]";
      case kBrace: return x == "}";
      case kSetBrace: return x == "\\}";
      case kCell: return x == "&" || x == "\\\\";
    }
    return false;
  }

  bool at_separator() const {
    if (punct(",") || punct(";")) return true;
    return wordish() && is_sep_word(peek().text);
  }

  ExprP list(Stop stop) {
    Guard g(*this);
    std::vector<ExprP> items;
    while (true) {
      while (at_separator()) next();  // "1, and 2", leading/trailing separators
      if (at_stop(stop)) break;
      items.push_back(rel());
      if (!at_separator() && !at_stop(stop)) fail("unexpected '" + peek().text + "'");
    }
    if (items.empty()) fail("empty");
    if (items.size() == 1) return items[0];
    return node(K::List, std::move(items));
  }

  std::optional<std::string> relop() const {
    const Token& tk = peek();
    if (tk.kind == Tok::Punct && (tk.text == "=" || tk.text == "<" || tk.text == ">" || tk.text == "<=" ||
                                  tk.text == ">=" || tk.text == "!="))
      return tk.text;
    if (tk.kind == Tok::Cmd) {
      if (tk.text == "approx" || tk.text == "simeq" || tk.text == "thickapprox") return std::string("~");
      if (tk.text == "in") return std::string("in");
      if (tk.text == "equiv" || tk.text == "coloneqq") return std::string("=");
    }
    return std::nullopt;
  }

  ExprP rel() {
    ExprP first = ratio();
    if (!relop()) return first;
    auto r = std::make_shared<Expr>();
    r->kind = K::Rel;
    r->kids.push_back(first);
    while (auto op = relop()) {
      next();
      r->ops.push_back(*op);
      r->kids.push_back(ratio());
    }
    return r;
  }

  ExprP ratio() {
    ExprP a = union_();
    if (!punct(":")) return a;
    std::vector<ExprP> parts{a};
    while (punct(":")) {
      next();
      parts.push_back(union_());
    }
    return node(K::Ratio, std::move(parts));
  }

  ExprP union_() {
    ExprP a = add();
    if (!cmd("cup")) return a;
    std::vector<ExprP> parts{a};
    while (cmd("cup")) {
      next();
      parts.push_back(add());
    }
    return node(K::Union, std::move(parts));
  }

  ExprP add() {
    Guard g(*this);
    std::vector<ExprP> terms;
    if (cmd("pm") || cmd("mp")) {  // "\pm 2"
      next();
      return node(K::PlusMinus, {nullptr, add()});
    }
    terms.push_back(mul_());
    while (true) {
      if (punct("+")) {
        next();
        terms.push_back(mul_());
      } else if (punct("-")) {
        next();
        terms.push_back(neg(mul_()));
      } else if (cmd("pm") || cmd("mp")) {
        next();
        ExprP a = terms.size() == 1 ? terms[0] : node(K::Add, terms);
        return node(K::PlusMinus, {a, add()});
      } else {
        break;
      }
    }
    return terms.size() == 1 ? terms[0] : node(K::Add, std::move(terms));
  }

  // Can the next token start an implicit factor ("2x", "3\sqrt2", "(x-1)(x+1)")?
  bool starts_factor() const {
    const Token& tk = peek();
    switch (tk.kind) {
      case Tok::Num: case Tok::Ident: return true;
      case Tok::Text: case Tok::Word: return !is_sep_word(tk.text);
      case Tok::Cmd:
        return tk.text != "cup" && tk.text != "pm" && tk.text != "mp" && tk.text != "in" && tk.text != "approx" &&
               tk.text != "simeq" && tk.text != "equiv" && tk.text.rfind("end:", 0) != 0 && tk.text != "rfloor" &&
               tk.text != "rceil" && tk.text != "sci" && tk.text != "circ" && tk.text != "to" && tk.text != "and" &&
               tk.text != "or" && tk.text != "pmod" && tk.text != "bmod" && tk.text != "mod";
      case Tok::Punct:
        return tk.text == "(" || tk.text == "[" || tk.text == "\\{" || tk.text == "{" ||
               (tk.text == "|" && abs_depth_ == 0);
      case Tok::End: return false;
    }
    return false;
  }

  static bool is_int_literal(const ExprP& e) {
    return e->kind == K::Num && e->exact && !e->is_float && e->rat.den == 1 && e->rat.num >= 0;
  }
  // \frac{3}{4} of two integer literals: the fraction of a mixed number "7\frac34".
  static bool is_simple_frac(const ExprP& e) {
    return e->kind == K::Mul && e->kids.size() == 2 && is_int_literal(e->kids[0]) && e->kids[1]->kind == K::Pow &&
           is_int_literal(e->kids[1]->kids[0]) && e->kids[1]->kids[1]->kind == K::Num &&
           e->kids[1]->kids[1]->rat.num == -1 && e->name == "frac";
  }

  // The integer literal of "7" or "-7" (for mixed numbers), or null.
  static const Expr* literal_of(const ExprP& e) {
    if (is_int_literal(e)) return e.get();
    if (e->kind == K::Mul && e->kids.size() == 2 && e->kids[0]->kind == K::Num && e->kids[0]->rat.num == -1 &&
        is_int_literal(e->kids[1]))
      return e->kids[1].get();
    return nullptr;
  }
  // "7 3/4" in plain text: an integer, a space, then integer/integer.
  bool plain_mixed_ahead() const {
    auto int_tok = [](const Token& tk) {
      return tk.kind == Tok::Num && tk.text.find('.') == std::string::npos && tk.text[0] != '-';
    };
    return int_tok(peek()) && peek().space_before && punct("/", 1) && int_tok(peek(2)) && !punct("^", 3);
  }
  ExprP mixed(const ExprP& whole, ExprP frac) {
    bool negative = !is_int_literal(whole);
    ExprP lit = negative ? whole->kids[1] : whole;
    ExprP sum = node(K::Add, {lit, std::move(frac)});
    return negative ? neg(sum) : sum;
  }

  ExprP mul_() {
    Guard g(*this);
    ExprP acc = unary();
    bool first = true;
    while (true) {
      bool literal = first && literal_of(acc) != nullptr;
      first = false;
      if (punct("*")) {
        next();
        acc = mul(acc, unary());
      } else if (punct("/")) {
        next();
        acc = mul(acc, inv(unary()));
      } else if (wordish() && !is_sep_word(peek().text)) {
        std::string w = squash(peek().text);
        if (w.empty()) {
          next();
          continue;
        }
        if (auto m = multiplier(w)) {
          next();
          acc = mul(acc, integer(*m));
        } else if (is_percent_word(w)) {
          next();
          acc = func("pct", {acc});
        } else if (is_degree_word(w)) {
          next();
          acc = func("deg", {acc});
        } else if (peek().kind == Tok::Text || is_unit(w)) {
          next();  // a unit after the quantity: dropped, with its power ("\mbox{ cm}^2")
          if (punct("^")) {
            next();
            if (punct("{")) {
              skip_group();
            } else {
              next();
            }
          }
        } else if (lower(w) == "pi" || lower(w) == "sqrt" || lower(w) == "inf" || lower(w) == "infinity" ||
                   is_func_name(lower(w))) {
          acc = mul(acc, postfix());
        } else {
          fail("word '" + w + "' in an expression");
        }
      } else if (literal && plain_mixed_ahead()) {
        ExprP a = number(next().text);
        next();
        ExprP b = number(next().text);
        acc = mixed(acc, mul(a, inv(b)));
      } else if (starts_factor()) {
        ExprP f = postfix();
        acc = literal && is_simple_frac(f) ? mixed(acc, f) : mul(acc, f);  // 7\frac34 is 7 + 3/4
      } else {
        break;
      }
    }
    return acc;
  }

  void skip_group() {
    int depth = 0;
    do {
      if (punct("{")) ++depth;
      if (punct("}")) --depth;
      if (peek().kind == Tok::End) return;
      next();
    } while (depth > 0);
  }

  ExprP unary() {
    Guard g(*this);
    if (punct("-")) {
      next();
      return neg(unary());
    }
    if (punct("+")) {
      next();
      return unary();
    }
    return postfix();
  }

  // The text of a subscript: "_1", "_{37}", "_{n-1}" -> "1", "37", "n-1".
  std::string subscript_text() {
    std::string s;
    if (punct("{")) {
      int depth = 0;
      do {
        if (punct("{")) ++depth;
        if (punct("}")) --depth;
        if (peek().kind == Tok::End) fail("unclosed subscript");
        const Token& tk = next();
        if (!(tk.kind == Tok::Punct && (tk.text == "{" || tk.text == "}"))) s += tk.text;
        else if (depth > 1 || (depth == 1 && tk.text == "}")) s += tk.text;
      } while (depth > 0);
      return s;
    }
    const Token& tk = next();
    if (tk.kind == Tok::Num && tk.text.size() > 1 && tk.text.find('.') == std::string::npos) {
      // "a_12": LaTeX takes one digit, but the intent is almost always the whole number
      return tk.text;
    }
    return tk.text;
  }

  ExprP postfix() {
    Guard g(*this);
    ExprP e = primary();
    while (true) {
      if (punct("^")) {
        next();
        if (cmd("circ")) {
          next();
          e = func("deg", {e});
        } else if (punct("{") && cmd("circ", 1) && punct("}", 2)) {
          next(), next(), next();
          e = func("deg", {e});
        } else {
          ExprP x = power_arg();
          e = node(K::Pow, {e, x});
        }
      } else if (punct("_")) {
        next();
        std::string sub = subscript_text();
        if (e->kind == K::Sym) {
          e = sym(e->name + "_" + sub);
        } else if (e->kind == K::Num && !e->is_float) {
          auto base = decimal(sub);
          if (!base || base->den != 1 || base->num < 2 || base->num > 36) fail("bad base '" + sub + "'");
          auto b = std::const_pointer_cast<Expr>(node(K::BaseNum, {num(*base)}, e->name));
          e = b;
        } else {
          fail("subscript on a non-symbol");
        }
      } else if (punct("!") && !punct("=", 1)) {
        next();
        e = func("fact", {e});
      } else if (punct("%")) {
        next();
        e = func("pct", {e});
      } else if (punct("\xC2\xB0")) {
        next();
        e = func("deg", {e});
      } else if (punct("'") && e->kind == K::Sym) {
        next();
        e = sym(e->name + "'");
      } else {
        return e;
      }
    }
  }

  ExprP power_arg() {
    if (punct("{")) return braced();
    if (punct("(")) {
      next();
      ExprP x = add();
      expect(")");
      return x;
    }
    if (punct("-")) {
      next();
      return neg(power_arg());
    }
    const Token& tk = peek();
    if (tk.kind == Tok::Num) return number(next().text);
    if (tk.kind == Tok::Ident) return ident(next().text);
    if (tk.kind == Tok::Cmd) return primary();
    fail("bad exponent '" + tk.text + "'");
  }

  // {expr}: a comma list in braces is a set ("{1,3}"), otherwise a group.
  ExprP braced() {
    expect("{");
    if (punct("}")) fail("empty group");
    ExprP e = list(kBrace);
    expect("}");
    if (e->kind == K::List) return node(K::Set, e->kids);
    return e;
  }

  // One argument of \frac or \sqrt: {...}, or one token (one digit of a number: \frac12).
  ExprP token_arg() {
    if (punct("{")) return braced();
    Token& tk = t_[p_];
    if (tk.kind == Tok::Num) {
      if (tk.text.size() > 1 && tk.text[0] != '.' && tk.text[1] != '.') {
        std::string d(1, tk.text[0]);
        tk.text.erase(0, 1);
        tk.space_before = false;
        return number(d);
      }
      return number(next().text);
    }
    if (tk.kind == Tok::Ident) return ident(next().text);
    if (tk.kind == Tok::Cmd) return primary();
    fail("bad argument '" + tk.text + "'");
  }

  ExprP ident(const std::string& name) {
    if (name == "e") return constant("e");
    if (name == "i") return constant("i");
    return sym(name);
  }

  ExprP group_until(const char* close, Stop stop) {
    ExprP e = list(stop);
    expect(close);
    return e;
  }

  // Function argument: (x), {x}, or an implicit product "\sin 2x", "\log 8".
  ExprP func_arg() {
    if (punct("(")) {
      next();
      ExprP e = list(kParen);
      expect(")");
      return e;
    }
    if (punct("{")) return braced();
    ExprP a = postfix();
    while (peek().kind == Tok::Num || peek().kind == Tok::Ident ||
           (peek().kind == Tok::Cmd && (cmd("pi") || cmd("frac") || cmd("sqrt"))))
      a = mul(a, postfix());
    return a;
  }

  ExprP known_function(std::string name) {
    if (name == "lg") name = "log10";
    ExprP power, base;
    if (punct("^")) {
      next();
      power = power_arg();
    }
    if (punct("_") && (name == "log")) {
      next();
      base = punct("{") ? braced() : token_arg();
      if (punct("^") && !power) {
        next();
        power = power_arg();
      }
    }
    ExprP arg = func_arg();
    std::vector<ExprP> args = arg->kind == K::List ? arg->kids : std::vector<ExprP>{arg};
    if (power && power->kind == K::Num && power->rat.num == -1 && power->rat.den == 1 &&
        (name == "sin" || name == "cos" || name == "tan")) {
      return func("arc" + name, args);  // \sin^{-1} x
    }
    ExprP f;
    if (name == "log" && base) {
      args.insert(args.begin(), base);
      f = func("logb", args);
    } else {
      f = func(name, args);
    }
    return power ? node(K::Pow, {f, power}) : f;
  }

  ExprP matrix(const std::string& env) {
    std::vector<std::vector<ExprP>> rows(1);
    while (true) {
      if (peek().kind == Tok::End) fail("unclosed " + env);
      if (cmd(("end:" + env).c_str())) {
        next();
        break;
      }
      if (punct("&")) {
        next();
        continue;
      }
      if (punct("\\\\")) {
        next();
        rows.emplace_back();
        continue;
      }
      if (peek().kind == Tok::Cmd && peek().text.rfind("end:", 0) == 0) fail("mismatched \\end");
      if (cmd("hline")) {
        next();
        continue;
      }
      rows.back().push_back(rel());
      if (!punct("&") && !punct("\\\\") && !cmd(("end:" + env).c_str())) fail("bad matrix cell");
    }
    while (!rows.empty() && rows.back().empty()) rows.pop_back();
    if (rows.empty()) fail("empty matrix");
    size_t cols = rows[0].size();
    auto m = std::make_shared<Expr>();
    m->kind = K::Matrix;
    for (auto& r : rows) {
      if (r.size() != cols) fail("ragged matrix");
      for (auto& c : r) m->kids.push_back(c);
    }
    m->rows = rows.size();
    m->cols = cols;
    return m;
  }

  ExprP delimited(const std::string& open) {
    if (open == "\\{") {
      if (punct("\\}")) {
        next();
        return node(K::Set, {});
      }
      ExprP e = list(kSetBrace);
      expect("\\}");
      return node(K::Set, e->kind == K::List ? e->kids : std::vector<ExprP>{e});
    }
    ExprP e = list(kParen);
    std::string close = peek().text;
    if (!punct(")") && !punct("]")) fail("unclosed '" + open + "'");
    next();
    if (e->kind != K::List) {
      if ((open == "(" && close == ")") || (open == "[" && close == "]")) return e;  // grouping
      fail("'" + open + "' closed by '" + close + "'");
    }
    auto tup = std::make_shared<Expr>();
    tup->kind = K::Tuple;
    tup->kids = e->kids;
    tup->open = open[0];
    tup->close = close[0];
    return tup;
  }

  ExprP primary() {
    Guard g(*this);
    const Token tk = peek();
    switch (tk.kind) {
      case Tok::Num: {
        next();
        ExprP n = number(tk.text);
        if (cmd("sci")) {  // 2.5e-3
          next();
          ExprP ex = number(next().text);
          n = mul(n, node(K::Pow, {integer(10), ex}));
        }
        return n;
      }
      case Tok::Ident: {
        next();
        if ((tk.text == "f" || tk.text == "g" || tk.text == "h") && punct("(")) {
          next();
          ExprP a = list(kParen);
          expect(")");
          return func(tk.text, a->kind == K::List ? a->kids : std::vector<ExprP>{a});
        }
        return ident(tk.text);
      }
      case Tok::Text: case Tok::Word: {
        next();
        std::string w = lower(squash(tk.text));
        if (w == "pi") return constant("pi");
        if (w == "inf" || w == "infinity" || w == "infty") return constant("inf");
        if (w == "sqrt") return node(K::Pow, {func_arg(), num(Rat{1, 2})});
        if (is_func_name(w)) return known_function(w);
        if (tk.kind == Tok::Text && w.size() == 1 && std::isalpha(static_cast<unsigned char>(w[0])))
          return ident(squash(tk.text));
        if (tk.kind == Tok::Word) {  // letters written together: "xy" is x*y
          bool ascii = std::all_of(tk.text.begin(), tk.text.end(),
                                   [](char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; });
          if (!ascii || is_unit(tk.text) || multiplier(tk.text)) fail("word '" + tk.text + "'");
          ExprP acc = ident(std::string(1, tk.text[0]));
          for (size_t k = 1; k < tk.text.size(); ++k) acc = mul(acc, ident(std::string(1, tk.text[k])));
          return acc;
        }
        return node(K::Text, {}, w);
      }
      case Tok::Punct: {
        if (tk.text == "(" || tk.text == "[" || tk.text == "\\{") {
          next();
          return delimited(tk.text);
        }
        if (tk.text == "{") return braced();
        if (tk.text == "|") {
          next();
          ++abs_depth_;
          ExprP x = add();
          --abs_depth_;
          expect("|");
          return func("abs", {x});
        }
        fail("unexpected '" + tk.text + "'");
      }
      case Tok::Cmd: {
        next();
        const std::string& c = tk.text;
        if (c == "frac") {
          ExprP a = token_arg(), b = token_arg();
          auto f = std::const_pointer_cast<Expr>(node(K::Mul, {a, inv(b)}, "frac"));
          return f;
        }
        if (c == "sqrt") {
          ExprP index;
          if (punct("[")) {
            next();
            index = add();
            expect("]");
          }
          ExprP x = token_arg();
          return node(K::Pow, {x, index ? inv(index) : num(Rat{1, 2})});
        }
        if (c == "binom") {
          ExprP a = token_arg(), b = token_arg();
          return func("binom", {a, b});
        }
        if (c == "pi") return constant("pi");
        if (c == "infty" || c == "infin") return constant("inf");
        if (c == "imath") return constant("i");
        if (c == "emptyset") return node(K::Set, {});
        if (c == "lfloor" || c == "lceil") {
          ExprP x = add();
          if (!cmd(c == "lfloor" ? "rfloor" : "rceil")) fail("unclosed " + c);
          next();
          return func(c == "lfloor" ? "floor" : "ceil", {x});
        }
        if (c.rfind("begin:", 0) == 0) {
          std::string env = c.substr(6);
          if (env.find("matrix") != std::string::npos || env == "array" || env == "tabular") return matrix(env);
          fail("environment " + env);
        }
        if (is_func_name(c)) return known_function(c);
        if (c == "dots") return sym("...");
        if (c == "circ") return func("deg", {integer(1)});
        fail("command \\" + c);
      }
      case Tok::End: fail("unexpected end");
    }
    fail("unexpected token");
  }
};

}  // namespace

ParseResult parse_answer(const std::string& text) {
  ParseResult r;
  if (text.size() > 20000) {
    r.error = "answer longer than 20000 characters";
    return r;
  }
  try {
    r.expr = Parser(tokenize(text)).parse();
  } catch (const ParseFail& f) {
    r.error = f.why;
  }
  return r;
}

}  // namespace temper::mathx
