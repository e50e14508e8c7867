// Kokkos backend: the generation KV cache and attention against it (the
// semantics of kernels/cpu/kv_cache.cpp). Caches are [S, T, KVH, D]; for new
// token n, slot[n] names its sequence and pos[n] its position there.
//   kv_cache_write:   kcache[slot[n], pos[n]] = k[n],  vcache[slot[n], pos[n]] = v[n]
//   attention_cached: query head h (kv head g = h / (H / KVH)) of token n attends to
//     positions [0, pos[n]] of its slot: out = softmax(q . k_j / sqrt(D)) v.
// One team per (token, head), online softmax with the accumulator in team scratch,
// as attention_forward; scores and sums in double.
#include <cmath>

#include "kernels/kokkos/kokkos_common.h"

namespace temper {

namespace {

using Scratch = Kokkos::View<double*, kk::Exec::scratch_memory_space, kk::Unmanaged>;

struct CacheDims {
  int64_t S, T, KVH, D;
};

CacheDims cache_dims(const char* op, const Tensor& kcache, const Tensor& vcache) {
  TEMPER_CHECK(kcache.ndim() == 4, op, ": 'kcache' must be [S, T, KVH, D], got ", shape_str(kcache.shape()));
  check_shape(op, "vcache", vcache, kcache.shape());
  CacheDims d{kcache.dim(0), kcache.dim(1), kcache.dim(2), kcache.dim(3)};
  TEMPER_CHECK(d.KVH > 0 && d.D > 0, op, ": 'kcache' ", shape_str(kcache.shape()),
               " needs positive kv heads and head dimension");
  return d;
}

void check_slots(const char* op, const Tensor& slot, const Tensor& pos, int64_t N, const CacheDims& d) {
  kk::check_i32(op, "slot", slot, N);
  kk::check_i32(op, "pos", pos, N);
  kk::check_index_range(op, "slot", slot, 0, d.S);
  kk::check_index_range(op, "pos (raise the engine's max_len if it is too large)", pos, 0, d.T);
}

}  // namespace

void KokkosBackend::kv_cache_write(Tensor& kcache, Tensor& vcache, const Tensor& k, const Tensor& v,
                                   const Tensor& slot, const Tensor& pos) {
  const char* op = "kv_cache_write";
  kk::check(op, DType::F32, {{"kcache", &kcache}, {"vcache", &vcache}, {"k", &k}, {"v", &v}});
  const CacheDims d = cache_dims(op, kcache, vcache);
  TEMPER_CHECK(k.ndim() == 3 && k.dim(1) == d.KVH && k.dim(2) == d.D, op, ": 'k' has shape ",
               shape_str(k.shape()), ", expected [N, ", d.KVH, ", ", d.D, "] to match 'kcache' ",
               shape_str(kcache.shape()));
  check_shape(op, "v", v, k.shape());
  const int64_t N = k.dim(0), row = d.KVH * d.D, T = d.T;
  check_slots(op, slot, pos, N, d);
  auto kc = kk::view<float>(kcache);
  auto vc = kk::view<float>(vcache);
  auto kv = kk::cview<float>(k);
  auto vv = kk::cview<float>(v);
  auto sl = kk::cview<int32_t>(slot);
  auto ps = kk::cview<int32_t>(pos);
  Kokkos::parallel_for(
      "temper::kv_cache_write", kk::Range(0, N * row), KOKKOS_LAMBDA(const int64_t i) {
        const int64_t n = i / row, c = i % row;
        const int64_t at = (int64_t(sl(n)) * T + ps(n)) * row + c;
        kc(at) = kv(i);
        vc(at) = vv(i);
      });
}

void KokkosBackend::attention_cached(Tensor& out, const Tensor& q, const Tensor& kcache, const Tensor& vcache,
                                     const Tensor& slot, const Tensor& pos) {
  const char* op = "attention_cached";
  kk::check(op, DType::F32, {{"out", &out}, {"q", &q}, {"kcache", &kcache}, {"vcache", &vcache}});
  const CacheDims d = cache_dims(op, kcache, vcache);
  TEMPER_CHECK(q.ndim() == 3 && q.dim(2) == d.D, op, ": 'q' has shape ", shape_str(q.shape()),
               ", expected [N, H, ", d.D, "] to match 'kcache' ", shape_str(kcache.shape()));
  const int64_t N = q.dim(0), H = q.dim(1);
  TEMPER_CHECK(H % d.KVH == 0, op, ": query heads H = ", H, " must be a multiple of the cache's kv heads KVH = ",
               d.KVH);
  check_shape(op, "out", out, q.shape());
  check_slots(op, slot, pos, N, d);
  if (N == 0 || H == 0) return;
  const int64_t D = d.D, KVH = d.KVH, T = d.T, group = H / KVH;
  const double scale = 1.0 / std::sqrt(double(D));
  auto qv = kk::cview<float>(q);
  auto kc = kk::cview<float>(kcache);
  auto vc = kk::cview<float>(vcache);
  auto ov = kk::view<float>(out);
  auto sl = kk::cview<int32_t>(slot);
  auto ps = kk::cview<int32_t>(pos);
  const size_t shmem = Scratch::shmem_size(size_t(D));
  Kokkos::parallel_for(
      "temper::attention_cached", kk::Team(N * H, Kokkos::AUTO).set_scratch_size(0, Kokkos::PerTeam(shmem)),
      KOKKOS_LAMBDA(const kk::Member& m) {
        const int64_t t = m.league_rank(), n = t / H, h = t % H, g = h / group;
        const int64_t base = int64_t(sl(n)) * T * KVH * D + g * D;
        Scratch acc(m.team_scratch(0), size_t(D));
        Kokkos::parallel_for(Kokkos::TeamThreadRange(m, D), [&](const int64_t c) { acc(c) = 0.0; });
        double mx = -1e300, sum = 0.0;
        for (int64_t j = 0; j <= ps(n); ++j) {
          const int64_t kj = base + j * KVH * D;
          double s = 0.0;
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(m, D),
              [&](const int64_t c, double& a) { a += double(qv(t * D + c)) * double(kc(kj + c)); }, s);
          s *= scale;
          const double mnew = s > mx ? s : mx;
          const double corr = kk::math::exp(mx - mnew), e = kk::math::exp(s - mnew);
          sum = sum * corr + e;
          mx = mnew;
          Kokkos::parallel_for(Kokkos::TeamThreadRange(m, D),
                               [&](const int64_t c) { acc(c) = acc(c) * corr + e * double(vc(kj + c)); });
        }
        Kokkos::parallel_for(Kokkos::TeamThreadRange(m, D),
                             [&](const int64_t c) { ov(t * D + c) = static_cast<float>(acc(c) / sum); });
      });
}

}  // namespace temper
