// Numeric evaluation of math answer trees (math_eval.cpp); exact evaluation and the
// tree itself are declared in math_expr.h.
#pragma once
#include <complex>
#include <functional>
#include <optional>
#include <string>

#include "rl/rewards/math_expr.h"

namespace temper::mathx {

using Cplx = std::complex<long double>;

// Value of e with symbols looked up by value_of; nullopt for what has no number
// (infinity, text, tuples, sets, relations, unknown functions of many letters).
std::optional<Cplx> evaluate(const Expr& e, const std::function<Cplx(const std::string&)>& value_of);
bool finite_value(const Cplx& z);

// The value a symbol takes in a random trial: |v| in [0.3, 2.7], positive in trial 0,
// a sign from the hash otherwise. Deterministic (the same for gold and answer).
Cplx random_value(const std::string& name, int trial);

uint64_t mix64(uint64_t x);
uint64_t hash_str(const std::string& s);

}  // namespace temper::mathx
