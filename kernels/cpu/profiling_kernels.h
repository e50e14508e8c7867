// ProfilingKernels: a Kernels decorator that forwards every call to an inner
// backend and accumulates, per op name, the number of calls and the seconds
// spent. While enabled it synchronises the inner backend before and after each
// call, so asynchronous (GPU) work is attributed to the op that queued it; this
// serialisation slows the run, so enable it only for the steps being profiled.
// Disabled, it forwards without timing or synchronising. Not thread-safe.
// (It lives in kernels/cpu only because that module is always built; it works
// with any backend.)
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kernels/kernels.h"

namespace temper {

class ProfilingKernels final : public Kernels {
 public:
  explicit ProfilingKernels(Kernels& inner, bool enabled = true);

  Kernels& inner() { return inner_; }
  void set_enabled(bool on) { enabled_ = on; }
  bool enabled() const { return enabled_; }
  void reset() { stats_.clear(); }

  struct OpStats {
    std::string op;
    int64_t calls = 0;
    double seconds = 0.0;
  };
  // Per op, most time first (ties by name).
  std::vector<OpStats> stats() const;
  double total_seconds() const;
  // A fixed-width table: op, calls, total ms, ms per call, % of the total.
  std::string report(const std::string& title = "") const;

  Device device() const override { return inner_.device(); }
  DType act_dtype() const override { return inner_.act_dtype(); }
  std::string name() const override { return inner_.name(); }

  Tensor alloc(const Shape& shape, DType dtype) override;
  void zero(Tensor& t) override;
  void copy(Tensor& dst, const Tensor& src) override;
  void copy_heads(Tensor& dst, int64_t dst_head, const Tensor& src, int64_t src_head, int64_t count,
                  bool accumulate) override;
  void synchronize() override { inner_.synchronize(); }
  void set_deterministic(bool on) override { inner_.set_deterministic(on); }

  void embedding_forward(Tensor& out, const Tensor& tokens, const Tensor& wte) override;
  void embedding_backward(Tensor& dwte, const Tensor& dout, const Tensor& tokens) override;
  void rmsnorm_forward(Tensor& out, Tensor& rstd, const Tensor& inp, const Tensor& weight, float eps) override;
  void rmsnorm_backward(Tensor& dinp, bool accumulate, Tensor& dweight, const Tensor& dout, const Tensor& inp,
                        const Tensor& weight, const Tensor& rstd) override;
  void matmul_forward(Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor* bias) override;
  void matmul_backward(Tensor* dinp, bool accumulate, Tensor& dweight, Tensor* dbias, const Tensor& dout,
                       const Tensor& inp, const Tensor& weight) override;
  void rope_forward(Tensor& x, const Tensor& positions, float theta) override;
  void rope_backward(Tensor& dx, const Tensor& positions, float theta) override;
  void attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& cu_seqlens, int max_seqlen) override;
  void attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& out, const Tensor& lse,
                          const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu_seqlens,
                          int max_seqlen) override;
  void swiglu_forward(Tensor& out, const Tensor& gu) override;
  void swiglu_backward(Tensor& dgu, const Tensor& dout, const Tensor& gu) override;
  void polynorm_forward(Tensor& out, Tensor& rstd, const Tensor& gu, const Tensor& coef, float eps) override;
  void polynorm_backward(Tensor& dgu, Tensor& dcoef, const Tensor& dout, const Tensor& gu, const Tensor& coef,
                         const Tensor& rstd) override;
  void diff_attn_combine_forward(Tensor& out, Tensor& rstd, const Tensor& a1, const Tensor& a2, const Tensor& lam,
                                 const Tensor& weight, double lambda_init, float eps) override;
  void diff_attn_combine_backward(Tensor& da1, Tensor& da2, Tensor& dlam, Tensor& dweight, const Tensor& dout,
                                  const Tensor& a1, const Tensor& a2, const Tensor& lam, const Tensor& weight,
                                  const Tensor& rstd, double lambda_init) override;
  void add_inplace(Tensor& y, const Tensor& x) override;
  void scale_inplace(Tensor& y, float s) override;
  void axpby(Tensor& y, double a, const Tensor& x, double b) override;
  void attention_max_logit(Tensor& out, const Tensor& q, const Tensor& k, const Tensor& cu_seqlens,
                           int max_seqlen) override;
  void lm_head_logprobs(Tensor& logp, const Tensor& x, const Tensor& W, const Tensor& targets) override;
  void lm_head_logprobs_backward(Tensor& logp, Tensor* dx, Tensor& dW, const Tensor& x, const Tensor& W,
                                 const Tensor& targets, const Tensor& dlogp) override;
  void kv_cache_write(Tensor& kcache, Tensor& vcache, const Tensor& k, const Tensor& v, const Tensor& slot,
                      const Tensor& pos) override;
  void attention_cached(Tensor& out, const Tensor& q, const Tensor& kcache, const Tensor& vcache, const Tensor& slot,
                        const Tensor& pos) override;
  void sample_tokens(Tensor& tokens, Tensor& logp, const Tensor& logits, const Tensor& u, float temperature,
                     int top_k, float top_p) override;
  void adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWParams& p) override;
  void adamw_step_many(const std::vector<AdamWTensor>& ts, const AdamWParams& p) override;
  double sum_squares(const Tensor& x) override;
  double sum_squares_many(const std::vector<const Tensor*>& xs) override;
  void fill_normal(Tensor& t, uint64_t seed, uint32_t stream, double std) override;

 private:
  template <typename F>
  void timed(const char* op, F&& f);

  Kernels& inner_;
  bool enabled_;
  std::map<std::string, OpStats> stats_;
};

}  // namespace temper
