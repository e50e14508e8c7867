// CPU backend: sample_tokens, one row of logits per sequence, computed in double.
// For row b with z = logits / temperature:
//   lse = log sum_j exp(z_j) over the whole vocabulary, logp = z_token - lse;
//   order the tokens by descending z (ties: lower id first), keep the first
//   top_k (top_k <= 0 or >= V: all), then the shortest prefix whose mass in the
//   softmax renormalised over the kept tokens reaches top_p (top_p >= 1: all;
//   at least one token); draw by inverse CDF: the first kept token whose
//   cumulative renormalised mass exceeds u[b].
// temperature <= 0 is greedy: the argmax (lowest id on ties), with logp taken
// at temperature 1 (z = logits). Rows are independent (OpenMP over rows).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/bf16.h"
#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/cpu_kernels.h"

namespace temper {

namespace {

double load_float(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::F32: return t.data<float>()[i];
    case DType::F64: return t.data<double>()[i];
    case DType::BF16: return bf16_to_float(t.data<uint16_t>()[i]);
    default: fail("sample_tokens: internal error, load from ", dtype_name(t.dtype()));
  }
}

void store_float(Tensor& t, int64_t i, double x) {
  if (t.dtype() == DType::F32)
    t.data<float>()[i] = static_cast<float>(x);
  else
    t.data<double>()[i] = x;
}

void check_dtype(const char* name, const Tensor& t, bool allow_bf16) {
  const DType dt = t.dtype();
  const bool ok = dt == DType::F32 || dt == DType::F64 || (allow_bf16 && dt == DType::BF16);
  TEMPER_CHECK(ok, "sample_tokens: '", name, "' has dtype ", dtype_name(dt), ", expected f32 or f64",
               allow_bf16 ? " or bf16" : "");
}

struct Draw {
  int32_t token;
  double logp;
};

// One row: z holds logits / temperature (or the logits when greedy); order is scratch.
Draw sample_row(std::vector<double>& z, std::vector<int32_t>& order, double u, bool greedy, int top_k,
                float top_p) {
  const int64_t V = int64_t(z.size());
  double mx = -INFINITY;
  int32_t best = 0;
  for (int64_t j = 0; j < V; ++j) {
    if (z[size_t(j)] > mx) {
      mx = z[size_t(j)];
      best = int32_t(j);
    }
  }
  double sum = 0.0;
  for (double x : z) sum += std::exp(x - mx);
  const double lse = mx + std::log(sum);
  if (greedy) return {best, z[size_t(best)] - lse};

  // Tokens by descending z, ties by ascending id; only the top_k when truncating.
  std::iota(order.begin(), order.end(), 0);
  auto before = [&](int32_t a, int32_t b) { return z[size_t(a)] > z[size_t(b)] || (z[size_t(a)] == z[size_t(b)] && a < b); };
  int64_t kept = V;
  if (top_k > 0 && top_k < V) {
    kept = top_k;
    std::partial_sort(order.begin(), order.begin() + kept, order.end(), before);
  } else {
    std::sort(order.begin(), order.end(), before);
  }
  // Unnormalised masses relative to the largest z (exp(z - mx), mx = z of order[0]).
  if (top_p < 1.0f) {
    double total = 0.0;
    for (int64_t i = 0; i < kept; ++i) total += std::exp(z[size_t(order[size_t(i)])] - mx);
    const double need = double(top_p) * total;
    double cum = 0.0;
    int64_t m = 0;
    while (m < kept) {
      cum += std::exp(z[size_t(order[size_t(m)])] - mx);
      ++m;
      if (cum >= need) break;
    }
    kept = std::max<int64_t>(m, 1);
  }
  double total = 0.0;
  for (int64_t i = 0; i < kept; ++i) total += std::exp(z[size_t(order[size_t(i)])] - mx);
  const double target = u * total;
  double cum = 0.0;
  int32_t pick = order[0];
  for (int64_t i = 0; i < kept; ++i) {
    const double e = std::exp(z[size_t(order[size_t(i)])] - mx);
    if (e > 0.0) pick = order[size_t(i)];  // the last token with mass, should rounding exhaust the walk
    cum += e;
    if (cum > target) {
      pick = order[size_t(i)];
      break;
    }
  }
  return {pick, z[size_t(pick)] - lse};
}

}  // namespace

void CpuKernels::sample_tokens(Tensor& tokens, Tensor& logp, const Tensor& logits, const Tensor& u,
                               float temperature, int top_k, float top_p) {
  const char* op = "sample_tokens";
  cpu::check_on_cpu(op, {{"tokens", &tokens}, {"logp", &logp}, {"logits", &logits}, {"u", &u}});
  check_dtype("logits", logits, true);
  check_dtype("logp", logp, false);
  check_dtype("u", u, false);
  TEMPER_CHECK(logits.ndim() == 2 && logits.dim(1) > 0, op, ": 'logits' must be [B, V] with V > 0, got ",
               shape_str(logits.shape()));
  const int64_t B = logits.dim(0), V = logits.dim(1);
  cpu::check_i32(op, "tokens", tokens, B);
  TEMPER_CHECK(logp.numel() == B, op, ": 'logp' has shape ", shape_str(logp.shape()), ", expected [", B, "]");
  TEMPER_CHECK(u.numel() == B, op, ": 'u' has shape ", shape_str(u.shape()), ", expected [", B, "]");
  TEMPER_CHECK(!std::isnan(temperature) && !std::isnan(top_p), op, ": temperature and top_p must be numbers");
  const bool greedy = temperature <= 0.0f;
  const double inv_t = greedy ? 1.0 : 1.0 / double(temperature);
  for (int64_t b = 0; b < B; ++b) {
    const double ub = load_float(u, b);
    TEMPER_CHECK(greedy || (ub >= 0.0 && ub < 1.0), op, ": u[", b, "] = ", ub, " is outside [0, 1)");
  }
  int32_t* tok = tokens.data<int32_t>();
  int64_t bad_row = -1;
#pragma omp parallel
  {
    std::vector<double> z(static_cast<size_t>(V));
    std::vector<int32_t> order(static_cast<size_t>(V));
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < B; ++b) {
      bool finite = true;
      for (int64_t j = 0; j < V; ++j) {
        const double x = load_float(logits, b * V + j);
        if (std::isnan(x) || x == INFINITY) finite = false;
        z[size_t(j)] = x * inv_t;
      }
      if (!finite || *std::max_element(z.begin(), z.end()) == -INFINITY) {
#pragma omp critical
        bad_row = bad_row < 0 ? b : std::min(bad_row, b);
        continue;
      }
      const Draw d = sample_row(z, order, load_float(u, b), greedy, top_k, top_p);
      tok[b] = d.token;
      store_float(logp, b, d.logp);
    }
  }
  TEMPER_CHECK(bad_row < 0, op, ": logits row ", bad_row,
               " has a NaN or +inf entry, or every entry is -inf (the model's output diverged)");
}

}  // namespace temper
