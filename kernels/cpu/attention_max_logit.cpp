// CPU backend: the largest pre-softmax attention logit of each query head
// (QK-clip): out[h] = max(out[h], max_{i, j <= i, same document} q_i,h . k_j,g / sqrt(D)),
// g = h / (H / KVH). Dot products in double; parallel over heads.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/cpu_kernels.h"

namespace temper {

void CpuKernels::attention_max_logit(Tensor& out, const Tensor& q, const Tensor& k, const Tensor& cu_seqlens,
                                     int max_seqlen) {
  const char* op = "attention_max_logit";
  DType dt = cpu::common_float_dtype(op, {{"out", &out}, {"q", &q}, {"k", &k}});
  const QkDims dims = max_logit_dims(op, out, q, k);
  const int64_t N = dims.N, H = dims.H, KVH = dims.KVH, D = dims.D;
  TEMPER_CHECK(cu_seqlens.numel() >= 1, op, ": 'cu_seqlens' must have S+1 >= 1 elements");
  cpu::check_i32(op, "cu_seqlens", cu_seqlens, cu_seqlens.numel());
  const int32_t* cu = cu_seqlens.data<int32_t>();
  const int64_t S = cu_seqlens.numel() - 1;
  TEMPER_CHECK(cu[0] == 0 && cu[S] == N, op, ": cu_seqlens must start at 0 and end at N = ", N, ", got ", cu[0],
               " ... ", cu[S]);
  for (int64_t s = 0; s < S; ++s)
    TEMPER_CHECK(cu[s + 1] >= cu[s] && cu[s + 1] - cu[s] <= max_seqlen, op, ": document ", s, " spans [", cu[s], ", ",
                 cu[s + 1], "), not a non-decreasing range of at most max_seqlen = ", max_seqlen, " tokens");
  const int64_t group = H / KVH;
  const double scale = 1.0 / std::sqrt(double(D));
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    const T* pq = q.data<T>();
    const T* pk = k.data<T>();
    T* po = out.data<T>();
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / group;
      double best = -std::numeric_limits<double>::infinity();
      for (int64_t s = 0; s < S; ++s)
        for (int64_t i = cu[s]; i < cu[s + 1]; ++i) {
          const T* qi = pq + (i * H + h) * D;
          for (int64_t j = cu[s]; j <= i; ++j) {
            const T* kj = pk + (j * KVH + g) * D;
            double acc = 0.0;
            for (int64_t e = 0; e < D; ++e) acc += double(qi[e]) * double(kj[e]);
            best = std::max(best, acc * scale);
          }
        }
      po[h] = static_cast<T>(std::max(double(po[h]), best));
    }
  });
}

}  // namespace temper
