// Exact rationals, tree constructors and the canonical text of a tree (math_expr.h).
#include "rl/rewards/math_expr.h"

#include <algorithm>

namespace temper::mathx {
namespace {

__int128 gcd128(__int128 a, __int128 b) {
  if (a < 0) a = -a;
  if (b < 0) b = -b;
  while (b != 0) {
    __int128 t = a % b;
    a = b;
    b = t;
  }
  return a;
}

constexpr __int128 kLimit = (static_cast<__int128>(1) << 120);  // headroom for one multiplication check

bool fits(__int128 v) { return v < kLimit && v > -kLimit; }

// a*b without overflow: nullopt when |a*b| would exceed kLimit.
std::optional<__int128> mul_checked(__int128 a, __int128 b) {
  if (a == 0 || b == 0) return static_cast<__int128>(0);
  __int128 aa = a < 0 ? -a : a, bb = b < 0 ? -b : b;
  if (aa > kLimit / bb) return std::nullopt;
  return a * b;
}

}  // namespace

std::optional<Rat> rat_make(__int128 n, __int128 d) {
  if (d == 0 || !fits(n) || !fits(d)) return std::nullopt;
  if (d < 0) n = -n, d = -d;
  __int128 g = gcd128(n, d);
  if (g > 1) n /= g, d /= g;
  return Rat{n, d};
}

std::optional<Rat> rat_add(const Rat& a, const Rat& b) {
  __int128 g = gcd128(a.den, b.den);
  auto x = mul_checked(a.num, b.den / g), y = mul_checked(b.num, a.den / g), d = mul_checked(a.den / g, b.den);
  if (!x || !y || !d) return std::nullopt;
  return rat_make(*x + *y, *d);
}

std::optional<Rat> rat_mul(const Rat& a, const Rat& b) {
  __int128 g1 = gcd128(a.num, b.den), g2 = gcd128(b.num, a.den);
  if (g1 == 0) g1 = 1;
  if (g2 == 0) g2 = 1;
  auto n = mul_checked(a.num / g1, b.num / g2), d = mul_checked(a.den / g2, b.den / g1);
  if (!n || !d) return std::nullopt;
  return rat_make(*n, *d);
}

std::optional<Rat> rat_div(const Rat& a, const Rat& b) {
  if (b.num == 0) return std::nullopt;
  return rat_mul(a, Rat{b.den, b.num});
}

std::optional<Rat> rat_pow(const Rat& a, long long e) {
  if (e < 0) {
    if (a.num == 0) return std::nullopt;
    Rat inv = a.num < 0 ? Rat{-a.den, -a.num} : Rat{a.den, a.num};
    return rat_pow(inv, -e);
  }
  if (e > 400) return std::nullopt;
  Rat r{1, 1};
  for (long long k = 0; k < e; ++k) {
    auto next = rat_mul(r, a);
    if (!next) return std::nullopt;
    r = *next;
  }
  return r;
}

long double rat_value(const Rat& a) { return static_cast<long double>(a.num) / static_cast<long double>(a.den); }

namespace {
std::string i128_str(__int128 v) {
  if (v == 0) return "0";
  bool neg = v < 0;
  if (neg) v = -v;
  std::string s;
  while (v > 0) {
    s += static_cast<char>('0' + static_cast<int>(v % 10));
    v /= 10;
  }
  if (neg) s += '-';
  std::reverse(s.begin(), s.end());
  return s;
}
}  // namespace

std::string rat_str(const Rat& a) { return a.den == 1 ? i128_str(a.num) : i128_str(a.num) + "/" + i128_str(a.den); }

ExprP num(const Rat& r, bool is_float) {
  auto e = std::make_shared<Expr>();
  e->kind = K::Num;
  e->rat = r;
  e->is_float = is_float;
  e->name = rat_str(r);
  return e;
}

ExprP sym(const std::string& name) {
  auto e = std::make_shared<Expr>();
  e->kind = K::Sym;
  e->name = name;
  return e;
}

ExprP node(K kind, std::vector<ExprP> kids, const std::string& name) {
  auto e = std::make_shared<Expr>();
  e->kind = kind;
  e->kids = std::move(kids);
  e->name = name;
  return e;
}

std::string to_string(const Expr& e) {
  auto join = [&](const char* sep) {
    std::string s;
    for (size_t k = 0; k < e.kids.size(); ++k) s += (k ? sep : "") + to_string(*e.kids[k]);
    return s;
  };
  switch (e.kind) {
    case K::Num: return e.exact ? e.name : std::to_string(static_cast<double>(e.val));
    case K::Sym: case K::Const: return e.name;
    case K::Text: return "\"" + e.name + "\"";
    case K::Add: return "(" + join(" + ") + ")";
    case K::Mul: return "(" + join("*") + ")";
    case K::Pow: return "(" + to_string(*e.kids[0]) + ")^(" + to_string(*e.kids[1]) + ")";
    case K::Func: return e.name + "(" + join(", ") + ")";
    case K::Tuple: return std::string(1, e.open) + join(", ") + std::string(1, e.close);
    case K::Set: return "{" + join(", ") + "}";
    case K::List: return "list(" + join(", ") + ")";
    case K::Union: return join(" U ");
    case K::Matrix: {
      std::string s = "[";
      for (size_t r = 0; r < e.rows; ++r) {
        s += r ? "; " : "";
        for (size_t c = 0; c < e.cols; ++c) s += (c ? ", " : "") + to_string(*e.kids[r * e.cols + c]);
      }
      return s + "]";
    }
    case K::Rel: {
      std::string s = to_string(*e.kids[0]);
      for (size_t k = 0; k < e.ops.size(); ++k) s += " " + e.ops[k] + " " + to_string(*e.kids[k + 1]);
      return s;
    }
    case K::PlusMinus: return (e.kids[0] ? to_string(*e.kids[0]) : "") + " +- " + to_string(*e.kids[1]);
    case K::BaseNum: return e.name + "_" + to_string(*e.kids[0]);
    case K::Ratio: return join(":");
  }
  return "?";
}

}  // namespace temper::mathx
