// Argument checks and the CBLAS GEMM wrapper used by every CPU kernel file.
#include "kernels/cpu/cpu_common.h"

#include <limits>

namespace temper::cpu {

void check_on_cpu(const char* op, std::initializer_list<NamedTensor> ts) {
  for (const auto& [name, t] : ts) {
    TEMPER_CHECK(t->defined(), op, ": tensor '", name, "' is not allocated");
    TEMPER_CHECK(t->device() == Device::CPU, op, ": tensor '", name, "' lives on ", device_name(t->device()),
                 ", but the cpu backend only works on host tensors");
  }
}

DType common_float_dtype(const char* op, std::initializer_list<NamedTensor> ts) {
  check_on_cpu(op, ts);
  const auto& first = *ts.begin();
  DType dt = first.second->dtype();
  TEMPER_CHECK(dt == DType::F32 || dt == DType::F64, op, ": tensor '", first.first, "' has dtype ",
               dtype_name(dt), "; the cpu backend computes in f32 or f64 only");
  for (const auto& [name, t] : ts) {
    TEMPER_CHECK(t->dtype() == dt, op, ": tensor '", name, "' has dtype ", dtype_name(t->dtype()), " but '",
                 first.first, "' has ", dtype_name(dt),
                 "; the cpu backend needs every float tensor of one call in one dtype (all f32 or all f64)");
  }
  return dt;
}

void check_i32(const char* op, const char* name, const Tensor& t, int64_t n) {
  check_on_cpu(op, {{name, &t}});
  TEMPER_CHECK(t.dtype() == DType::I32, op, ": '", name, "' must be i32, got ", dtype_name(t.dtype()));
  TEMPER_CHECK(t.numel() == n, op, ": '", name, "' has shape ", shape_str(t.shape()), " (", t.numel(),
               " elements), expected ", n, " elements");
}

namespace {

// CBLAS takes int sizes; refuse products that do not fit instead of wrapping.
int to_blas_int(int64_t v, const char* what) {
  TEMPER_CHECK(v >= 0 && v <= std::numeric_limits<int>::max(), "gemm: ", what, " = ", v,
               " does not fit the BLAS integer type");
  return static_cast<int>(v);
}

// Empty products: C = beta * C (BLAS implementations disagree on M/N/K = 0).
template <typename T>
void scale_only(int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
}

}  // namespace

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_only(M, N, beta, C, ldc);
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, to_blas_int(M, "M"),
              to_blas_int(N, "N"), to_blas_int(K, "K"), alpha, A, to_blas_int(lda, "lda"), B,
              to_blas_int(ldb, "ldb"), beta, C, to_blas_int(ldc, "ldc"));
}

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
          const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_only(M, N, beta, C, ldc);
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, to_blas_int(M, "M"),
              to_blas_int(N, "N"), to_blas_int(K, "K"), alpha, A, to_blas_int(lda, "lda"), B,
              to_blas_int(ldb, "ldb"), beta, C, to_blas_int(ldc, "ldc"));
}

}  // namespace temper::cpu
