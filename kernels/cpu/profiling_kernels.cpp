// ProfilingKernels: forwarding with per-op timing (see the header).
#include "kernels/cpu/profiling_kernels.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>

namespace temper {

ProfilingKernels::ProfilingKernels(Kernels& inner, bool enabled) : inner_(inner), enabled_(enabled) {}

template <typename F>
void ProfilingKernels::timed(const char* op, F&& f) {
  if (!enabled_) {
    f();
    return;
  }
  using Clock = std::chrono::steady_clock;
  inner_.synchronize();  // earlier work is not this op's
  const auto t0 = Clock::now();
  f();
  inner_.synchronize();
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  OpStats& st = stats_[op];
  st.op = op;
  ++st.calls;
  st.seconds += s;
}

std::vector<ProfilingKernels::OpStats> ProfilingKernels::stats() const {
  std::vector<OpStats> v;
  for (const auto& [name, st] : stats_) v.push_back(st);
  std::sort(v.begin(), v.end(), [](const OpStats& a, const OpStats& b) {
    return a.seconds > b.seconds || (a.seconds == b.seconds && a.op < b.op);
  });
  return v;
}

double ProfilingKernels::total_seconds() const {
  double t = 0.0;
  for (const auto& [name, st] : stats_) t += st.seconds;
  return t;
}

std::string ProfilingKernels::report(const std::string& title) const {
  std::ostringstream os;
  if (!title.empty()) os << title << "\n";
  const double total = total_seconds();
  char line[160];
  std::snprintf(line, sizeof line, "%-28s %8s %12s %12s %7s\n", "op", "calls", "total ms", "ms/call", "%");
  os << line;
  for (const OpStats& s : stats()) {
    std::snprintf(line, sizeof line, "%-28s %8lld %12.3f %12.4f %6.1f%%\n", s.op.c_str(),
                  static_cast<long long>(s.calls), 1e3 * s.seconds, s.calls ? 1e3 * s.seconds / double(s.calls) : 0.0,
                  total > 0 ? 100.0 * s.seconds / total : 0.0);
    os << line;
  }
  std::snprintf(line, sizeof line, "%-28s %8s %12.3f\n", "total", "", 1e3 * total);
  os << line;
  return os.str();
}

Tensor ProfilingKernels::alloc(const Shape& shape, DType dtype) {
  Tensor t;
  timed("alloc", [&] { t = inner_.alloc(shape, dtype); });
  return t;
}
void ProfilingKernels::zero(Tensor& t) {
  timed("zero", [&] { inner_.zero(t); });
}
void ProfilingKernels::copy(Tensor& dst, const Tensor& src) {
  timed("copy", [&] { inner_.copy(dst, src); });
}
void ProfilingKernels::copy_heads(Tensor& dst, int64_t dst_head, const Tensor& src, int64_t src_head, int64_t count,
                                  bool accumulate) {
  timed("copy_heads", [&] { inner_.copy_heads(dst, dst_head, src, src_head, count, accumulate); });
}
void ProfilingKernels::embedding_forward(Tensor& out, const Tensor& tokens, const Tensor& wte) {
  timed("embedding_forward", [&] { inner_.embedding_forward(out, tokens, wte); });
}
void ProfilingKernels::embedding_backward(Tensor& dwte, const Tensor& dout, const Tensor& tokens) {
  timed("embedding_backward", [&] { inner_.embedding_backward(dwte, dout, tokens); });
}
void ProfilingKernels::rmsnorm_forward(Tensor& out, Tensor& rstd, const Tensor& inp, const Tensor& weight, float eps) {
  timed("rmsnorm_forward", [&] { inner_.rmsnorm_forward(out, rstd, inp, weight, eps); });
}
void ProfilingKernels::rmsnorm_backward(Tensor& dinp, bool accumulate, Tensor& dweight, const Tensor& dout,
                                        const Tensor& inp, const Tensor& weight, const Tensor& rstd) {
  timed("rmsnorm_backward", [&] { inner_.rmsnorm_backward(dinp, accumulate, dweight, dout, inp, weight, rstd); });
}
void ProfilingKernels::matmul_forward(Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor* bias) {
  timed("matmul_forward", [&] { inner_.matmul_forward(out, inp, weight, bias); });
}
void ProfilingKernels::matmul_backward(Tensor* dinp, bool accumulate, Tensor& dweight, Tensor* dbias,
                                       const Tensor& dout, const Tensor& inp, const Tensor& weight) {
  timed("matmul_backward", [&] { inner_.matmul_backward(dinp, accumulate, dweight, dbias, dout, inp, weight); });
}
void ProfilingKernels::rope_forward(Tensor& x, const Tensor& positions, float theta) {
  timed("rope_forward", [&] { inner_.rope_forward(x, positions, theta); });
}
void ProfilingKernels::rope_backward(Tensor& dx, const Tensor& positions, float theta) {
  timed("rope_backward", [&] { inner_.rope_backward(dx, positions, theta); });
}
void ProfilingKernels::attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                                         const Tensor& cu_seqlens, int max_seqlen) {
  timed("attention_forward", [&] { inner_.attention_forward(out, lse, q, k, v, cu_seqlens, max_seqlen); });
}
void ProfilingKernels::attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& out,
                                          const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                                          const Tensor& cu_seqlens, int max_seqlen) {
  timed("attention_backward",
        [&] { inner_.attention_backward(dq, dk, dv, dout, out, lse, q, k, v, cu_seqlens, max_seqlen); });
}
void ProfilingKernels::swiglu_forward(Tensor& out, const Tensor& gu) {
  timed("swiglu_forward", [&] { inner_.swiglu_forward(out, gu); });
}
void ProfilingKernels::swiglu_backward(Tensor& dgu, const Tensor& dout, const Tensor& gu) {
  timed("swiglu_backward", [&] { inner_.swiglu_backward(dgu, dout, gu); });
}
void ProfilingKernels::polynorm_forward(Tensor& out, Tensor& rstd, const Tensor& gu, const Tensor& coef, float eps) {
  timed("polynorm_forward", [&] { inner_.polynorm_forward(out, rstd, gu, coef, eps); });
}
void ProfilingKernels::polynorm_backward(Tensor& dgu, Tensor& dcoef, const Tensor& dout, const Tensor& gu,
                                         const Tensor& coef, const Tensor& rstd) {
  timed("polynorm_backward", [&] { inner_.polynorm_backward(dgu, dcoef, dout, gu, coef, rstd); });
}
void ProfilingKernels::diff_attn_combine_forward(Tensor& out, Tensor& rstd, const Tensor& a1, const Tensor& a2,
                                                 const Tensor& lam, const Tensor& weight, double lambda_init,
                                                 float eps) {
  timed("diff_attn_combine_forward",
        [&] { inner_.diff_attn_combine_forward(out, rstd, a1, a2, lam, weight, lambda_init, eps); });
}
void ProfilingKernels::diff_attn_combine_backward(Tensor& da1, Tensor& da2, Tensor& dlam, Tensor& dweight,
                                                  const Tensor& dout, const Tensor& a1, const Tensor& a2,
                                                  const Tensor& lam, const Tensor& weight, const Tensor& rstd,
                                                  double lambda_init) {
  timed("diff_attn_combine_backward", [&] {
    inner_.diff_attn_combine_backward(da1, da2, dlam, dweight, dout, a1, a2, lam, weight, rstd, lambda_init);
  });
}
void ProfilingKernels::add_inplace(Tensor& y, const Tensor& x) {
  timed("add_inplace", [&] { inner_.add_inplace(y, x); });
}
void ProfilingKernels::scale_inplace(Tensor& y, float s) {
  timed("scale_inplace", [&] { inner_.scale_inplace(y, s); });
}
void ProfilingKernels::axpby(Tensor& y, double a, const Tensor& x, double b) {
  timed("axpby", [&] { inner_.axpby(y, a, x, b); });
}
void ProfilingKernels::attention_max_logit(Tensor& out, const Tensor& q, const Tensor& k, const Tensor& cu_seqlens,
                                           int max_seqlen) {
  timed("attention_max_logit", [&] { inner_.attention_max_logit(out, q, k, cu_seqlens, max_seqlen); });
}
void ProfilingKernels::lm_head_logprobs(Tensor& logp, const Tensor& x, const Tensor& W, const Tensor& targets) {
  timed("lm_head_logprobs", [&] { inner_.lm_head_logprobs(logp, x, W, targets); });
}
void ProfilingKernels::lm_head_logprobs_backward(Tensor& logp, Tensor* dx, Tensor& dW, const Tensor& x,
                                                 const Tensor& W, const Tensor& targets, const Tensor& dlogp) {
  timed("lm_head_logprobs_backward", [&] { inner_.lm_head_logprobs_backward(logp, dx, dW, x, W, targets, dlogp); });
}
void ProfilingKernels::kv_cache_write(Tensor& kcache, Tensor& vcache, const Tensor& k, const Tensor& v,
                                      const Tensor& slot, const Tensor& pos) {
  timed("kv_cache_write", [&] { inner_.kv_cache_write(kcache, vcache, k, v, slot, pos); });
}
void ProfilingKernels::attention_cached(Tensor& out, const Tensor& q, const Tensor& kcache, const Tensor& vcache,
                                        const Tensor& slot, const Tensor& pos) {
  timed("attention_cached", [&] { inner_.attention_cached(out, q, kcache, vcache, slot, pos); });
}
void ProfilingKernels::sample_tokens(Tensor& tokens, Tensor& logp, const Tensor& logits, const Tensor& u,
                                     float temperature, int top_k, float top_p) {
  timed("sample_tokens", [&] { inner_.sample_tokens(tokens, logp, logits, u, temperature, top_k, top_p); });
}
void ProfilingKernels::adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWParams& p) {
  timed("adamw_step", [&] { inner_.adamw_step(param, grad, m, v, p); });
}
void ProfilingKernels::adamw_step_many(const std::vector<AdamWTensor>& ts, const AdamWParams& p) {
  timed("adamw_step_many", [&] { inner_.adamw_step_many(ts, p); });
}
double ProfilingKernels::sum_squares(const Tensor& x) {
  double r = 0.0;
  timed("sum_squares", [&] { r = inner_.sum_squares(x); });
  return r;
}

double ProfilingKernels::sum_squares_many(const std::vector<const Tensor*>& xs) {
  double r = 0;
  timed("sum_squares", [&] { r = inner_.sum_squares_many(xs); });
  return r;
}

void ProfilingKernels::fill_normal(Tensor& t, uint64_t seed, uint32_t stream, double std) {
  timed("fill_normal", [&] { inner_.fill_normal(t, seed, stream, std); });
}

}  // namespace temper
