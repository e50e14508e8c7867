// CUDA backend: the AdamW update on f32 param/grad/m/v (bias corrections
// computed on the host in double), and the sum of squares for gradient-norm
// clipping: per-thread double accumulators, per-block partial sums in double,
// summed on the device in a fixed order (deterministic).
//
// Multi-tensor versions (adamw_step_many, sum_squares_many): the tensors are cut
// into chunks of kChunk elements, and one grid has a block per chunk of every
// tensor; a block finds its tensor by binary search over a table of per-tensor
// entries (pointers, size, first chunk) that lives on the device. The table is
// uploaded once and reused while the caller passes the same tensors (every
// optimizer step does), so a step costs one launch, not one per parameter, and
// AdamW writes the bf16 compute copy in the same pass over the weights.
//   g' = grad_scale * g;  m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2
//   p -= lr * ((m / bc1) / (sqrt(v / bc2) + eps) + wd * p)
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/adamw_bias_correction.h"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

namespace {

__device__ __forceinline__ float adamw_one(float& w, float g, float& m, float& v, float lr, float b1, float b2,
                                           float eps, float wd, float gs, float bc1, float bc2) {
  const float gi = gs * g;
  m = b1 * m + (1.0f - b1) * gi;
  v = b2 * v + (1.0f - b2) * gi * gi;
  w -= lr * ((m / bc1) / (sqrtf(v / bc2) + eps) + wd * w);
  return w;
}

__global__ void adamw_kernel(float* w, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2,
                             float eps, float wd, float gs, float bc1, float bc2) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    adamw_one(w[i], g[i], m[i], v[i], lr, b1, b2, eps, wd, gs, bc1, bc2);
}

// The same update on float4 vectors (n4 = n / 4; pointers 16-byte aligned): the
// optimizer is memory-bound, and 16-byte accesses are what reach the bandwidth.
__global__ void adamw_kernel_vec4(float4* w, const float4* g, float4* m, float4* v, int64_t n4, float lr, float b1,
                                  float b2, float eps, float wd, float gs, float bc1, float bc2) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4; i += int64_t(gridDim.x) * blockDim.x) {
    float4 wi = w[i], mi = m[i], vi = v[i];
    const float4 gi = g[i];
    adamw_one(wi.x, gi.x, mi.x, vi.x, lr, b1, b2, eps, wd, gs, bc1, bc2);
    adamw_one(wi.y, gi.y, mi.y, vi.y, lr, b1, b2, eps, wd, gs, bc1, bc2);
    adamw_one(wi.z, gi.z, mi.z, vi.z, lr, b1, b2, eps, wd, gs, bc1, bc2);
    adamw_one(wi.w, gi.w, mi.w, vi.w, lr, b1, b2, eps, wd, gs, bc1, bc2);
    w[i] = wi;
    m[i] = mi;
    v[i] = vi;
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }
bool aligned8(const void* p) { return reinterpret_cast<uintptr_t>(p) % 8 == 0; }

// ---- multi-tensor kernels ---------------------------------------------------
constexpr int kMtThreads = 256;
constexpr int64_t kAdamChunk = 16384;  // elements per block (16 float4 per thread)
constexpr int64_t kSumChunk = 65536;

// One tensor of the multi-tensor AdamW (plain data: copied to the device as bytes).
struct MtAdamW {
  float* w;
  const float* g;
  float* m;
  float* v;
  __nv_bfloat16* out;  // the compute copy, or null
  int64_t n;
  int64_t chunk0;  // first chunk of this tensor in the grid
  float wd;
  int vec;  // float4 path: n % 4 == 0, w/g/m/v 16-byte and out 8-byte aligned
};

struct MtSum {
  const void* x;
  int64_t n;
  int64_t chunk0;
  int bf16;  // else f32
};

// The entry whose chunks hold chunk c: the last one with chunk0 <= c (entries
// ascending by chunk0, the first at 0; empty tensors share the next one's chunk0
// and lose the search to it).
template <typename E>
__device__ __forceinline__ int find_entry(const E* t, int count, int64_t c) {
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (t[mid].chunk0 <= c) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

__global__ void adamw_multi_kernel(const MtAdamW* table, int count, float lr, float b1, float b2, float eps,
                                   float gs, float bc1, float bc2) {
  __shared__ int idx;
  const int64_t c = blockIdx.x;
  if (threadIdx.x == 0) idx = find_entry(table, count, c);
  __syncthreads();
  const MtAdamW e = table[idx];
  const int64_t begin = (c - e.chunk0) * kAdamChunk;
  const int64_t end = begin + kAdamChunk < e.n ? begin + kAdamChunk : e.n;
  if (e.vec) {
    float4* w4 = reinterpret_cast<float4*>(e.w);
    const float4* g4 = reinterpret_cast<const float4*>(e.g);
    float4* m4 = reinterpret_cast<float4*>(e.m);
    float4* v4 = reinterpret_cast<float4*>(e.v);
    __nv_bfloat162* o2 = reinterpret_cast<__nv_bfloat162*>(e.out);
    for (int64_t i = begin / 4 + threadIdx.x; i < end / 4; i += kMtThreads) {
      float4 wi = w4[i], mi = m4[i], vi = v4[i];
      const float4 gi = g4[i];
      adamw_one(wi.x, gi.x, mi.x, vi.x, lr, b1, b2, eps, e.wd, gs, bc1, bc2);
      adamw_one(wi.y, gi.y, mi.y, vi.y, lr, b1, b2, eps, e.wd, gs, bc1, bc2);
      adamw_one(wi.z, gi.z, mi.z, vi.z, lr, b1, b2, eps, e.wd, gs, bc1, bc2);
      adamw_one(wi.w, gi.w, mi.w, vi.w, lr, b1, b2, eps, e.wd, gs, bc1, bc2);
      w4[i] = wi;
      m4[i] = mi;
      v4[i] = vi;
      if (o2) {
        o2[2 * i] = __floats2bfloat162_rn(wi.x, wi.y);
        o2[2 * i + 1] = __floats2bfloat162_rn(wi.z, wi.w);
      }
    }
  } else {
    for (int64_t i = begin + threadIdx.x; i < end; i += kMtThreads) {
      float wi = e.w[i], mi = e.m[i], vi = e.v[i];
      adamw_one(wi, e.g[i], mi, vi, lr, b1, b2, eps, e.wd, gs, bc1, bc2);
      e.w[i] = wi;
      e.m[i] = mi;
      e.v[i] = vi;
      if (e.out) e.out[i] = __float2bfloat16_rn(wi);
    }
  }
}

__global__ void sum_squares_multi_kernel(double* partial, const MtSum* table, int count) {
  __shared__ double scratch[32];
  __shared__ int idx;
  const int64_t c = blockIdx.x;
  if (threadIdx.x == 0) idx = find_entry(table, count, c);
  __syncthreads();
  const MtSum e = table[idx];
  const int64_t begin = (c - e.chunk0) * kSumChunk;
  const int64_t end = begin + kSumChunk < e.n ? begin + kSumChunk : e.n;
  double acc = 0.0;
  if (e.bf16) {
    const __nv_bfloat16* x = static_cast<const __nv_bfloat16*>(e.x);
    for (int64_t i = begin + threadIdx.x; i < end; i += kMtThreads) {
      const double f = __bfloat162float(x[i]);
      acc += f * f;
    }
  } else {
    const float* x = static_cast<const float*>(e.x);
    for (int64_t i = begin + threadIdx.x; i < end; i += kMtThreads) {
      const double f = x[i];
      acc += f * f;
    }
  }
  acc = cuda::block_sum(acc, scratch);
  if (threadIdx.x == 0) partial[c] = acc;
}

// One block: the partial sums added in a fixed order (strided per thread, then
// the block's fixed tree), so the result does not depend on timing.
__global__ void sum_partials_kernel(double* out, const double* partial, int64_t n) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
  acc = cuda::block_sum(acc, scratch);
  if (threadIdx.x == 0) *out = acc;
}

template <typename E>
std::vector<unsigned char> table_bytes(const std::vector<E>& entries) {
  std::vector<unsigned char> b(entries.size() * sizeof(E));
  if (!b.empty()) std::memcpy(b.data(), entries.data(), b.size());
  return b;
}

template <typename T>
__global__ void sum_squares_kernel(double* partial, const T* x, int64_t n) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const double f = cuda::ld(x, i);
    acc += f * f;
  }
  acc = cuda::block_sum(acc, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

}  // namespace

void CudaKernels::adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWParams& p) {
  const char* op = "adamw_step";
  cuda::check_dtype(op, "param", param, DType::F32);
  cuda::check_dtype(op, "grad", grad, DType::F32);
  cuda::check_dtype(op, "m", m, DType::F32);
  cuda::check_dtype(op, "v", v, DType::F32);
  cuda::check_shape(op, "grad", grad, param.shape());
  cuda::check_shape(op, "m", m, param.shape());
  cuda::check_shape(op, "v", v, param.shape());
  const AdamWBiasCorrection bc = adamw_bias_correction(op, p);
  const double bc1 = bc.bc1, bc2 = bc.bc2;
  const int64_t n = param.numel();
  if (n == 0) return;
  if (n % 4 == 0 && aligned16(param.raw()) && aligned16(grad.raw()) && aligned16(m.raw()) && aligned16(v.raw())) {
    const int64_t n4 = n / 4;
    const unsigned grid = cuda::grid_for(std::min<int64_t>(n4, int64_t(1) << 22), 256, op);
    adamw_kernel_vec4<<<grid, 256, 0, stream_>>>(
        static_cast<float4*>(param.raw()), static_cast<const float4*>(grad.raw()), static_cast<float4*>(m.raw()),
        static_cast<float4*>(v.raw()), n4, p.lr, p.beta1, p.beta2, p.eps, p.weight_decay, p.grad_scale, float(bc1),
        float(bc2));
  } else {
    const unsigned grid = cuda::grid_for(std::min<int64_t>(n, int64_t(1) << 24), 256, op);
    adamw_kernel<<<grid, 256, 0, stream_>>>(cuda::f32(param), cuda::f32(grad), cuda::f32(m), cuda::f32(v), n, p.lr,
                                            p.beta1, p.beta2, p.eps, p.weight_decay, p.grad_scale, float(bc1),
                                            float(bc2));
  }
  TEMPER_CUDA_CHECK_LAUNCH();
}

double CudaKernels::sum_squares(const Tensor& x) { return sum_squares_many({&x}); }

const void* CudaKernels::device_table(std::vector<unsigned char> bytes) {
  for (size_t i = 0; i < tables_.size(); ++i)
    if (tables_[i].host == bytes) {
      std::rotate(tables_.begin(), tables_.begin() + i, tables_.begin() + i + 1);  // most recent first
      return tables_.front().dev.raw();
    }
  TEMPER_CHECK(!recording_, "a multi-tensor op (adamw_step_many, sum_squares_many) met a new tensor list while a "
               "graph was recording: its pointer table must be uploaded before (run the call once unrecorded)");
  constexpr size_t kKeep = 8;
  if (tables_.size() >= kKeep) {
    synchronize();  // no copy from the evicted host bytes may still be in flight
    tables_.pop_back();
  }
  DeviceTable t;
  t.host = std::move(bytes);
  t.dev = alloc({int64_t(t.host.size())}, DType::U8);
  TEMPER_CUDA_CHECK(cudaMemcpyAsync(t.dev.raw(), t.host.data(), t.host.size(), cudaMemcpyHostToDevice, stream_));
  tables_.insert(tables_.begin(), std::move(t));
  return tables_.front().dev.raw();
}

void CudaKernels::adamw_step_many(const std::vector<AdamWTensor>& ts, const AdamWParams& p) {
  const char* op = "adamw_step_many";
  const AdamWBiasCorrection bc = adamw_bias_correction(op, p);
  const double bc1 = bc.bc1, bc2 = bc.bc2;
  std::vector<MtAdamW> entries;
  std::vector<const AdamWTensor*> copy_after;  // compute copies of a dtype other than bf16
  entries.reserve(ts.size());
  int64_t chunks = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    const AdamWTensor& t = ts[i];
    const std::string at = cat(op, " tensor ", i);
    cuda::check_dtype(at.c_str(), "param", t.param, DType::F32);
    cuda::check_dtype(at.c_str(), "grad", t.grad, DType::F32);
    cuda::check_dtype(at.c_str(), "m", t.m, DType::F32);
    cuda::check_dtype(at.c_str(), "v", t.v, DType::F32);
    cuda::check_shape(at.c_str(), "grad", t.grad, t.param.shape());
    cuda::check_shape(at.c_str(), "m", t.m, t.param.shape());
    cuda::check_shape(at.c_str(), "v", t.v, t.param.shape());
    const bool fused_copy = t.compute.defined() && t.compute.dtype() == DType::BF16;
    if (t.compute.defined()) {
      cuda::check_on_device(at.c_str(), {{"compute", &t.compute}});
      cuda::check_shape(at.c_str(), "compute", t.compute, t.param.shape());
      if (!fused_copy && t.compute.raw() != t.param.raw()) copy_after.push_back(&t);
    }
    MtAdamW e;
    std::memset(&e, 0, sizeof e);  // padding too: tables are compared as bytes
    e.w = cuda::f32(t.param);
    e.g = cuda::f32(t.grad);
    e.m = cuda::f32(t.m);
    e.v = cuda::f32(t.v);
    e.out = fused_copy ? static_cast<__nv_bfloat16*>(t.compute.raw()) : nullptr;
    e.n = t.param.numel();
    e.chunk0 = chunks;
    e.wd = t.weight_decay;
    e.vec = e.n % 4 == 0 && aligned16(e.w) && aligned16(e.g) && aligned16(e.m) && aligned16(e.v) &&
            (e.out == nullptr || aligned8(e.out));
    entries.push_back(e);
    chunks += (e.n + kAdamChunk - 1) / kAdamChunk;
  }
  if (chunks > 0) {
    TEMPER_CHECK(chunks < (int64_t(1) << 31), op, ": ", chunks, " chunks exceed one grid");
    const auto* table = static_cast<const MtAdamW*>(device_table(table_bytes(entries)));
    adamw_multi_kernel<<<unsigned(chunks), kMtThreads, 0, stream_>>>(table, int(entries.size()), p.lr, p.beta1,
                                                                       p.beta2, p.eps, p.grad_scale, float(bc1),
                                                                       float(bc2));
    TEMPER_CUDA_CHECK_LAUNCH();
  }
  for (const AdamWTensor* t : copy_after) {
    Tensor c = t->compute;
    copy(c, t->param);
  }
}

// All tensors in one multi-tensor launch: a partial sum per chunk, added on the
// device in a fixed order (deterministic), one value copied back.
double CudaKernels::sum_squares_many(const std::vector<const Tensor*>& xs) {
  const char* op = "sum_squares_many";
  std::vector<MtSum> entries;
  entries.reserve(xs.size());
  int64_t chunks = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = *xs[i];
    cuda::check_on_device(op, {{"x", &x}});
    TEMPER_CHECK(x.dtype() == DType::F32 || x.dtype() == DType::BF16, op, ": tensor ", i, " of dtype ",
                 dtype_name(x.dtype()), "; the cuda backend expects f32 or bf16");
    MtSum e;
    std::memset(&e, 0, sizeof e);
    e.x = x.raw();
    e.n = x.numel();
    e.chunk0 = chunks;
    e.bf16 = x.dtype() == DType::BF16;
    entries.push_back(e);
    chunks += (e.n + kSumChunk - 1) / kSumChunk;
  }
  if (chunks == 0) return 0.0;
  TEMPER_CHECK(chunks < (int64_t(1) << 31), op, ": ", chunks, " chunks exceed one grid");
  const auto* table = static_cast<const MtSum*>(device_table(table_bytes(entries)));
  Tensor partial = alloc({chunks + 1}, DType::F64);
  double* base = static_cast<double*>(partial.raw());
  sum_squares_multi_kernel<<<unsigned(chunks), kMtThreads, 0, stream_>>>(base + 1, table, int(entries.size()));
  TEMPER_CUDA_CHECK_LAUNCH();
  sum_partials_kernel<<<1, 1024, 0, stream_>>>(base, base + 1, chunks);
  TEMPER_CUDA_CHECK_LAUNCH();
  double host = 0.0;
  TEMPER_CUDA_CHECK(cudaMemcpyAsync(&host, base, sizeof(double), cudaMemcpyDeviceToHost, stream_));
  synchronize();
  return host;
}

}  // namespace temper
