// Helpers shared by the CPU kernel files: argument checks with messages that
// name the op and the offending tensor, f32/f64 dispatch, and a typed GEMM
// wrapper over CBLAS. Private to kernels/cpu (it includes <cblas.h>).
#pragma once
#include <cblas.h>

#include <cstdint>
#include <initializer_list>
#include <utility>

#include "core/tensor.h"
#include "kernels/op_checks.h"

namespace temper::cpu {

// A named tensor argument, for error messages.
using NamedTensor = std::pair<const char*, const Tensor*>;

// Every tensor must live on the CPU.
void check_on_cpu(const char* op, std::initializer_list<NamedTensor> ts);

// All given tensors must share one floating dtype, F32 or F64; returns it.
DType common_float_dtype(const char* op, std::initializer_list<NamedTensor> ts);

using temper::check_shape;  // kernels/op_checks.h

// An i32 index tensor of n elements on the CPU.
void check_i32(const char* op, const char* name, const Tensor& t, int64_t n);

// Runs f(T{}) with T = float for F32 and double for F64.
template <typename F>
void dispatch_float(DType dt, F&& f) {
  if (dt == DType::F32) {
    f(float{});
  } else {
    f(double{});
  }
}

// C[M,N] = alpha * op(A) @ op(B) + beta * C, row-major, with op = transpose
// when the flag is set. lda/ldb/ldc are the row strides of the stored matrices.
// Does nothing for empty products except scaling C by beta (beta 0 writes 0).
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
          const double* B, int64_t ldb, double beta, double* C, int64_t ldc);

}  // namespace temper::cpu
