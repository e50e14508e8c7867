// Kokkos backend: the linear layer out = inp @ weight^T (+ bias) and its
// backward on KokkosBlas::gemm (cuBLAS / rocBLAS / oneMKL where Kokkos Kernels was built
// with that TPL, its own kernels otherwise).
//
// Row-major matrices are passed as LayoutLeft Views of their transposes:
// C = op(A) op(B) in row-major is C^T = op(B)^T op(A)^T in column-major, so the
// call swaps the operands and keeps each one's transpose flag.
#include <KokkosBlas3_gemm.hpp>

#include "kernels/kokkos/kokkos_common.h"

namespace temper {

namespace kk {

using ColMat = Kokkos::View<float**, Kokkos::LayoutLeft, Mem, Unmanaged>;
using ConstColMat = Kokkos::View<const float**, Kokkos::LayoutLeft, Mem, Unmanaged>;

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  TEMPER_CHECK(lda == (trans_a ? M : K) && ldb == (trans_b ? K : N) && ldc == N,
               "kokkos gemm: only contiguous row-major operands are supported");
  if (M == 0 || N == 0) return;
  if (K == 0) {  // empty product: C = beta C (beta 0 writes 0)
    Vec<float> c(C, size_t(M * N));
    Kokkos::parallel_for(
        "temper::gemm_empty", Range(0, M * N), KOKKOS_LAMBDA(const int64_t i) { c(i) = beta == 0.0f ? 0.0f : beta * c(i); });
    return;
  }
  // Row-major A [ra, ca] is the column-major matrix A^T of shape (ca, ra).
  ConstColMat At(A, size_t(trans_a ? M : K), size_t(trans_a ? K : M));
  ConstColMat Bt(B, size_t(trans_b ? K : N), size_t(trans_b ? N : K));
  ColMat Ct(C, size_t(N), size_t(M));
  KokkosBlas::gemm(trans_b ? "T" : "N", trans_a ? "T" : "N", alpha, Bt, At, beta, Ct);
}

}  // namespace kk

void KokkosBackend::matmul_forward(Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor* bias) {
  const char* op = "matmul_forward";
  kk::check(op, DType::F32, {{"out", &out}, {"inp", &inp}, {"weight", &weight}});
  if (bias) kk::check(op, DType::F32, {{"bias", bias}});
  const LinearDims d = linear_dims(op, inp, weight, out, "out");
  if (bias) check_shape(op, "bias", *bias, {d.OC});
  kk::gemm(false, true, d.rows, d.OC, d.C, 1.0f, inp.data<float>(), d.C, weight.data<float>(), d.C, 0.0f,
           out.data<float>(), d.OC);
  if (bias) {
    auto o = kk::view<float>(out);
    auto b = kk::cview<float>(*bias);
    const int64_t OC = d.OC;
    Kokkos::parallel_for(
        "temper::matmul_bias", kk::Range(0, d.rows * OC), KOKKOS_LAMBDA(const int64_t i) { o(i) += b(i % OC); });
  }
}

void KokkosBackend::matmul_backward(Tensor* dinp, bool accumulate, Tensor& dweight, Tensor* dbias,
                                    const Tensor& dout, const Tensor& inp, const Tensor& weight) {
  const char* op = "matmul_backward";
  kk::check(op, DType::F32, {{"dweight", &dweight}, {"dout", &dout}, {"inp", &inp}, {"weight", &weight}});
  if (dinp) kk::check(op, DType::F32, {{"dinp", dinp}});
  if (dbias) kk::check(op, DType::F32, {{"dbias", dbias}});
  const LinearDims d = linear_dims(op, inp, weight, dout, "dout");
  check_shape(op, "dweight", dweight, weight.shape());
  if (dinp) check_shape(op, "dinp", *dinp, inp.shape());
  if (dbias) check_shape(op, "dbias", *dbias, {d.OC});
  const float* g = dout.data<float>();
  // dinp[rows, C] (=|+=) dout[rows, OC] @ weight[OC, C]
  if (dinp)
    kk::gemm(false, false, d.rows, d.C, d.OC, 1.0f, g, d.OC, weight.data<float>(), d.C, accumulate ? 1.0f : 0.0f,
             dinp->data<float>(), d.C);
  // dweight[OC, C] += dout^T[OC, rows] @ inp[rows, C]
  kk::gemm(true, false, d.OC, d.C, d.rows, 1.0f, g, d.OC, inp.data<float>(), d.C, 1.0f, dweight.data<float>(), d.C);
  if (dbias) {
    auto db = kk::view<float>(*dbias);
    auto gv = kk::cview<float>(dout);
    const int64_t rows = d.rows, OC = d.OC;
    Kokkos::parallel_for(
        "temper::matmul_dbias", kk::Range(0, OC), KOKKOS_LAMBDA(const int64_t j) {
          double acc = 0.0;
          for (int64_t r = 0; r < rows; ++r) acc += double(gv(r * OC + j));
          db(j) += static_cast<float>(acc);
        });
  }
}

}  // namespace temper
