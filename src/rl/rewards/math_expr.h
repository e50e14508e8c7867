// Math answers as expression trees (internal to the math reward; see docs/rewards.md).
//
// math_lex.cpp turns LaTeX/plain text into tokens, math_parse.cpp builds the tree,
// math_eval.cpp evaluates it (exact rationals where possible, complex doubles at
// random points otherwise) and math_equal.cpp decides whether two answers are equal.
// Nothing here ever executes model text: it is parsed into this closed set of nodes.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace temper::mathx {

// ---- exact rationals ---------------------------------------------------------
// 128-bit numerator/denominator in lowest terms, denominator > 0. Operations
// return nullopt on overflow (the caller then falls back to numeric evaluation).
struct Rat {
  __int128 num = 0, den = 1;
};
std::optional<Rat> rat_make(__int128 n, __int128 d);
std::optional<Rat> rat_add(const Rat& a, const Rat& b);
std::optional<Rat> rat_mul(const Rat& a, const Rat& b);
std::optional<Rat> rat_div(const Rat& a, const Rat& b);
std::optional<Rat> rat_pow(const Rat& a, long long e);
inline bool rat_eq(const Rat& a, const Rat& b) { return a.num == b.num && a.den == b.den; }
long double rat_value(const Rat& a);
std::string rat_str(const Rat& a);

// ---- tokens ------------------------------------------------------------------
enum class Tok : uint8_t {
  Num,     // text = digits with at most one '.', thousands separators removed
  Ident,   // one letter (or a Greek letter command turned into its name, e.g. "alpha")
  Cmd,     // a LaTeX control word without the backslash ("frac", "sqrt", "cdot", ...)
  Text,    // the content of \text{...}/\mbox{...}/\mathrm{...} (a word, a unit, "and", ...)
  Word,    // a plain run of two or more letters outside \text (a unit, "pi", "and", "sqrt")
  Punct,   // one character: + - * / ^ _ ( ) [ ] { } , ; : = < > ! | & ' and the multi-char
           // relations "<=", ">=", "!=", and "\{", "\}", "\\" (row break), "%"
  End,
};
struct Token {
  Tok kind = Tok::End;
  std::string text;
  bool space_before = false;  // whitespace (or a spacing command) preceded it
};
// Never throws; characters it does not understand become Punct tokens that the
// parser refuses (the answer is then compared as normalised text).
std::vector<Token> tokenize(const std::string& s);

// ---- expression tree -----------------------------------------------------------
enum class K : uint8_t {
  Num,       // rat (exact) when exact, else val; is_float: written with a decimal point
  Sym,       // name: "x", "alpha", "a_1"
  Const,     // name: "pi", "e", "i", "inf"
  Add,       // kids summed
  Mul,       // kids multiplied
  Pow,       // kids[0] ^ kids[1]
  Func,      // name(kids): sin cos tan sec csc cot asin acos atan sinh cosh tanh ln log
             // (log: kids = {base, x}), exp, abs, floor, ceil, fact, binom, pct (x%), deg (x°),
             // or an undefined function ("f") whose value is a fixed random function of its args
  Tuple,     // ordered, written with delimiters open/close: "(1,2)", "[1,2]", "(1,2]"
  Set,       // written with \{ \} (or plain braces holding a comma list)
  List,      // a bare list: "1, 2", "1 and 2", several \boxed{} answers (unordered)
  Union,     // A \cup B
  Matrix,    // rows x cols kids in row-major order
  Rel,       // chain kids[0] ops[0] kids[1] ops[1] ... ; ops: "=", "<", "<=", ">", ">=", "!=", "~" (approx), "in"
  PlusMinus, // kids[0] ± kids[1] (a missing kids[0] is 0)
  Text,      // name = normalised text (lower case, single spaces)
  BaseNum,   // name = digits, kids[0] = the base
  Ratio,     // kids[0] : kids[1]
};
struct Expr;
using ExprP = std::shared_ptr<const Expr>;
struct Expr {
  K kind = K::Num;
  std::string name;              // Sym/Const/Func/Text/BaseNum name; Num: literal digits
  std::vector<ExprP> kids;
  std::vector<std::string> ops;  // Rel operators
  Rat rat;                       // Num (exact)
  bool exact = true;             // Num: rat holds the value exactly
  long double val = 0;           // Num: value when !exact
  bool is_float = false;         // Num: written with a decimal point
  char open = 0, close = 0;      // Tuple delimiters
  size_t rows = 0, cols = 0;     // Matrix
};

ExprP num(const Rat& r, bool is_float = false);
ExprP sym(const std::string& name);
ExprP node(K kind, std::vector<ExprP> kids, const std::string& name = "");

// Canonical text of a tree (used in messages and as the last-resort comparison).
std::string to_string(const Expr& e);

// ---- parsing ---------------------------------------------------------------------
struct ParseResult {
  ExprP expr;         // null when the text could not be parsed
  std::string error;  // why, when expr is null
};
// Parses one final answer (the content of a \boxed{} or the text after a prefix).
ParseResult parse_answer(const std::string& text);

// ---- evaluation ------------------------------------------------------------------
// Exact value when the tree is a rational number built from + - * / and integer
// powers of rationals; nullopt otherwise (symbols, roots of non-squares, pi, ...).
std::optional<Rat> exact_value(const Expr& e);
// True when e contains a number written with a decimal point.
bool has_float(const Expr& e);
// Free symbol names (sorted, unique).
std::vector<std::string> free_symbols(const Expr& e);

// ---- comparison -------------------------------------------------------------------
struct CompareOptions {
  int float_rounding = 6;   // a decimal answer matches when equal after rounding to this many places
  bool set_relation = true; // compare "-2 <= x <= 7" with "[-2, 7]" whichever side is the reference
};
enum class Cmp { Equal, Unequal, Undecided };
// gold is the reference answer; the relation is not symmetric for assignments
// ("x = 5" vs "5") and percentages, following Math-Verify.
Cmp compare(const Expr& gold, const Expr& pred, const CompareOptions& opt = {});

}  // namespace temper::mathx
