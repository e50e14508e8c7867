// Evaluation of expression trees: exact rationals where the tree is a rational
// number, complex long doubles at given symbol values otherwise (math_eval.h part
// of math_expr.h / math_equal.cpp).
#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <set>

#include "rl/rewards/math_eval.h"

namespace temper::mathx {
namespace {

// Exact integer q-th root of v >= 0, if v is a perfect q-th power.
std::optional<__int128> int_root(__int128 v, long long q) {
  if (v < 0) return std::nullopt;
  if (v < 2) return v;
  long double guess = std::pow(static_cast<long double>(v), 1.0L / static_cast<long double>(q));
  __int128 g = static_cast<__int128>(std::llround(guess));
  for (__int128 c = (g > 2 ? g - 2 : 0); c <= g + 2; ++c) {
    __int128 p = 1;
    bool over = false;
    for (long long k = 0; k < q && !over; ++k) {
      if (c != 0 && p > (static_cast<__int128>(1) << 120) / c) over = true;
      else p *= c;
    }
    if (!over && p == v) return c;
  }
  return std::nullopt;
}

std::optional<Rat> factorial(const Rat& n) {
  if (n.den != 1 || n.num < 0 || n.num > 30) return std::nullopt;
  Rat r{1, 1};
  for (__int128 k = 2; k <= n.num; ++k) {
    auto next = rat_mul(r, Rat{k, 1});
    if (!next) return std::nullopt;
    r = *next;
  }
  return r;
}

std::optional<Rat> binomial(const Rat& n, const Rat& k) {
  if (n.den != 1 || k.den != 1 || k.num < 0 || n.num < 0 || k.num > n.num || n.num > 120) return std::nullopt;
  Rat r{1, 1};
  for (__int128 j = 1; j <= k.num; ++j) {
    auto a = rat_mul(r, Rat{n.num - k.num + j, 1});
    if (!a) return std::nullopt;
    auto b = rat_div(*a, Rat{j, 1});
    if (!b) return std::nullopt;
    r = *b;
  }
  return r;
}

}  // namespace

std::optional<Rat> exact_value(const Expr& e) {
  switch (e.kind) {
    case K::Num: return e.exact ? std::optional<Rat>(e.rat) : std::nullopt;
    case K::Add: {
      Rat acc{0, 1};
      for (const auto& k : e.kids) {
        auto v = exact_value(*k);
        if (!v) return std::nullopt;
        auto s = rat_add(acc, *v);
        if (!s) return std::nullopt;
        acc = *s;
      }
      return acc;
    }
    case K::Mul: {
      Rat acc{1, 1};
      for (const auto& k : e.kids) {
        auto v = exact_value(*k);
        if (!v) return std::nullopt;
        auto s = rat_mul(acc, *v);
        if (!s) return std::nullopt;
        acc = *s;
      }
      return acc;
    }
    case K::Pow: {
      auto b = exact_value(*e.kids[0]), x = exact_value(*e.kids[1]);
      if (!b || !x) return std::nullopt;
      if (x->den == 1) {
        if (x->num > 400 || x->num < -400) return std::nullopt;
        return rat_pow(*b, static_cast<long long>(x->num));
      }
      // rational exponent p/q: exact only for perfect powers (\sqrt{4}, 8^{2/3}, \sqrt{9/4})
      if (x->den > 12 || b->num < 0) return std::nullopt;
      auto rn = int_root(b->num, static_cast<long long>(x->den)), rd = int_root(b->den, static_cast<long long>(x->den));
      if (!rn || !rd) return std::nullopt;
      auto root = rat_make(*rn, *rd);
      if (!root || x->num > 400 || x->num < -400) return std::nullopt;
      return rat_pow(*root, static_cast<long long>(x->num));
    }
    case K::Func: {
      if (e.kids.size() == 1) {
        auto v = exact_value(*e.kids[0]);
        if (!v) return std::nullopt;
        if (e.name == "pct") return rat_div(*v, Rat{100, 1});
        if (e.name == "deg") return v;
        if (e.name == "abs") return Rat{v->num < 0 ? -v->num : v->num, v->den};
        if (e.name == "fact") return factorial(*v);
        if (e.name == "floor" || e.name == "ceil") {
          __int128 q = v->num / v->den;
          if (v->num % v->den != 0) {
            if (e.name == "floor" && v->num < 0) --q;
            if (e.name == "ceil" && v->num > 0) ++q;
          }
          return Rat{q, 1};
        }
      }
      if (e.name == "binom" && e.kids.size() == 2) {
        auto n = exact_value(*e.kids[0]), k = exact_value(*e.kids[1]);
        if (n && k) return binomial(*n, *k);
      }
      return std::nullopt;
    }
    default: return std::nullopt;
  }
}

bool has_float(const Expr& e) {
  if (e.kind == K::Num) return e.is_float;
  for (const auto& k : e.kids)
    if (k && has_float(*k)) return true;
  return false;
}

namespace {
void collect(const Expr& e, std::set<std::string>* out) {
  if (e.kind == K::Sym) out->insert(e.name);
  for (const auto& k : e.kids)
    if (k) collect(*k, out);
}
}  // namespace

std::vector<std::string> free_symbols(const Expr& e) {
  std::set<std::string> s;
  collect(e, &s);
  return {s.begin(), s.end()};
}

uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

uint64_t hash_str(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return mix64(h);
}

// A value in [0.3, 2.7] with a sign chosen by the trial (trial 0: all positive).
Cplx random_value(const std::string& name, int trial) {
  uint64_t h = mix64(hash_str(name) ^ (0x1234567ULL * static_cast<uint64_t>(trial + 1)));
  long double u = static_cast<long double>(h >> 11) / static_cast<long double>(1ULL << 53);
  long double v = 0.3L + 2.4L * u;
  if (trial > 0 && ((h >> 3) & 1)) v = -v;
  return {v, 0};
}

namespace {

bool finite(const Cplx& z) { return std::isfinite(z.real()) && std::isfinite(z.imag()); }

// Real odd roots of negative reals stay real (\sqrt[3]{-8} = -2), as in school math.
Cplx power(const Cplx& b, const Expr& ex, const Cplx& x) {
  if (b.imag() == 0 && b.real() < 0 && x.imag() == 0) {
    if (auto r = exact_value(ex); r && r->den % 2 == 1) {
      long double m = std::pow(-b.real(), x.real());
      return {r->num % 2 == 0 ? m : -m, 0};
    }
  }
  if (x.imag() == 0 && x.real() == std::round(x.real()) && std::fabs(x.real()) <= 64) {
    Cplx r = 1;  // integer powers by multiplication: exact for (1+i)^2
    long long n = static_cast<long long>(x.real());
    Cplx base = n < 0 ? Cplx(1) / b : b;
    for (long long k = 0; k < (n < 0 ? -n : n); ++k) r *= base;
    return r;
  }
  return std::pow(b, x);
}

}  // namespace

std::optional<Cplx> evaluate(const Expr& e, const std::function<Cplx(const std::string&)>& value_of) {
  auto ev = [&](const ExprP& k) { return evaluate(*k, value_of); };
  switch (e.kind) {
    case K::Num: return e.exact ? Cplx(rat_value(e.rat), 0) : Cplx(e.val, 0);
    case K::Sym: return value_of(e.name);
    case K::Const:
      if (e.name == "pi") return Cplx(3.14159265358979323846264338327950288L, 0);
      if (e.name == "e") return Cplx(2.71828182845904523536028747135266250L, 0);
      if (e.name == "i") return Cplx(0, 1);
      return std::nullopt;  // infinity
    case K::Add: {
      Cplx s = 0;
      for (const auto& k : e.kids) {
        auto v = ev(k);
        if (!v) return std::nullopt;
        s += *v;
      }
      return s;
    }
    case K::Mul: {
      Cplx s = 1;
      for (const auto& k : e.kids) {
        auto v = ev(k);
        if (!v) return std::nullopt;
        s *= *v;
      }
      return s;
    }
    case K::Pow: {
      auto b = ev(e.kids[0]), x = ev(e.kids[1]);
      if (!b || !x) return std::nullopt;
      if (std::abs(*b) == 0 && x->real() <= 0) return std::nullopt;
      return power(*b, *e.kids[1], *x);
    }
    case K::Func: {
      std::vector<Cplx> a;
      for (const auto& k : e.kids) {
        auto v = ev(k);
        if (!v) return std::nullopt;
        a.push_back(*v);
      }
      const std::string& f = e.name;
      if (a.size() == 1) {
        const Cplx x = a[0];
        if (f == "sin") return std::sin(x);
        if (f == "cos") return std::cos(x);
        if (f == "tan") return std::tan(x);
        if (f == "sec") return Cplx(1) / std::cos(x);
        if (f == "csc") return Cplx(1) / std::sin(x);
        if (f == "cot") return Cplx(1) / std::tan(x);
        if (f == "arcsin") return std::asin(x);
        if (f == "arccos") return std::acos(x);
        if (f == "arctan") return std::atan(x);
        if (f == "arccot") return std::atan(Cplx(1) / x);
        if (f == "sinh") return std::sinh(x);
        if (f == "cosh") return std::cosh(x);
        if (f == "tanh") return std::tanh(x);
        if (f == "ln" || f == "log") return std::log(x);
        if (f == "log10") return std::log10(x);
        if (f == "exp") return std::exp(x);
        if (f == "abs") return Cplx(std::abs(x), 0);
        if (f == "pct") return x / Cplx(100);
        if (f == "deg") return x;
        if (f == "floor" && x.imag() == 0) return Cplx(std::floor(x.real()), 0);
        if (f == "ceil" && x.imag() == 0) return Cplx(std::ceil(x.real()), 0);
        if (f == "fact" && x.imag() == 0 && x.real() > -1) return Cplx(std::tgamma(x.real() + 1), 0);
      }
      if (f == "logb" && a.size() == 2) return std::log(a[1]) / std::log(a[0]);
      if (f == "binom" && a.size() == 2 && a[0].imag() == 0 && a[1].imag() == 0)
        return Cplx(std::tgamma(a[0].real() + 1) / (std::tgamma(a[1].real() + 1) *
                                                      std::tgamma(a[0].real() - a[1].real() + 1)),
                    0);
      if ((f == "max" || f == "min") && !a.empty()) {
        long double best = a[0].real();
        for (const auto& v : a) {
          if (v.imag() != 0) return std::nullopt;
          best = f == "max" ? std::max(best, v.real()) : std::min(best, v.real());
        }
        return Cplx(best, 0);
      }
      if ((f == "gcd" || f == "lcm") && a.size() >= 2) {
        long long acc = f == "gcd" ? 0 : 1;
        for (const auto& v : a) {
          if (v.imag() != 0 || v.real() != std::round(v.real()) || std::fabs(v.real()) > 1e9) return std::nullopt;
          long long n = std::llabs(static_cast<long long>(v.real()));
          acc = f == "gcd" ? std::gcd(acc, n) : std::lcm(acc, n);
        }
        return Cplx(static_cast<long double>(acc), 0);
      }
      if (f.size() <= 2 && std::isalpha(static_cast<unsigned char>(f[0]))) {
        // an undefined function (f, g, h, f'): a fixed pseudo-random function of its arguments
        uint64_t h = hash_str(f);
        for (const auto& v : a) {
          h = mix64(h ^ static_cast<uint64_t>(std::llround(v.real() * 1e7)));
          h = mix64(h ^ static_cast<uint64_t>(std::llround(v.imag() * 1e7)));
        }
        return Cplx(0.5L + static_cast<long double>(h >> 11) / static_cast<long double>(1ULL << 53), 0);
      }
      return std::nullopt;
    }
    default: return std::nullopt;
  }
}

bool finite_value(const Cplx& z) { return finite(z); }

}  // namespace temper::mathx
