// Equivalence of two parsed math answers (math_expr.h), after Math-Verify's rules:
// exact rationals first, then values at random points; assignments and the last
// "=" of a chain; relations up to a constant factor; unordered lists and sets,
// ordered tuples and intervals, unions, matrices, text answers, percentages.
#include <algorithm>
#include <cmath>
#include <functional>
#include <set>

#include "rl/rewards/math_eval.h"
#include "rl/rewards/math_expr.h"

namespace temper::mathx {
namespace {

constexpr int kTrials = 8;

bool is_collection(const Expr& e) {
  return e.kind == K::Tuple || e.kind == K::Set || e.kind == K::List || e.kind == K::Union;
}
bool scalar_kind(const Expr& e) {
  switch (e.kind) {
    case K::Tuple: case K::Set: case K::List: case K::Union: case K::Matrix: case K::Rel: case K::Text:
    case K::BaseNum: case K::Ratio: case K::PlusMinus:
      return false;
    default:
      for (const auto& k : e.kids)
        if (k && !scalar_kind(*k)) return false;
      return true;
  }
}

bool close(const Cplx& a, const Cplx& b, long double tol) {
  long double scale = std::max({1.0L, std::abs(a), std::abs(b)});
  return std::abs(a - b) <= tol * scale;
}

// round(v, places) as an exact integer multiple of 10^-places (half away from zero).
std::optional<__int128> rounded(const Rat& v, int places) {
  __int128 scale = 1;
  for (int k = 0; k < places; ++k) scale *= 10;
  auto scaled = rat_mul(v, Rat{scale, 1});
  if (!scaled) return std::nullopt;
  __int128 n = scaled->num < 0 ? -scaled->num : scaled->num;
  __int128 q = (2 * n + scaled->den) / (2 * scaled->den);
  return scaled->num < 0 ? -q : q;
}

long double round_ld(long double v, int places) {
  long double s = std::pow(10.0L, places);
  return std::round(v * s) / s;
}

// Both numbers are literals too long for 128 bits: compare their digits.
bool same_digits(const Expr& a, const Expr& b) {
  auto canon = [](std::string s) {
    if (s.find('.') != std::string::npos) {
      while (!s.empty() && s.back() == '0') s.pop_back();
      if (!s.empty() && s.back() == '.') s.pop_back();
    }
    size_t nz = s.find_first_not_of('0');
    return nz == std::string::npos ? std::string("0") : s.substr(nz);
  };
  return canon(a.name) == canon(b.name);
}

// Evaluates a and b at kTrials random points (math_eval.h) and hands each pair of finite
// values to visit, which returns false to stop. Returns the number of points visited, or -1
// when a side has no value at all (undecidable).
int at_random_points(const Expr& a, const Expr& b, const std::function<bool(const Cplx&, const Cplx&)>& visit) {
  int valid = 0;
  for (int trial = 0; trial < kTrials; ++trial) {
    auto value_of = [trial](const std::string& name) { return random_value(name, trial); };
    auto va = evaluate(a, value_of), vb = evaluate(b, value_of);
    if (!va || !vb) return -1;
    if (!finite_value(*va) || !finite_value(*vb)) continue;
    ++valid;
    if (!visit(*va, *vb)) break;
  }
  return valid;
}

Cmp scalar(const Expr& a, const Expr& b, const CompareOptions& opt) {
  if (!scalar_kind(a) || !scalar_kind(b)) return to_string(a) == to_string(b) ? Cmp::Equal : Cmp::Unequal;
  if (a.kind == K::Num && b.kind == K::Num && (!a.exact || !b.exact))
    return same_digits(a, b) ? Cmp::Equal : Cmp::Unequal;
  // A decimal against an exact value (1/3 vs 0.333333) is compared after rounding both to
  // float_rounding places (Math-Verify), and within a relative 10^(1-places) (so that 3e-6
  // does not match 0.000003333); two decimals, or two exact values, must be equal.
  const bool floats = has_float(a) != has_float(b);
  const long double rel = std::pow(10.0L, 1 - opt.float_rounding);
  auto ra = exact_value(a), rb = exact_value(b);
  if (ra && rb) {
    if (rat_eq(*ra, *rb)) return Cmp::Equal;
    if (!floats || ra->num == 0 || rb->num == 0) return Cmp::Unequal;
    long double va = rat_value(*ra), vb = rat_value(*rb);
    if (std::fabs(va - vb) > rel * std::max(std::fabs(va), std::fabs(vb))) return Cmp::Unequal;
    auto x = rounded(*ra, opt.float_rounding), y = rounded(*rb, opt.float_rounding);
    if (x && y) return *x == *y ? Cmp::Equal : Cmp::Unequal;
    return round_ld(va, opt.float_rounding) == round_ld(vb, opt.float_rounding) ? Cmp::Equal : Cmp::Unequal;
  }
  std::vector<std::string> syms = free_symbols(a);
  for (const auto& s : free_symbols(b)) syms.push_back(s);
  if (syms.empty()) {
    auto va = evaluate(a, [](const std::string&) { return Cplx(0); });
    auto vb = evaluate(b, [](const std::string&) { return Cplx(0); });
    if (!va || !vb || !finite_value(*va) || !finite_value(*vb)) return Cmp::Undecided;
    if (floats) {
      if ((std::abs(*va) == 0) != (std::abs(*vb) == 0)) return Cmp::Unequal;
      if (std::abs(*va - *vb) > rel * std::max(std::abs(*va), std::abs(*vb))) return Cmp::Unequal;
      bool eq = round_ld(va->real(), opt.float_rounding) == round_ld(vb->real(), opt.float_rounding) &&
                round_ld(va->imag(), opt.float_rounding) == round_ld(vb->imag(), opt.float_rounding);
      return eq ? Cmp::Equal : Cmp::Unequal;
    }
    return close(*va, *vb, 1e-10L) ? Cmp::Equal : Cmp::Unequal;
  }
  const long double tol = has_float(a) || has_float(b) ? std::pow(10.0L, -opt.float_rounding) : 1e-9L;
  bool differ = false;
  int valid = at_random_points(a, b, [&](const Cplx& va, const Cplx& vb) { return !(differ = !close(va, vb, tol)); });
  if (valid < 0) return Cmp::Undecided;
  if (differ) return Cmp::Unequal;
  return valid >= 3 ? Cmp::Equal : Cmp::Undecided;
}

// ---- relations -------------------------------------------------------------------

bool symbolic_lhs(const Expr& e) {
  switch (e.kind) {
    case K::Sym: return true;
    case K::Pow: return symbolic_lhs(*e.kids[0]) && e.kids[1]->kind == K::Num;  // \frac{NO}{BO}
    case K::Mul: case K::Tuple: case K::Ratio:
      return !e.kids.empty() && std::all_of(e.kids.begin(), e.kids.end(), [](const ExprP& k) { return symbolic_lhs(*k); });
    case K::Func:  // f(x), P(A): an undefined function of symbols; |AB|
      return (e.name.size() <= 2 || e.name == "abs") && std::all_of(e.kids.begin(), e.kids.end(), [](const ExprP& k) { return symbolic_lhs(*k); });
    default: return false;
  }
}
bool all_eq(const Expr& e) {
  return e.kind == K::Rel && std::all_of(e.ops.begin(), e.ops.end(), [](const std::string& o) { return o == "="; });
}
bool assignment(const Expr& e) { return all_eq(e) && symbolic_lhs(*e.kids[0]); }
ExprP first_last(const Expr& e) {
  auto r = std::make_shared<Expr>();
  r->kind = K::Rel;
  r->kids = {e.kids.front(), e.kids.back()};
  r->ops = {"="};
  return r;
}

ExprP difference(const ExprP& a, const ExprP& b) {
  return node(K::Add, {a, node(K::Mul, {num(Rat{-1, 1}), b})});
}

// a = c*b for one constant c != 0 (c > 0 when positive): equivalent equations/inequalities.
Cmp proportional(const Expr& a, const Expr& b, bool positive) {
  if (!scalar_kind(a) || !scalar_kind(b)) return Cmp::Unequal;
  std::vector<std::string> syms = free_symbols(a);
  for (const auto& s : free_symbols(b)) syms.push_back(s);
  if (syms.empty()) return Cmp::Unequal;  // statements about constants: compared side by side only
  std::optional<Cplx> ratio;
  bool differ = false;
  int zeros = 0;
  int valid = at_random_points(a, b, [&](const Cplx& va, const Cplx& vb) {
    if (std::abs(vb) < 1e-12L) {
      ++zeros;
      return !(differ = std::abs(va) > 1e-9L);
    }
    Cplx r = va / vb;
    if (!ratio) ratio = r;
    return !(differ = !close(r, *ratio, 1e-9L));
  });
  if (valid < 0) return Cmp::Undecided;
  if (differ) return Cmp::Unequal;
  valid -= zeros;
  if (valid < 3 || !ratio || std::abs(*ratio) < 1e-12L || std::fabs(ratio->imag()) > 1e-9L) return Cmp::Undecided;
  if (positive && ratio->real() <= 0) return Cmp::Unequal;
  return Cmp::Equal;
}

std::string flip(const std::string& op) {
  if (op == "<") return ">";
  if (op == ">") return "<";
  if (op == "<=") return ">=";
  if (op == ">=") return "<=";
  return op;
}

Cmp compare_any(ExprP g, ExprP p, const CompareOptions& opt);

Cmp compare_chains(const Expr& g, const Expr& p, const CompareOptions& opt) {
  if (g.ops.size() != p.ops.size()) return Cmp::Unequal;
  auto pairwise = [&](bool reversed) {
    size_t n = p.kids.size();
    for (size_t k = 0; k < g.ops.size(); ++k) {
      std::string po = reversed ? flip(p.ops[n - 2 - k]) : p.ops[k];
      if (po != g.ops[k]) return false;
    }
    for (size_t k = 0; k < n; ++k)
      if (compare_any(g.kids[k], p.kids[reversed ? n - 1 - k : k], opt) != Cmp::Equal) return false;
    return true;
  };
  if (pairwise(false) || pairwise(true)) return Cmp::Equal;
  if (g.ops.size() != 1) return Cmp::Unequal;
  // one relation: lhs - rhs proportional (flipped to < / <= first)
  auto norm = [](const Expr& r, ExprP* d) {
    std::string op = r.ops[0];
    if (op == ">" || op == ">=") {
      *d = difference(r.kids[1], r.kids[0]);
      return flip(op);
    }
    *d = difference(r.kids[0], r.kids[1]);
    return op;
  };
  ExprP dg, dp;
  std::string og = norm(g, &dg), op = norm(p, &dp);
  if (og != op || og == "in") return Cmp::Unequal;
  return proportional(*dg, *dp, og != "=" && og != "!=");
}

ExprP interval(char open, ExprP lo, ExprP hi, char close) {
  auto t = std::make_shared<Expr>();
  t->kind = K::Tuple;
  t->kids = {std::move(lo), std::move(hi)};
  t->open = open;
  t->close = close;
  return t;
}

// "-2 <= x <= 7" -> [-2, 7]; "x > 3" -> (3, inf); "x != 1" -> (-inf,1) U (1,inf).
ExprP relation_to_set(const Expr& r) {
  if (r.kind != K::Rel) return nullptr;
  int var = -1;
  auto variable = [](const Expr& e) {  // x, or f(x) (Math-Verify turns f(x) into a symbol here)
    return e.kind == K::Sym || (e.kind == K::Func && e.name.size() <= 2 && symbolic_lhs(e));
  };
  for (size_t k = 0; k < r.kids.size(); ++k) {
    if (variable(*r.kids[k])) {
      if (var >= 0) return nullptr;
      var = static_cast<int>(k);
    } else if (!free_symbols(*r.kids[k]).empty()) {
      return nullptr;
    }
  }
  if (var < 0) return nullptr;
  auto inf = node(K::Const, {}, "inf");
  auto minus_inf = node(K::Mul, {num(Rat{-1, 1}), inf});
  std::vector<ExprP> kids = r.kids;
  std::vector<std::string> ops = r.ops;
  if (ops.size() == 1 && ops[0] == "!=") {
    ExprP a = kids[1 - var];
    return node(K::Union, {interval('(', minus_inf, a, ')'), interval('(', a, inf, ')')});
  }
  bool down = std::all_of(ops.begin(), ops.end(), [](const std::string& o) { return o == ">" || o == ">="; });
  bool up = std::all_of(ops.begin(), ops.end(), [](const std::string& o) { return o == "<" || o == "<="; });
  if (!up && !down) return nullptr;
  if (down) {  // reverse to ascending
    std::reverse(kids.begin(), kids.end());
    std::reverse(ops.begin(), ops.end());
    for (auto& o : ops) o = flip(o);
    var = static_cast<int>(kids.size()) - 1 - var;
  }
  if (kids.size() == 3 && var == 1)
    return interval(ops[0] == "<" ? '(' : '[', kids[0], kids[2], ops[1] == "<" ? ')' : ']');
  if (kids.size() == 2 && var == 0) return interval('(', minus_inf, kids[1], ops[0] == "<" ? ')' : ']');
  if (kids.size() == 2 && var == 1) return interval(ops[0] == "<" ? '(' : '[', kids[0], inf, ')');
  return nullptr;
}

// ---- collections -----------------------------------------------------------------

// Perfect matching between a and b where match(i, j) holds (Kuhn's algorithm).
bool perfect_matching(size_t n, const std::vector<std::vector<bool>>& ok) {
  std::vector<int> owner(n, -1);
  for (size_t i = 0; i < n; ++i) {
    std::vector<bool> seen(n, false);
    std::function<bool(size_t)> augment = [&](size_t u) {
      for (size_t v = 0; v < n; ++v) {
        if (!ok[u][v] || seen[v]) continue;
        seen[v] = true;
        if (owner[v] < 0 || augment(static_cast<size_t>(owner[v]))) {
          owner[v] = static_cast<int>(u);
          return true;
        }
      }
      return false;
    };
    if (!augment(i)) return false;
  }
  return true;
}

// The distinct elements of a set ({1, 1, 2} is {1, 2}).
std::vector<ExprP> distinct(const std::vector<ExprP>& v, const CompareOptions& opt) {
  std::vector<ExprP> out;
  for (const auto& x : v) {
    bool seen = false;
    for (const auto& y : out) seen = seen || compare_any(y, x, opt) == Cmp::Equal;
    if (!seen) out.push_back(x);
  }
  return out;
}

Cmp unordered(const std::vector<ExprP>& a0, const std::vector<ExprP>& b0, const CompareOptions& opt) {
  if (a0.size() > 64 || b0.size() > 64) return Cmp::Unequal;
  std::vector<ExprP> a = distinct(a0, opt), b = distinct(b0, opt);
  if (a.size() != b.size()) return Cmp::Unequal;
  std::vector<std::vector<bool>> ok(a.size(), std::vector<bool>(b.size()));
  for (size_t i = 0; i < a.size(); ++i)
    for (size_t j = 0; j < b.size(); ++j) ok[i][j] = compare_any(a[i], b[j], opt) == Cmp::Equal;
  return perfect_matching(a.size(), ok) ? Cmp::Equal : Cmp::Unequal;
}

Cmp ordered(const std::vector<ExprP>& a, const std::vector<ExprP>& b, const CompareOptions& opt) {
  if (a.size() != b.size()) return Cmp::Unequal;
  for (size_t i = 0; i < a.size(); ++i)
    if (compare_any(a[i], b[i], opt) != Cmp::Equal) return Cmp::Unequal;
  return Cmp::Equal;
}

Cmp compare_collections(const ExprP& g, const ExprP& p, const CompareOptions& opt) {
  auto items = [](const ExprP& e) { return is_collection(*e) && e->kind != K::Tuple ? e->kids : std::vector<ExprP>{e}; };
  if (g->kind == K::Union || p->kind == K::Union) {
    if (g->kind != K::Union || p->kind != K::Union) return Cmp::Unequal;
    return unordered(g->kids, p->kids, opt);
  }
  if (g->kind == K::Tuple && p->kind == K::Tuple) {
    if (g->open != p->open || g->close != p->close) return Cmp::Unequal;
    return ordered(g->kids, p->kids, opt);
  }
  if (g->kind == K::Tuple || p->kind == K::Tuple) {  // (1,3) vs {1,3}: in written order, as Math-Verify
    const ExprP& t = g->kind == K::Tuple ? g : p;
    const ExprP& o = g->kind == K::Tuple ? p : g;
    if (t->open != '(' || t->close != ')' || !is_collection(*o)) return Cmp::Unequal;
    return g->kind == K::Tuple ? ordered(t->kids, o->kids, opt) : ordered(o->kids, t->kids, opt);
  }
  return unordered(items(g), items(p), opt);
}

// ---- preparation -------------------------------------------------------------------

ExprP matrix(size_t rows, size_t cols, std::vector<ExprP> kids) {
  auto m = std::make_shared<Expr>();
  m->kind = K::Matrix;
  m->rows = rows;
  m->cols = cols;
  m->kids = std::move(kids);
  return m;
}

// Sums and products of matrices written out ("A + B", "A B", "2A") as one matrix.
ExprP fold_matrices(const ExprP& e) {
  if (e->kind != K::Add && e->kind != K::Mul) return e;
  std::vector<ExprP> kids;
  bool any = false;
  for (const auto& k : e->kids) {
    kids.push_back(fold_matrices(k));
    any = any || kids.back()->kind == K::Matrix;
  }
  if (!any) return e;
  if (e->kind == K::Add) {
    const ExprP& m0 = kids[0];
    for (const auto& k : kids)
      if (k->kind != K::Matrix || k->rows != m0->rows || k->cols != m0->cols) return e;
    std::vector<ExprP> cells;
    for (size_t c = 0; c < m0->kids.size(); ++c) {
      std::vector<ExprP> terms;
      for (const auto& k : kids) terms.push_back(k->kids[c]);
      cells.push_back(node(K::Add, terms));
    }
    return matrix(m0->rows, m0->cols, cells);
  }
  ExprP acc;  // product, left to right
  std::vector<ExprP> scalars;
  for (const auto& k : kids) {
    if (k->kind != K::Matrix) {
      if (!scalar_kind(*k)) return e;
      scalars.push_back(k);
      continue;
    }
    if (!acc) {
      acc = k;
      continue;
    }
    if (acc->cols != k->rows) return e;
    std::vector<ExprP> cells;
    for (size_t r = 0; r < acc->rows; ++r)
      for (size_t c = 0; c < k->cols; ++c) {
        std::vector<ExprP> terms;
        for (size_t j = 0; j < acc->cols; ++j)
          terms.push_back(node(K::Mul, {acc->kids[r * acc->cols + j], k->kids[j * k->cols + c]}));
        cells.push_back(node(K::Add, terms));
      }
    acc = matrix(acc->rows, k->cols, cells);
  }
  if (scalars.empty()) return acc;
  std::vector<ExprP> cells;
  for (const auto& cell : acc->kids) {
    std::vector<ExprP> f = scalars;
    f.push_back(cell);
    cells.push_back(node(K::Mul, f));
  }
  return matrix(acc->rows, acc->cols, cells);
}

// x \in S -> S; "x = 1/3 \approx 0.33" -> "x = 1/3"; "x \approx 11" -> "x = 11"; ± -> two answers.
ExprP prepare(const ExprP& e) {
  if (!e) return e;
  if (e->kind == K::Rel) {
    auto r = std::make_shared<Expr>(*e);
    for (size_t k = 0; k < r->ops.size(); ++k) {
      if (r->ops[k] != "~") continue;
      if (k == 0 && r->kids[0]->kind == K::Sym) {
        r->ops[0] = "=";
        continue;
      }
      r->kids.resize(k + 1);
      r->ops.resize(k);
      break;
    }
    if (r->ops.size() == 1 && r->ops[0] == "in" && symbolic_lhs(*r->kids[0])) return prepare(r->kids[1]);
    if (r->ops.empty()) return prepare(r->kids[0]);
    return r;
  }
  if (e->kind == K::PlusMinus) {
    ExprP a = e->kids[0] ? e->kids[0] : num(Rat{0, 1});
    return node(K::List, {node(K::Add, {a, e->kids[1]}), difference(a, e->kids[1])});
  }
  if (e->kind == K::List || e->kind == K::Set) {
    std::vector<ExprP> kids;
    for (const auto& k : e->kids) {
      ExprP x = prepare(k);
      if (x->kind == K::List && k->kind == K::PlusMinus) {
        kids.insert(kids.end(), x->kids.begin(), x->kids.end());
      } else {
        kids.push_back(x);
      }
    }
    return node(e->kind, kids);
  }
  if (e->kind == K::Func && e->name == "deg" && e->kids.size() == 1) return prepare(e->kids[0]);
  return fold_matrices(e);
}

std::optional<std::string> text_of(const Expr& e) {
  auto choice = [](std::string s) {
    while (!s.empty() && s.back() == '.') s.pop_back();
    if (s.size() >= 3 && s.front() == '(' && s.back() == ')') s = s.substr(1, s.size() - 2);
    return s;
  };
  if (e.kind == K::Text) return choice(e.name);
  if (e.kind == K::Sym && e.name.size() == 1) return std::string(1, static_cast<char>(std::tolower(e.name[0])));
  if (e.kind == K::Const && e.name == "e") return std::string("e");
  if (e.kind == K::Mul && e.name.empty()) {  // Evelyn written as E*v*e*l*y*n
    std::string s;
    for (const auto& k : e.kids) {
      auto t = text_of(*k);
      if (!t || k->kind == K::Text) return std::nullopt;
      s += *t;
    }
    return s;
  }
  return std::nullopt;
}

bool is_pct(const Expr& e) { return e.kind == K::Func && e.name == "pct" && e.kids.size() == 1; }

Cmp compare_any(ExprP g, ExprP p, const CompareOptions& opt) {
  g = prepare(g);
  p = prepare(p);
  if (to_string(*g) == to_string(*p)) return Cmp::Equal;
  const bool ga = assignment(*g), pa = assignment(*p), ge = all_eq(*g), pe = all_eq(*p);
  if (ga) g = first_last(*g);
  if (pa) p = first_last(*p);
  if (pe && !ge) {
    p = prepare(p->kids.back());
  } else if (ga && !pe) {
    g = prepare(g->kids.back());
  }
  if (to_string(*g) == to_string(*p)) return Cmp::Equal;
  const bool gr = g->kind == K::Rel, pr = p->kind == K::Rel;
  if (gr && pr) return compare_chains(*g, *p, opt);
  if (gr || pr) {
    if (gr && is_collection(*p)) {
      if (ExprP s = relation_to_set(*g)) return compare_any(s, p, opt);
    }
    if (pr && is_collection(*g) && opt.set_relation) {
      if (ExprP s = relation_to_set(*p)) return compare_any(g, s, opt);
    }
    return Cmp::Unequal;
  }
  if (is_collection(*g) || is_collection(*p)) {
    // a single value and a one-element set/list
    if (!is_collection(*g) && p->kind == K::Set && p->kids.size() == 1) return compare_any(g, p->kids[0], opt);
    if (!is_collection(*p) && g->kind == K::Set && g->kids.size() == 1) return compare_any(g->kids[0], p, opt);
    if (!is_collection(*g) || !is_collection(*p)) return Cmp::Unequal;
    return compare_collections(g, p, opt);
  }
  if (g->kind == K::Matrix || p->kind == K::Matrix) {
    if (g->kind != p->kind || g->rows != p->rows || g->cols != p->cols) return Cmp::Unequal;
    return ordered(g->kids, p->kids, opt);
  }
  auto tg = text_of(*g), tp = text_of(*p);
  if (g->kind == K::Text || p->kind == K::Text) return tg && tp && *tg == *tp ? Cmp::Equal : Cmp::Unequal;
  if (g->kind == K::Ratio || p->kind == K::Ratio) {
    if (g->kind != p->kind) return Cmp::Unequal;
    return ordered(g->kids, p->kids, opt);
  }
  if (g->kind == K::BaseNum || p->kind == K::BaseNum) {
    if (g->kind != p->kind) return Cmp::Unequal;
    return g->name == p->name && compare_any(g->kids[0], p->kids[0], opt) == Cmp::Equal ? Cmp::Equal : Cmp::Unequal;
  }
  // a percentage against a plain number: "20\%" is 20 or 0.2
  if (is_pct(*g) != is_pct(*p)) {
    const ExprP& pc = is_pct(*g) ? g : p;
    const ExprP& other = is_pct(*g) ? p : g;
    if (scalar(*pc->kids[0], *other, opt) == Cmp::Equal) return Cmp::Equal;
    return scalar(*pc, *other, opt);
  }
  if (g->kind == K::Sym && p->kind == K::Sym) return g->name == p->name ? Cmp::Equal : Cmp::Unequal;
  Cmp c = scalar(*g, *p, opt);
  if (c != Cmp::Equal && tg && tp && g->kind == K::Sym && *tg == *tp) return Cmp::Equal;
  return c;
}

}  // namespace

Cmp compare(const Expr& gold, const Expr& pred, const CompareOptions& opt) {
  auto g = std::make_shared<Expr>(gold), p = std::make_shared<Expr>(pred);
  return compare_any(g, p, opt);
}

}  // namespace temper::mathx
