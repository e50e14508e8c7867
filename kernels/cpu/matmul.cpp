// CPU backend: the linear layer out = inp @ weight^T (+ bias) and its backward,
// on CBLAS GEMM. inp may have any leading shape; rows = numel / C.
#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/cpu_kernels.h"

namespace temper {

void CpuKernels::matmul_forward(Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor* bias) {
  const char* op = "matmul_forward";
  DType dt = bias ? cpu::common_float_dtype(op, {{"out", &out}, {"inp", &inp}, {"weight", &weight}, {"bias", bias}})
                  : cpu::common_float_dtype(op, {{"out", &out}, {"inp", &inp}, {"weight", &weight}});
  const LinearDims d = linear_dims(op, inp, weight, out, "out");
  if (bias) cpu::check_shape(op, "bias", *bias, {d.OC});
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    T* o = out.data<T>();
    cpu::gemm(false, true, d.rows, d.OC, d.C, T(1), inp.data<T>(), d.C, weight.data<T>(), d.C, T(0), o, d.OC);
    if (bias) {
      const T* b = bias->data<T>();
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < d.rows; ++r)
        for (int64_t j = 0; j < d.OC; ++j) o[r * d.OC + j] += b[j];
    }
  });
}

void CpuKernels::matmul_backward(Tensor* dinp, bool accumulate, Tensor& dweight, Tensor* dbias, const Tensor& dout,
                                 const Tensor& inp, const Tensor& weight) {
  const char* op = "matmul_backward";
  DType dt = cpu::common_float_dtype(op, {{"dweight", &dweight}, {"dout", &dout}, {"inp", &inp}, {"weight", &weight}});
  if (dinp) cpu::common_float_dtype(op, {{"dweight", &dweight}, {"dinp", dinp}});
  if (dbias) cpu::common_float_dtype(op, {{"dweight", &dweight}, {"dbias", dbias}});
  const LinearDims d = linear_dims(op, inp, weight, dout, "dout");
  cpu::check_shape(op, "dweight", dweight, weight.shape());
  if (dinp) cpu::check_shape(op, "dinp", *dinp, inp.shape());
  if (dbias) cpu::check_shape(op, "dbias", *dbias, {d.OC});
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    const T* g = dout.data<T>();
    const T* x = inp.data<T>();
    // dinp[rows, C] (=|+=) dout[rows, OC] @ weight[OC, C]
    if (dinp)
      cpu::gemm(false, false, d.rows, d.C, d.OC, T(1), g, d.OC, weight.data<T>(), d.C, accumulate ? T(1) : T(0),
                dinp->data<T>(), d.C);
    // dweight[OC, C] += dout^T[OC, rows] @ inp[rows, C]
    cpu::gemm(true, false, d.OC, d.C, d.rows, T(1), g, d.OC, x, d.C, T(1), dweight.data<T>(), d.C);
    if (dbias) {
      T* db = dbias->data<T>();
#pragma omp parallel for schedule(static)
      for (int64_t j = 0; j < d.OC; ++j) {
        double acc = 0.0;
        for (int64_t r = 0; r < d.rows; ++r) acc += double(g[r * d.OC + j]);
        db[j] += static_cast<T>(acc);
      }
    }
  });
}

}  // namespace temper
