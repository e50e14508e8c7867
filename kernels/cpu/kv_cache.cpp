// CPU backend: the generation KV cache and attention against it.
// Caches are [S, T, KVH, D] (S sequence slots of up to T positions). For new
// token n, slot[n] names its sequence and pos[n] its position there.
//   kv_cache_write:   kcache[slot[n], pos[n]] = k[n],  vcache[slot[n], pos[n]] = v[n]
//   attention_cached: for query head h (kv head g = h / (H / KVH)) of token n,
//     s_j = q_nh . kcache[slot, j, g] / sqrt(D) for j in [0, pos[n]],
//     out_nh = sum_j softmax(s)_j vcache[slot, j, g]
// The same formula as attention_forward (scores, max and sums in double), so a
// prefix in the cache gives the same values as the whole document recomputed.
// Parallel over (token, kv head); every iteration writes its own output rows.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_common.h"
#include "kernels/cpu/cpu_kernels.h"

namespace temper {

namespace {

struct CacheDims {
  int64_t S, T, KVH, D;
};

// kcache, vcache [S, T, KVH, D] of one shape.
CacheDims cache_dims(const char* op, const Tensor& kcache, const Tensor& vcache) {
  TEMPER_CHECK(kcache.ndim() == 4, op, ": 'kcache' must be [S, T, KVH, D], got ", shape_str(kcache.shape()));
  cpu::check_shape(op, "vcache", vcache, kcache.shape());
  CacheDims d{kcache.dim(0), kcache.dim(1), kcache.dim(2), kcache.dim(3)};
  TEMPER_CHECK(d.KVH > 0 && d.D > 0, op, ": 'kcache' ", shape_str(kcache.shape()),
               " needs positive kv heads and head dimension");
  return d;
}

// slot, pos i32[N] with slot in [0, S) and pos in [0, T).
void check_slots(const char* op, const Tensor& slot, const Tensor& pos, int64_t N, const CacheDims& d) {
  cpu::check_i32(op, "slot", slot, N);
  cpu::check_i32(op, "pos", pos, N);
  const int32_t* s = slot.data<int32_t>();
  const int32_t* p = pos.data<int32_t>();
  for (int64_t n = 0; n < N; ++n) {
    TEMPER_CHECK(s[n] >= 0 && s[n] < d.S, op, ": slot[", n, "] = ", s[n], " is outside the cache's ", d.S,
                 " slots");
    TEMPER_CHECK(p[n] >= 0 && p[n] < d.T, op, ": pos[", n, "] = ", p[n], " is outside the cache's ", d.T,
                 " positions (raise the engine's max_len)");
  }
}

template <typename T>
void write_impl(const CacheDims& d, int64_t N, T* kc, T* vc, const T* k, const T* v, const int32_t* slot,
                const int32_t* pos) {
  const int64_t row = d.KVH * d.D;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const int64_t at = (int64_t(slot[n]) * d.T + pos[n]) * row;
    std::copy(k + n * row, k + (n + 1) * row, kc + at);
    std::copy(v + n * row, v + (n + 1) * row, vc + at);
  }
}

// Dot product in double with four independent partial sums (the decode loop's
// hot spot: one sequential chain of adds would bound it by the add latency).
template <typename T>
double dot4(const T* a, const T* b, int64_t n) {
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  int64_t c = 0;
  for (; c + 4 <= n; c += 4) {
    s0 += double(a[c]) * double(b[c]);
    s1 += double(a[c + 1]) * double(b[c + 1]);
    s2 += double(a[c + 2]) * double(b[c + 2]);
    s3 += double(a[c + 3]) * double(b[c + 3]);
  }
  for (; c < n; ++c) s0 += double(a[c]) * double(b[c]);
  return (s0 + s1) + (s2 + s3);
}

// One (token, kv head) per iteration: its `group` query heads share each cached
// k and v row, so the cache is read once per kv head rather than once per head.
template <typename T>
void attend_impl(const CacheDims& d, int64_t N, int64_t H, T* out, const T* q, const T* kc, const T* vc,
                 const int32_t* slot, const int32_t* pos) {
  const int64_t D = d.D, KVH = d.KVH, G = H / KVH, T_ = std::max<int64_t>(d.T, 1);
  const double scale = 1.0 / std::sqrt(double(D));
#pragma omp parallel
  {
    std::vector<double> score(static_cast<size_t>(G * T_));  // [G, T]
    std::vector<double> acc(static_cast<size_t>(G * D)), mx(static_cast<size_t>(G)), sum(static_cast<size_t>(G));
#pragma omp for schedule(dynamic, 2)
    for (int64_t t = 0; t < N * KVH; ++t) {
      const int64_t n = t / KVH, g = t % KVH, len = int64_t(pos[n]) + 1;
      const T* qn = q + (n * H + g * G) * D;  // the group's G query rows, contiguous
      const T* kbase = kc + int64_t(slot[n]) * d.T * KVH * D + g * D;
      const T* vbase = vc + int64_t(slot[n]) * d.T * KVH * D + g * D;
      std::fill(mx.begin(), mx.end(), -INFINITY);
      for (int64_t j = 0; j < len; ++j) {
        const T* kj = kbase + j * KVH * D;
        for (int64_t h = 0; h < G; ++h) {
          const double s = scale * dot4(qn + h * D, kj, D);
          score[size_t(h * T_ + j)] = s;
          mx[size_t(h)] = std::max(mx[size_t(h)], s);
        }
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      std::fill(sum.begin(), sum.end(), 0.0);
      for (int64_t j = 0; j < len; ++j) {
        const T* vj = vbase + j * KVH * D;
        for (int64_t h = 0; h < G; ++h) {
          const double e = std::exp(score[size_t(h * T_ + j)] - mx[size_t(h)]);
          sum[size_t(h)] += e;
          double* a = acc.data() + h * D;
          for (int64_t c = 0; c < D; ++c) a[c] += e * double(vj[c]);
        }
      }
      for (int64_t h = 0; h < G; ++h) {
        T* on = out + (n * H + g * G + h) * D;
        for (int64_t c = 0; c < D; ++c) on[c] = static_cast<T>(acc[size_t(h * D + c)] / sum[size_t(h)]);
      }
    }
  }
}

}  // namespace

void CpuKernels::kv_cache_write(Tensor& kcache, Tensor& vcache, const Tensor& k, const Tensor& v,
                                const Tensor& slot, const Tensor& pos) {
  const char* op = "kv_cache_write";
  DType dt = cpu::common_float_dtype(op, {{"kcache", &kcache}, {"vcache", &vcache}, {"k", &k}, {"v", &v}});
  const CacheDims d = cache_dims(op, kcache, vcache);
  TEMPER_CHECK(k.ndim() == 3 && k.dim(1) == d.KVH && k.dim(2) == d.D, op, ": 'k' has shape ",
               shape_str(k.shape()), ", expected [N, ", d.KVH, ", ", d.D, "] to match 'kcache' ",
               shape_str(kcache.shape()));
  cpu::check_shape(op, "v", v, k.shape());
  const int64_t N = k.dim(0);
  check_slots(op, slot, pos, N, d);
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    write_impl<T>(d, N, kcache.data<T>(), vcache.data<T>(), k.data<T>(), v.data<T>(), slot.data<int32_t>(),
                  pos.data<int32_t>());
  });
}

void CpuKernels::attention_cached(Tensor& out, const Tensor& q, const Tensor& kcache, const Tensor& vcache,
                                  const Tensor& slot, const Tensor& pos) {
  const char* op = "attention_cached";
  DType dt = cpu::common_float_dtype(op, {{"out", &out}, {"q", &q}, {"kcache", &kcache}, {"vcache", &vcache}});
  const CacheDims d = cache_dims(op, kcache, vcache);
  TEMPER_CHECK(q.ndim() == 3 && q.dim(2) == d.D, op, ": 'q' has shape ", shape_str(q.shape()), ", expected [N, H, ",
               d.D, "] to match 'kcache' ", shape_str(kcache.shape()));
  const int64_t N = q.dim(0), H = q.dim(1);
  TEMPER_CHECK(H % d.KVH == 0, op, ": query heads H = ", H, " must be a multiple of the cache's kv heads KVH = ",
               d.KVH);
  cpu::check_shape(op, "out", out, q.shape());
  check_slots(op, slot, pos, N, d);
  cpu::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    attend_impl<T>(d, N, H, out.data<T>(), q.data<T>(), kcache.data<T>(), vcache.data<T>(), slot.data<int32_t>(),
                   pos.data<int32_t>());
  });
}

}  // namespace temper
