// Private to kernels/kokkos: the backend class, View aliases over temper's raw
// device buffers, and argument checks that name the op and the tensor.
#pragma once
#include <Kokkos_Core.hpp>

#include <cstdint>
#include <initializer_list>
#include <utility>

#include "kernels/kokkos/kokkos_kernels.h"
#include "kernels/op_checks.h"

namespace temper {

namespace kk {

// Device math: Kokkos:: from 4.0 (3.x has it in Kokkos::Experimental).
#if KOKKOS_VERSION >= 40000
namespace math = ::Kokkos;
#else
namespace math = ::Kokkos::Experimental;
#endif

using Exec = Kokkos::DefaultExecutionSpace;
using Mem = Exec::memory_space;
using Unmanaged = Kokkos::MemoryTraits<Kokkos::Unmanaged>;
template <typename T>
using Vec = Kokkos::View<T*, Mem, Unmanaged>;            // a device buffer, flat
template <typename T>
using HostVec = Kokkos::View<T*, Kokkos::HostSpace, Unmanaged>;
using Range = Kokkos::RangePolicy<Exec, Kokkos::IndexType<int64_t>>;
using Team = Kokkos::TeamPolicy<Exec>;
using Member = Team::member_type;

// Flat unmanaged Views over a tensor's storage (the tensor must be on Device::KOKKOS).
template <typename T>
Vec<T> view(Tensor& t) { return Vec<T>(t.data<T>(), size_t(t.numel())); }
template <typename T>
Vec<const T> cview(const Tensor& t) { return Vec<const T>(t.data<const T>(), size_t(t.numel())); }

using NamedTensor = std::pair<const char*, const Tensor*>;
// Every tensor on Device::KOKKOS and of dtype dt.
void check(const char* op, DType dt, std::initializer_list<NamedTensor> ts);
// An i32 index tensor of n elements on Device::KOKKOS.
void check_i32(const char* op, const char* name, const Tensor& t, int64_t n);
// Throws unless every i32 index of t lies in [lo, hi) (one device reduction).
void check_index_range(const char* op, const char* name, const Tensor& t, int64_t lo, int64_t hi);

// C[M,N] = alpha op(A) op(B) + beta C, row-major f32 buffers on the device
// (KokkosBlas::gemm; lda etc. are row strides of the stored matrices).
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

}  // namespace kk

class KokkosBackend final : public Kernels {
 public:
  Device device() const override { return Device::KOKKOS; }
  DType act_dtype() const override { return DType::F32; }
  std::string name() const override { return "kokkos"; }
  void synchronize() override;

  // memory.cpp
  Tensor alloc(const Shape& shape, DType dtype) override;
  void zero(Tensor& t) override;
  void copy(Tensor& dst, const Tensor& src) override;

  // embedding.cpp
  void embedding_forward(Tensor& out, const Tensor& tokens, const Tensor& wte) override;
  void embedding_backward(Tensor& dwte, const Tensor& dout, const Tensor& tokens) override;

  // rmsnorm.cpp
  void rmsnorm_forward(Tensor& out, Tensor& rstd, const Tensor& inp, const Tensor& weight, float eps) override;
  void rmsnorm_backward(Tensor& dinp, bool accumulate, Tensor& dweight, const Tensor& dout, const Tensor& inp,
                        const Tensor& weight, const Tensor& rstd) override;

  // matmul.cpp
  void matmul_forward(Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor* bias) override;
  void matmul_backward(Tensor* dinp, bool accumulate, Tensor& dweight, Tensor* dbias, const Tensor& dout,
                       const Tensor& inp, const Tensor& weight) override;

  // rope.cpp
  void rope_forward(Tensor& x, const Tensor& positions, float theta) override;
  void rope_backward(Tensor& dx, const Tensor& positions, float theta) override;

  // swiglu.cpp
  void swiglu_forward(Tensor& out, const Tensor& gu) override;
  void swiglu_backward(Tensor& dgu, const Tensor& dout, const Tensor& gu) override;

  // elementwise.cpp
  void add_inplace(Tensor& y, const Tensor& x) override;
  void scale_inplace(Tensor& y, float s) override;
  void axpby(Tensor& y, double a, const Tensor& x, double b) override;

  // adamw.cpp
  void adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWParams& p) override;
  double sum_squares(const Tensor& x) override;

  // attention.cpp
  void attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& cu_seqlens, int max_seqlen) override;
  void attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& out,
                          const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                          const Tensor& cu_seqlens, int max_seqlen) override;
  void attention_max_logit(Tensor& out, const Tensor& q, const Tensor& k, const Tensor& cu_seqlens,
                           int max_seqlen) override;

  // lm_head.cpp
  void lm_head_logprobs(Tensor& logp, const Tensor& x, const Tensor& W, const Tensor& targets) override;
  void lm_head_logprobs_backward(Tensor& logp, Tensor* dx, Tensor& dW, const Tensor& x, const Tensor& W,
                                 const Tensor& targets, const Tensor& dlogp) override;

  // polynorm.cpp, differential_attention.cpp
  void polynorm_forward(Tensor& out, Tensor& rstd, const Tensor& gu, const Tensor& coef, float eps) override;
  void polynorm_backward(Tensor& dgu, Tensor& dcoef, const Tensor& dout, const Tensor& gu, const Tensor& coef,
                         const Tensor& rstd) override;
  void diff_attn_combine_forward(Tensor& out, Tensor& rstd, const Tensor& a1, const Tensor& a2, const Tensor& lam,
                                 const Tensor& weight, double lambda_init, float eps) override;
  void diff_attn_combine_backward(Tensor& da1, Tensor& da2, Tensor& dlam, Tensor& dweight, const Tensor& dout,
                                  const Tensor& a1, const Tensor& a2, const Tensor& lam, const Tensor& weight,
                                  const Tensor& rstd, double lambda_init) override;

  // kv_cache.cpp
  void kv_cache_write(Tensor& kcache, Tensor& vcache, const Tensor& k, const Tensor& v, const Tensor& slot,
                      const Tensor& pos) override;
  void attention_cached(Tensor& out, const Tensor& q, const Tensor& kcache, const Tensor& vcache,
                        const Tensor& slot, const Tensor& pos) override;

  // sampling.cpp (staged through the host: the CPU reference draws)
  void sample_tokens(Tensor& tokens, Tensor& logp, const Tensor& logits, const Tensor& u, float temperature,
                     int top_k, float top_p) override;
  // logits[:, first:] = -inf in place on the device (f32, f64, bf16)
  void mask_logits_from(Tensor& logits, int64_t first) override;
};

}  // namespace temper
