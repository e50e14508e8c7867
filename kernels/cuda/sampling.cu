// CUDA backend: sample_tokens for logits [B, V].
//
// The contract (kernels.h) orders a row's tokens by descending z = logits / T,
// ties by ascending id. Top-k keeps a prefix of that order, top-p a shorter
// prefix, and the inverse-CDF draw picks one position in it. Every step is thus
// "find the first position of the order at which a running sum reaches c", with
// the sum counting tokens (top-k) or softmax mass exp(z - max) (top-p, draw).
// No sort is needed: a radix select over the 32-bit order-preserving key of z
// finds that position in four passes over the row (8 bits a pass: histograms of
// count and mass per digit, restricted to the digits chosen so far), then one
// pass in id order resolves the tokens whose z is exactly equal (ties).
// Each prefix is named by its last position (key, id), so "prefix of a prefix"
// is a comparison of positions, and the running sums at a position give the kept
// mass for the next step.
//
// Plain sampling (no top-k, no top-p: the RL rollout case; V < 2^18) takes a
// shorter road with integer sums only (deterministic): a histogram of token
// masses over 4096 bins of max - z (a smaller bin is earlier in the order; the
// bin width adapts to the row's spread), each mass in 28-bit fixed point
// relative to its bin's top (exact integer sums); an integer scan over the bins
// in a fixed point common to all finds the bin of the target u * sum; the bin's
// tokens (key, id, mass) are gathered into shared memory, sorted in the order
// (bitonic) and scanned. A bin of more than 1024 tokens is resolved by counting
// in id order when they share one z (bf16 ties), else by a second level of 4096
// sub-bins; what is still too large goes the radix way.
// Four launches, three passes over the logits, each spread so that every
// multiprocessor streams (16-byte loads, several in flight):
//   1. statistics: segments of a length fixed by V (so a row's partials, and
//      its logp, do not depend on the batch size), several blocks per row:
//      max, lowest argmax, sum of exp (exp2 on the special-function unit, the max
//      moving once per group of loaded vectors), least finite z, finiteness;
//      it also zeroes the histograms and resets the per-row results;
//   2. histogram: chunks of a row (the whole blocks per row that fill one wave),
//      shared-memory histograms added into a per-row global u64 histogram by
//      integer atomics (exact: the same sums in any order, no float atomics);
//      the row's last block to finish (an arrival counter) scans it for the
//      target's bin; a row of one chunk keeps its histogram in the block;
//   3a. gather: the same chunks; each block appends its chunk's tokens of the
//      target's bin to the row's list (order free);
//   3b. one block per row: the partials combined in segment order, the error
//      reports, greedy, the draw from the row's list (by ranks when short, else
//      sorted), the fallbacks over the whole row (or the radix search for
//      top-k / top-p).
// (These passes replaced earlier ones of the same results on 2026-12-04; the measured
// history is in validation/rollout/results_2026-12-04_h200_sampler.md. TEMPER_SAMPLER=radix
// takes the radix search for the plain draw too, for comparison; TEMPER_SAMPLER_PROFILE=1
// prints each call's pass times on stderr.)
// Temporaries live in the backend's persistent scratch (no per-call allocation).
// Arithmetic is f32 (exp relative to the row max); the CPU twin works in double,
// so a choice can differ only where two cumulative masses are within rounding of
// the threshold (near-ties). logp = z[token] - logsumexp(z) over the whole row;
// greedy (temperature <= 0) takes the argmax (lowest id on ties) with logp at
// temperature 1, as the CPU backend does. Rows containing NaN or +inf, rows of
// only -inf and u outside [0, 1) are reported after the launch (one sync).
#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kBuckets = 256;

// Monotone map float -> uint32: a < b (as floats) iff key(a) < key(b); -0 and +0
// share a key (they are equal z, ordered by id as the contract says).
__device__ __forceinline__ uint32_t order_key(float z) {
  const uint32_t b = __float_as_uint(z == 0.0f ? 0.0f : z);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// A position of the order and the running sums through it (inclusive).
struct Pos {
  uint32_t key;
  int32_t id;
  float mass;
  int32_t count;
};

// a at or before b in the order (descending key, ascending id).
__device__ __forceinline__ bool at_or_before(const Pos& a, const Pos& b) {
  return a.key > b.key || (a.key == b.key && a.id <= b.id);
}

struct Smem {
  float hmass[kWarps][kBuckets];  // per-warp histograms (fewer atomic collisions)
  int hcnt[kWarps][kBuckets];
  float scan_m[kWarps];
  int scan_c[kWarps];
  float red[32];
  uint32_t prefix;
  float above_m;
  int above_c;
  int tie_count;
  int found;
  int last_tie, last_weighted;
  Pos result, result_any;
};

template <typename T>
struct Row {
  const T* x;
  int64_t V;
  float inv_t;
  float mx;  // max z of the row
  __device__ __forceinline__ float z(int64_t j) const { return cuda::ld(x, j) * inv_t; }
  __device__ __forceinline__ float mass(float zj) const { return expf(zj - mx); }
};

// What a search looks for: the first position whose running count reaches cc
// (by_count), or whose running mass reaches cm (>= cm, or > cm when strict).
struct Goal {
  bool by_count;
  bool strict;
  int cc;
  float cm;
  __device__ __forceinline__ bool reached(float m, int c) const {
    return by_count ? c >= cc : strict ? m > cm : m >= cm;
  }
};

// Inclusive block-wide prefix sums (in thread order) of a float and an int;
// also returns the block totals. All threads must call it.
__device__ void block_scan(float& m, int& c, float& total_m, int& total_c, Smem& sm) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  for (int o = 1; o < 32; o <<= 1) {
    const float tm = __shfl_up_sync(0xffffffffu, m, o);
    const int tc = __shfl_up_sync(0xffffffffu, c, o);
    if (lane >= o) {
      m += tm;
      c += tc;
    }
  }
  if (lane == 31) {
    sm.scan_m[w] = m;
    sm.scan_c[w] = c;
  }
  __syncthreads();
  float off_m = 0.0f, tot_m = 0.0f;
  int off_c = 0, tot_c = 0;
  for (int i = 0; i < kWarps; ++i) {
    if (i < w) {
      off_m += sm.scan_m[i];
      off_c += sm.scan_c[i];
    }
    tot_m += sm.scan_m[i];
    tot_c += sm.scan_c[i];
  }
  m += off_m;
  c += off_c;
  total_m = tot_m;
  total_c = tot_c;
  __syncthreads();  // scan_m/scan_c may be rewritten by the next call
}

// The first position of the row's order at which the goal is reached. Should
// rounding keep the goal from being reached, the last position with positive
// weight among the candidates is returned instead (the CPU twin's fallback).
template <typename T>
__device__ Pos find_position(const Row<T>& r, const Goal& g, Smem& sm) {
  const int tid = threadIdx.x, w = tid >> 5;
  if (tid == 0) {
    sm.prefix = 0;
    sm.above_m = 0.0f;
    sm.above_c = 0;
  }
  __syncthreads();
  for (int pass = 0; pass < 4; ++pass) {
    const int shift = 24 - 8 * pass;
    for (int i = tid; i < kWarps * kBuckets; i += blockDim.x) {
      (&sm.hmass[0][0])[i] = 0.0f;
      (&sm.hcnt[0][0])[i] = 0;
    }
    const uint32_t prefix = sm.prefix;
    __syncthreads();
    for (int64_t j = tid; j < r.V; j += blockDim.x) {
      const float zj = r.z(j);
      const uint32_t key = order_key(zj);
      if (pass > 0 && (key >> (shift + 8)) != (prefix >> (shift + 8))) continue;
      const int d = int((key >> shift) & 0xffu);
      atomicAdd(&sm.hmass[w][d], r.mass(zj));
      atomicAdd(&sm.hcnt[w][d], 1);
    }
    __syncthreads();
    if (tid < kBuckets) {
      float m = 0.0f;
      int c = 0;
      for (int i = 0; i < kWarps; ++i) {
        m += sm.hmass[i][tid];
        c += sm.hcnt[i][tid];
      }
      sm.hmass[0][tid] = m;
      sm.hcnt[0][tid] = c;
    }
    __syncthreads();
    if (tid == 0) {  // walk the digits from the top; 256 steps
      float above_m = sm.above_m;
      int above_c = sm.above_c;
      int pick = -1, last = -1;
      float last_above_m = above_m;
      int last_above_c = above_c;
      for (int d = kBuckets - 1; d >= 0; --d) {
        const int c = sm.hcnt[0][d];
        if (c == 0) continue;
        const float m = sm.hmass[0][d];
        if (g.reached(above_m + m, above_c + c)) {
          pick = d;
          break;
        }
        if (g.by_count || m > 0.0f || last < 0) {
          last = d;
          last_above_m = above_m;
          last_above_c = above_c;
        }
        above_m += m;
        above_c += c;
      }
      if (pick < 0) {  // not reached (rounding): the last bucket with weight
        pick = last;
        above_m = last_above_m;
        above_c = last_above_c;
      }
      sm.prefix = prefix | (uint32_t(pick) << shift);
      sm.above_m = above_m;
      sm.above_c = above_c;
      sm.tie_count = sm.hcnt[0][pick];
    }
    __syncthreads();
  }
  const uint32_t K = sm.prefix;
  const float above_m = sm.above_m;
  const int above_c = sm.above_c;
  if (sm.tie_count == 1) {  // the common case: z is unique
    for (int64_t j = tid; j < r.V; j += blockDim.x) {
      const float zj = r.z(j);
      if (order_key(zj) == K) sm.result = Pos{K, int32_t(j), above_m + r.mass(zj), above_c + 1};
    }
    __syncthreads();
    return sm.result;
  }
  // Several tokens share z: walk them in id order, a block-wide chunk at a time.
  if (tid == 0) {
    sm.found = INT_MAX;
    sm.last_tie = -1;
    sm.last_weighted = -1;
  }
  __syncthreads();
  float run_m = above_m;
  int run_c = above_c;
  for (int64_t base = 0; base < r.V; base += blockDim.x) {
    const int64_t j = base + tid;
    bool is_tie = false;
    float m = 0.0f;
    if (j < r.V) {
      const float zj = r.z(j);
      if (order_key(zj) == K) {
        is_tie = true;
        m = r.mass(zj);
      }
    }
    const bool weighted = is_tie && (g.by_count || m > 0.0f);
    int c = is_tie ? 1 : 0;
    float tot_m;
    int tot_c;
    block_scan(m, c, tot_m, tot_c, sm);
    if (is_tie && g.reached(run_m + m, run_c + c)) atomicMin(&sm.found, int(j));
    if (is_tie) atomicMax(&sm.last_tie, int(j));
    if (weighted) atomicMax(&sm.last_weighted, int(j));
    __syncthreads();
    if (sm.found != INT_MAX) {
      if (j == sm.found) sm.result = Pos{K, int32_t(j), run_m + m, run_c + c};
      __syncthreads();
      return sm.result;
    }
    // Fallbacks, should the goal not be reached: the last tie with weight, else the last tie.
    if (j == sm.last_weighted) sm.result = Pos{K, int32_t(j), run_m + m, run_c + c};
    if (j == sm.last_tie) sm.result_any = Pos{K, int32_t(j), run_m + m, run_c + c};
    run_m += tot_m;
    run_c += tot_c;
    __syncthreads();
  }
  return sm.last_weighted >= 0 ? sm.result : sm.result_any;
}

// ---- streaming over a span of a row: 16-byte loads, several in flight -------
// f(j, x) for every j in [j0, j1) (x = logits[j] as float), each thread visiting
// its elements in increasing j: a scalar head up to the first 16-byte boundary,
// groups of U vectors loaded before any is used, a scalar tail.
__device__ __forceinline__ void load_vec(float* v, const float* p) {
  const float4 q = *reinterpret_cast<const float4*>(p);
  v[0] = q.x;
  v[1] = q.y;
  v[2] = q.z;
  v[3] = q.w;
}
__device__ __forceinline__ void load_vec(float* v, const __nv_bfloat16* p) { cuda::load8(v, p); }

template <int U, typename T, typename F>
__device__ __forceinline__ void for_span(const T* x, int64_t j0, int64_t j1, F&& f) {
  constexpr int W = 16 / int(sizeof(T));
  if (j0 >= j1) return;
  const int64_t nt = blockDim.x;
  const uintptr_t a = reinterpret_cast<uintptr_t>(x + j0);
  const int64_t h = min(j1 - j0, int64_t(((16u - (a & 15u)) & 15u) / sizeof(T)));
  if (threadIdx.x < h) f(j0 + threadIdx.x, cuda::ld(x, j0 + threadIdx.x));
  const int64_t v0 = j0 + h, nv = (j1 - v0) / W;
  int64_t i = threadIdx.x;
  for (; i + (U - 1) * nt < nv; i += U * nt) {
    float v[U][W];
#pragma unroll
    for (int k = 0; k < U; ++k) load_vec(v[k], x + v0 + (i + k * nt) * W);
#pragma unroll
    for (int k = 0; k < U; ++k)
#pragma unroll
      for (int e = 0; e < W; ++e) f(v0 + (i + k * nt) * W + e, v[k][e]);
  }
  for (; i < nv; i += nt) {
    float v[W];
    load_vec(v, x + v0 + i * W);
#pragma unroll
    for (int e = 0; e < W; ++e) f(v0 + i * W + e, v[e]);
  }
  const int64_t t0 = v0 + nv * W + threadIdx.x;
  if (t0 < j1) f(t0, cuda::ld(x, t0));
}

// ---- pass 1: per-segment statistics (several blocks per row) ----------------
// A row is cut into segments of a length fixed by V alone, so the row's
// statistics (and logp) do not depend on the batch size; the segments' partials
// are combined in segment order.
constexpr int kStatThreads = 256;
constexpr int64_t kSegLen = 16384;
constexpr int kMaxSegs = 1024;
constexpr int kHistBins = 4096;  // kBins below

struct Part {
  float m;    // max z of the segment (-inf: none finite)
  float s;    // sum of exp(z - m)
  float mn;   // least finite z (+inf: none)
  int arg;    // lowest id with z == m (INT_MAX: none)
  int bad;    // a NaN or +inf entry
  int pad;
};

// (RowDraw below: what the gather pass found for a row; initialised by pass 1.)
struct RowDrawInit {
  int bin;
  int count;
  uint32_t kmin, kmax, tie_f;
  int pad;
  unsigned long long tu;
};

struct RowStats {
  float M, S, zmin;
  int arg;
  bool bad;
};

__device__ __forceinline__ RowStats combine_parts(const Part* p, int nseg) {
  RowStats r{-INFINITY, 0.0f, INFINITY, INT_MAX, false};
  for (int i = 0; i < nseg; ++i) {
    r.M = fmaxf(r.M, p[i].m);
    r.zmin = fminf(r.zmin, p[i].mn);
    r.bad = r.bad || p[i].bad != 0;
  }
  for (int i = 0; i < nseg; ++i) {
    if (p[i].m == -INFINITY) continue;
    r.S = __fadd_rn(r.S, __fmul_rn(p[i].s, expf(__fsub_rn(p[i].m, r.M))));
    if (p[i].m == r.M && r.arg == INT_MAX) r.arg = p[i].arg;  // segments in id order: the first is the lowest
  }
  return r;
}

// 2^x by the special-function unit (relative error ~2^-22, subnormal results flushed).
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Running statistics of one thread over the logits x it visits in increasing id, in
// the logits' own units (z = x * inv_t is monotone in x, so max z = rn(max x * inv_t)
// and least finite z = rn(least finite x * inv_t) exactly): max xm, the lowest id
// reaching it, s = sum of exp((x - xm) * inv_t), the least finite x, a NaN / +inf seen.
// Values come in groups (the vectors loaded together): the max moves at most once a
// group, so the sum costs one subtract, one multiply, one exp2 and one add a value.
struct StatAcc {
  float c;  // inv_t * log2(e)
  float xm = -INFINITY, s = 0.0f, xn = INFINITY;
  int arg = INT_MAX;
  bool bad = false;
  template <int N, typename Id>
  __device__ __forceinline__ void add(const float* v, Id&& id) {
    float gm = -INFINITY;
#pragma unroll
    for (int e = 0; e < N; ++e) {
      gm = fmaxf(gm, v[e]);
      bad = bad || !(v[e] < INFINITY);
      xn = fminf(xn, v[e] == -INFINITY ? INFINITY : v[e]);
    }
    if (gm > xm) {
      s = xm == -INFINITY ? 0.0f : s * ex2((xm - gm) * c);
      xm = gm;
#pragma unroll
      for (int e = N - 1; e >= 0; --e)
        if (v[e] == gm) arg = int(id(e));  // the lowest id of the group's max
    }
    if (xm != -INFINITY) {
#pragma unroll
      for (int e = 0; e < N; ++e) s += ex2((v[e] - xm) * c);
    }
  }
};

// Pass 1: the statistics of one segment of a row (StatAcc) in rounds of kStatRound
// 16-byte loads a thread, all of a round in flight before any is used, every thread
// taking part in every round (loads past the segment read as -inf, which changes no
// statistic), so a segment takes few dependent round trips (2 for bf16). A row's
// partials are the same at any batch size.
constexpr int kStatRound = 4;
__device__ __forceinline__ float word_elem(const uint4& q, int e, const __nv_bfloat16*) {
  const uint32_t w = (&q.x)[e >> 1];
  return __uint_as_float((e & 1) ? (w & 0xffff0000u) : (w << 16));
}
__device__ __forceinline__ float word_elem(const uint4& q, int e, const float*) { return __uint_as_float((&q.x)[e]); }
template <typename T>
constexpr uint32_t kNegInfWord = sizeof(T) == 2 ? 0xff80ff80u : 0xff800000u;

template <typename T>
__global__ void __launch_bounds__(kStatThreads, 5) stats_kernel(const T* logits, int64_t V, float inv_t, int64_t seg_len,
                                                              int nseg, Part* parts, unsigned long long* ghist,
                                                              RowDrawInit* draws, int* bad) {
  constexpr int W = 16 / int(sizeof(T)), R = kStatRound;
  __shared__ float red[32];
  __shared__ int arg_min;
  const int64_t b = blockIdx.x;
  const int sgi = int(blockIdx.y);
  const T* x = logits + b * V;
  const int64_t j0 = sgi * seg_len, j1 = min(V, j0 + seg_len);
  if (ghist)
    for (int i = sgi * kStatThreads + int(threadIdx.x); i < kHistBins; i += nseg * kStatThreads)
      ghist[b * kHistBins + i] = 0ull;
  if (threadIdx.x == 0 && sgi == 0) {
    if (draws) draws[b] = RowDrawInit{-1, 0, 0xffffffffu, 0u, 0u, 0, 0ull};
    if (b == 0) bad[0] = bad[1] = INT_MAX;
  }
  StatAcc acc;
  acc.c = inv_t * 1.44269504088896341f;
  const int64_t nt = blockDim.x, tid = threadIdx.x;
  const uintptr_t a = reinterpret_cast<uintptr_t>(x + j0);
  const int64_t h = max(int64_t(0), min(j1 - j0, int64_t(((16u - (a & 15u)) & 15u) / sizeof(T))));
  if (tid < h) {
    const float v = cuda::ld(x, j0 + tid);
    acc.add<1>(&v, [&](int) { return j0 + tid; });
  }
  const int64_t v0 = j0 + h, nv = max(int64_t(0), (j1 - v0) / W);
  const uint4* xv = reinterpret_cast<const uint4*>(x + v0);
  for (int64_t i0 = 0; i0 < nv; i0 += R * nt) {  // block-uniform rounds
    uint4 q[R];
#pragma unroll
    for (int k = 0; k < R; ++k) {
      const int64_t i = i0 + tid + k * nt;
      q[k] = i < nv ? xv[i] : make_uint4(kNegInfWord<T>, kNegInfWord<T>, kNegInfWord<T>, kNegInfWord<T>);
    }
    float gm = -INFINITY;
#pragma unroll
    for (int k = 0; k < R; ++k)
#pragma unroll
      for (int e = 0; e < W; ++e) {
        const float v = word_elem(q[k], e, x);
        gm = fmaxf(gm, v);
        acc.bad = acc.bad || !(v < INFINITY);
        acc.xn = fminf(acc.xn, v == -INFINITY ? INFINITY : v);
      }
    if (gm > acc.xm) {
      acc.s = acc.xm == -INFINITY ? 0.0f : acc.s * ex2((acc.xm - gm) * acc.c);
      acc.xm = gm;
#pragma unroll
      for (int k = R - 1; k >= 0; --k)
#pragma unroll
        for (int e = W - 1; e >= 0; --e)
          if (word_elem(q[k], e, x) == gm) acc.arg = int(v0 + (i0 + tid + k * nt) * W + e);  // the lowest id
    }
    if (acc.xm != -INFINITY) {
#pragma unroll
      for (int k = 0; k < R; ++k)
#pragma unroll
        for (int e = 0; e < W; ++e) acc.s += ex2((word_elem(q[k], e, x) - acc.xm) * acc.c);
    }
  }
  const int64_t t0 = v0 + nv * W + tid;
  if (t0 < j1) {
    const float v = cuda::ld(x, t0);
    acc.add<1>(&v, [&](int) { return t0; });
  }
  const float XM = cuda::block_max(acc.xm, red);
  __syncthreads();
  const float S = cuda::block_sum(acc.xm == -INFINITY ? 0.0f : acc.s * ex2((acc.xm - XM) * acc.c), red);
  __syncthreads();
  const float XN = -cuda::block_max(-acc.xn, red);
  const bool any_bad = __syncthreads_or(acc.bad);
  if (threadIdx.x == 0) arg_min = INT_MAX;
  __syncthreads();
  if (acc.xm == XM && acc.arg != INT_MAX) atomicMin(&arg_min, acc.arg);
  __syncthreads();
  if (threadIdx.x == 0)
    parts[b * nseg + sgi] = Part{__fmul_rn(XM, inv_t), S, __fmul_rn(XN, inv_t), arg_min, any_bad ? 1 : 0, 0};
}

// ---- plain sampling: fixed-point mass histogram over bins of max - z --------
constexpr int kBins = kHistBins;
constexpr int kCap = 1024;  // tokens of one bin sorted in shared memory
constexpr int64_t kMaxPlainV = (int64_t(1) << 18) - 1;  // 14-bit parts of V masses fit a u32 sum
constexpr int kMaxChunks = 16;                          // blocks per row of the histogram pass
constexpr int64_t kMinChunk = 4096;

struct FastSmem {
  uint32_t hi[kBins], lo[kBins];  // per bin: sums of f >> 14 and f & 0x3fff
  unsigned long long skey[kCap];  // order key << 32 | ~id: descending = the contract's order
  uint32_t smass[kCap];
  unsigned long long wtot[kWarps];
  int chunk_cnt[kWarps];
  int count, bin, sub, result;
  uint32_t kmin, kmax, tie_f;
  unsigned long long tu;  // the target inside the chosen bin, in units of f
};

union SampleSmem {
  Smem radix;
  FastSmem fast;
};

// Bins follow the order: t = (max - z) * scale (scale adapts to the row's spread,
// at least 4095/32), bin = floor(t) (the last bin takes t >= 4095). Within bin b a
// token's mass exp(z - max) is top_b * rel with top_b = exp(-b / scale) and
// rel = exp(-(t - b) / scale) in (0.992, 1]: f = round(rel * 2^28), 28 bits, so a
// bin's sum is exact in two u32 histograms of 14-bit parts (u64 across blocks).
// All roundings are explicit, so every pass (and every kernel) computes the same
// t, bin and f.
struct Binning {
  float mx, scale, inv_scale, nl2;  // nl2 = -log2(e) / scale
  __device__ __forceinline__ static Binning of(float mx, float zmin) {
    Binning bn;
    bn.mx = mx;
    const float range = fminf(__fsub_rn(mx, zmin), 32.0f);
    bn.scale = range > 0.0f ? __fdiv_rn(float(kBins - 1), range) : 1.0f;
    bn.inv_scale = __fdiv_rn(1.0f, bn.scale);
    bn.nl2 = -__fmul_rn(bn.inv_scale, 1.44269504088896341f);
    return bn;
  }
  __device__ __forceinline__ float t_of(float zj) const { return __fmul_rn(__fsub_rn(mx, zj), scale); }
  __device__ __forceinline__ static int bin_of(float t) { return t < float(kBins - 1) ? int(t) : kBins - 1; }
  __device__ __forceinline__ uint32_t f_of(float t, int b) const {
    const float rel = ex2(__fmul_rn(__fsub_rn(t, float(b)), nl2));
    return __float2uint_rn(__fmul_rn(rel, 268435456.0f));
  }
  __device__ __forceinline__ static int sub_of(float t, int b) {
    return min(kBins - 1, int(__fmul_rn(__fsub_rn(t, float(b)), float(kBins))));
  }
};

template <typename T>
__device__ __forceinline__ float z_rn(const Row<T>& r, int64_t j) {
  return __fmul_rn(cuda::ld(r.x, j), r.inv_t);
}

// 16-byte loads in flight per thread in the sweeps of the histogram and gather passes
// (64 bytes for f32, 32 for bf16: registers for several blocks of 512 threads a
// multiprocessor).
template <typename T>
constexpr int kGatherUnroll = sizeof(T) == 2 ? 2 : 4;

// Exclusive block-wide prefix sum (thread order) of a u64, and the block total.
__device__ void block_scan_u64(unsigned long long v, unsigned long long& excl, unsigned long long& total,
                               unsigned long long* wtot) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  unsigned long long incl = v;
  for (int o = 1; o < 32; o <<= 1) {
    const unsigned long long t = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += t;
  }
  if (lane == 31) wtot[w] = incl;
  __syncthreads();
  unsigned long long off = 0, tot = 0;
  for (int i = 0; i < nw; ++i) {
    if (i < w) off += wtot[i];
    tot += wtot[i];
  }
  excl = off + incl - v;
  total = tot;
  __syncthreads();
}

// Level-1 histogram (inside the last pass, rare): f of bin b's tokens by
// sub-bin floor((t - b) * kBins).
template <typename T>
__device__ void histogram_sub(const Row<T>& r, const Binning& bn, int b, FastSmem& fs) {
  for (int i = threadIdx.x; i < kBins; i += blockDim.x) fs.hi[i] = fs.lo[i] = 0u;
  __syncthreads();
  for_span<kGatherUnroll<T>>(r.x, 0, r.V, [&](int64_t, float xv) {
    const float zj = __fmul_rn(xv, r.inv_t);
    if (zj == -INFINITY) return;
    const float t = bn.t_of(zj);
    if (Binning::bin_of(t) != b) return;
    const uint32_t f = bn.f_of(t, b);
    if (f == 0u) return;
    const int k = Binning::sub_of(t, b);
    atomicAdd(&fs.hi[k], f >> 14);
    atomicAdd(&fs.lo[k], f & 0x3fffu);
  });
  __syncthreads();
}

// Whether the token of value xv is in (bin b[, sub-bin sb]) with f > 0.
__device__ __forceinline__ bool member(float xv, float inv_t, const Binning& bn, int b, int sb, float& zj,
                                       uint32_t& f) {
  zj = __fmul_rn(xv, inv_t);
  if (zj == -INFINITY) return false;
  const float t = bn.t_of(zj);
  if (Binning::bin_of(t) != b) return false;
  if (sb >= 0 && Binning::sub_of(t, b) != sb) return false;
  f = bn.f_of(t, b);
  return f != 0u;
}

// Gathers the tokens of (bin b[, sub-bin sb]) with f > 0 among ids [j0, j1): count, the
// key range, and up to kCap (key, f) entries.
template <typename T, typename S>
__device__ void gather(const Row<T>& r, const Binning& bn, int b, int sb, int64_t j0, int64_t j1, S& fs) {
  if (threadIdx.x == 0) {
    fs.count = 0;
    fs.kmin = 0xffffffffu;
    fs.kmax = 0u;
  }
  __syncthreads();
  for_span<kGatherUnroll<T>>(r.x, j0, j1, [&](int64_t j, float xv) {
    float zj;
    uint32_t f;
    if (!member(xv, r.inv_t, bn, b, sb, zj, f)) return;
    const uint32_t key = order_key(zj);
    atomicMin(&fs.kmin, key);
    atomicMax(&fs.kmax, key);
    fs.tie_f = f;  // the same for every token of one z
    const int i = atomicAdd(&fs.count, 1);
    if (i < kCap) {
      fs.skey[i] = (static_cast<unsigned long long>(key) << 32) | (0xffffffffu - uint32_t(j));
      fs.smass[i] = f;
    }
  });
  __syncthreads();
}

// The first gathered token (in the order) whose running f sum exceeds tu; n <= kCap.
__device__ int pick_sorted(int n, unsigned long long tu, FastSmem& fs) {
  const int tid = threadIdx.x;
  int P = 1;
  while (P < n) P <<= 1;
  for (int i = n + tid; i < P; i += blockDim.x) {
    fs.skey[i] = 0ull;  // below every real key: sorts last
    fs.smass[i] = 0u;
  }
  if (tid == 0) fs.result = -1;
  __syncthreads();
  for (int k = 2; k <= P; k <<= 1)  // bitonic sort, descending
    for (int jj = k >> 1; jj > 0; jj >>= 1) {
      for (int i = tid; i < P; i += blockDim.x) {
        const int o = i ^ jj;
        if (o > i) {
          const unsigned long long a = fs.skey[i], b = fs.skey[o];
          if (((i & k) == 0) ? (a < b) : (a > b)) {
            fs.skey[i] = b;
            fs.skey[o] = a;
            const uint32_t t = fs.smass[i];
            fs.smass[i] = fs.smass[o];
            fs.smass[o] = t;
          }
        }
      }
      __syncthreads();
    }
  const int per = (P + int(blockDim.x) - 1) / int(blockDim.x);
  const int i0 = min(P, tid * per), i1 = min(P, i0 + per);
  unsigned long long s = 0;
  for (int i = i0; i < i1; ++i) s += fs.smass[i];
  unsigned long long c = 0, tot = 0;
  block_scan_u64(s, c, tot, fs.wtot);
  for (int i = i0; i < i1; ++i) {
    const unsigned long long h = fs.smass[i];
    if (h > 0 && c <= tu && c + h > tu) fs.result = int(0xffffffffu - uint32_t(fs.skey[i] & 0xffffffffull));
    c += h;
  }
  __syncthreads();
  const int res = fs.result;
  __syncthreads();
  return res;
}

// All members share one z (so one f): the token of id rank tu / f among them.
// The row in rounds of one 16-byte vector per thread (a scalar head and tail
// round around them), ids increasing with the thread within a round: a block
// scan of the members per thread finds the round and the thread holding the rank.
template <typename T>
__device__ int pick_tie(const Row<T>& r, const Binning& bn, int b, int sb, unsigned long long tu, FastSmem& fs) {
  constexpr int W = 16 / int(sizeof(T));
  const int64_t tid = threadIdx.x, nt = blockDim.x;
  const unsigned long long rank = tu / fs.tie_f;
  if (tid == 0) fs.result = -1;
  const uintptr_t a = reinterpret_cast<uintptr_t>(r.x);
  const int64_t h = min(r.V, int64_t(((16u - (a & 15u)) & 15u) / sizeof(T)));
  const int64_t nv = (r.V - h) / W, tail0 = h + nv * W, rounds = (nv + nt - 1) / nt;
  unsigned long long base = 0;
  for (int64_t q = -1; q <= rounds; ++q) {
    int64_t j0;
    int n;
    float v[W];
    if (q < 0 || q == rounds) {  // the head, the tail: one element a thread
      j0 = (q < 0 ? 0 : tail0) + tid;
      n = j0 < (q < 0 ? h : r.V) ? 1 : 0;
      v[0] = n ? cuda::ld(r.x, j0) : 0.0f;
    } else {
      const int64_t i = q * nt + tid;
      j0 = h + i * W;
      n = i < nv ? W : 0;
      if (n) load_vec(v, r.x + j0);
    }
    unsigned mask = 0u;
#pragma unroll
    for (int e = 0; e < W; ++e) {
      float zj;
      uint32_t f;
      if (e < n && member(v[e], r.inv_t, bn, b, sb, zj, f)) mask |= 1u << e;
    }
    const unsigned long long c = static_cast<unsigned long long>(__popc(mask));
    unsigned long long excl = 0, total = 0;
    block_scan_u64(c, excl, total, fs.wtot);
    if (c > 0 && base + excl <= rank && rank < base + excl + c) {
      unsigned long long k = rank - base - excl;
      for (int e = 0; e < W; ++e)
        if ((mask >> e) & 1u) {
          if (k == 0) {
            fs.result = int(j0 + e);
            break;
          }
          --k;
        }
    }
    base += total;
    if (base > rank) break;  // block-uniform
  }
  __syncthreads();
  const int res = fs.result;
  __syncthreads();
  return res;
}

// The draw when bin b (target tu inside it) keeps more than kCap tokens: counted in
// id order when they share one z (fs.tie_f their f), else by a second level of
// sub-bins floor((t - b) * kBins) over the whole row. The token id, or -1 where a
// sub-bin still keeps more than kCap tokens of several values (the caller then runs
// the radix search). Block-uniform.
template <typename T>
__device__ int draw_large_bin(const Row<T>& r, const Binning& bn, int b, unsigned long long tu, bool tie,
                              FastSmem& fs) {
  const int tid = threadIdx.x;
  if (tie) return pick_tie(r, bn, b, -1, tu, fs);
  constexpr int per = kBins / kThreads;
  unsigned long long wb[per];
  histogram_sub(r, bn, b, fs);
  unsigned long long sl = 0;
  for (int i = 0; i < per; ++i) {
    const int k = tid * per + i;
    wb[i] = (static_cast<unsigned long long>(fs.hi[k]) << 14) + fs.lo[k];
    sl += wb[i];
  }
  unsigned long long excl = 0, total = 0;
  if (tid == 0) fs.sub = -1;
  block_scan_u64(sl, excl, total, fs.wtot);
  for (int i = 0; i < per; ++i) {
    if (wb[i] > 0 && excl <= tu && excl + wb[i] > tu) {
      fs.sub = tid * per + i;
      fs.tu = tu - excl;
    }
    excl += wb[i];
  }
  __syncthreads();
  const int sb = fs.sub;
  tu = fs.tu;
  if (sb < 0) {
    __syncthreads();
    return -1;
  }
  gather(r, bn, b, sb, 0, r.V, fs);
  if (fs.count <= kCap) return pick_sorted(fs.count, tu, fs);
  if (fs.kmin == fs.kmax) return pick_tie(r, bn, b, sb, tu, fs);
  __syncthreads();
  return -1;
}

// Per row, what the gather pass found: the target's bin (-1: none) and the target
// inside it, the bin's token count and key range, the f of a tie; its first kCap
// tokens (order key << 32 | ~id, f) in gkey / gmass (in no particular order).
using RowDraw = RowDrawInit;

// ---- the histogram and gather passes: the same bins and f as Binning's bin_of / f_of
// and member (which the last pass's rare paths use), bit for bit, in fewer instructions
// a value (the passes are bound by instructions; a float <-> int conversion runs at a
// quarter of the rate of a multiply):
//  - the bin and its float by an add of 2^23 rounded down (2^23 + floor(t) exactly);
//  - f from the float's bits where rel * 2^28 lies in [2^27, 2^28] (an integer there:
//    every bin but the last, rel > 0.99), the conversion only elsewhere;
//  - a bin's members by two comparisons of t with the bin's bounds;
//  - the bin scan once a row, by the histogram pass: in the block itself when one block
//    takes the whole row (then no global histogram at all), else in the row's last
//    block to finish (an arrival counter); the gather blocks read its result;
//  - the draw from a short list (<= kSmallPick tokens) by ranks (each token's mass
//    before it in the order, summed over the list) instead of a bitonic sort.

// floor(min(t, kBins - 1)) and its float for t >= 0 (+inf included), no conversion.
__device__ __forceinline__ int bin_fast(float t, float& bf) {
  const float s = __fadd_rd(fminf(t, float(kBins - 1)), 8388608.0f);
  bf = __fsub_rn(s, 8388608.0f);
  return __float_as_int(s) - 0x4B000000;
}

// Binning::f_of(t, b) with bf = float(b): x = rel * 2^28 in [2^27, 2^28] is the integer
// (2^23 + mantissa) * 16; elsewhere (the last bin's far tokens, -inf) the conversion.
__device__ __forceinline__ uint32_t f_fast(const Binning& bn, float t, float bf) {
  const float x = __fmul_rn(ex2(__fmul_rn(__fsub_rn(t, bf), bn.nl2)), 268435456.0f);
  const uint32_t xb = __float_as_uint(x);
  return xb - 0x4D000000u <= 0x800000u ? (xb << 4) - 0xC8000000u : __float2uint_rn(x);
}

// The target's bin from a row's level-0 histogram read through hist_at(b) (shared or
// global memory): bin (-1: none) and tu, the target inside the bin in units of f (both
// shared). Level 0 in fixed point common to all bins: bin b weighs round(F_b * top_b * 2^8)
// units of 2^-36 (F_b < 2^46: below 2^54); an exact integer scan picks the bin.
// Block-uniform. The weights are computed twice (to find the total, then the bin) rather
// than held, to keep the registers of the histogram pass.
template <typename H>
__device__ __noinline__ void bin_scan_of(H&& hist_at, const Binning& bn, float ub, unsigned long long* wtot, int& bin,
                            unsigned long long& tu) {
  const int tid = threadIdx.x;
  constexpr int per = kBins / kThreads;
  auto weight = [&](int b) -> unsigned long long {
    const unsigned long long F = hist_at(b);
    return F == 0 ? 0ull
                  : static_cast<unsigned long long>(llrint(double(F) * exp(-double(b) / double(bn.scale)) * 256.0));
  };
  unsigned long long loc = 0;
  for (int i = 0; i < per; ++i) loc += weight(tid * per + i);
  unsigned long long excl = 0, total = 0;
  if (tid == 0) bin = -1;
  block_scan_u64(loc, excl, total, wtot);
  const unsigned long long target = static_cast<unsigned long long>(double(total) * double(ub));
  if (excl <= target && excl + loc > target) {  // this thread holds the target's bin
    for (int i = 0; i < per; ++i) {
      const int b = tid * per + i;
      const unsigned long long w = weight(b);
      if (w > 0 && excl <= target && excl + w > target) {
        const double unit = exp(-double(b) / double(bn.scale)) * 256.0;  // units per f
        bin = b;
        tu = min(hist_at(b) - 1, static_cast<unsigned long long>(double(target - excl) / unit));
      }
      excl += w;
    }
  }
  __syncthreads();
}

// Pass 2: the level-0 histogram of one chunk of a row, then the row's bin scan
// (draws[b].bin / .tu) by the block of a one-chunk row or by the row's last block.
template <typename T>
__global__ void __launch_bounds__(kThreads, 4) hist_kernel(const T* logits, int64_t V, float inv_t, const float* u,
                                                         const Part* parts, int nseg, int64_t chunk, int nchunks,
                                                         unsigned long long* ghist, RowDrawInit* draws) {
  __shared__ uint32_t hi[kBins], lo[kBins];
  __shared__ unsigned long long wtot[kWarps];
  __shared__ unsigned long long tu_s;
  __shared__ int bin_s, last_s;
  const int64_t b = blockIdx.x;
  const RowStats st = combine_parts(parts + b * nseg, nseg);
  const float ub = u[b];
  if (st.bad || st.M == -INFINITY || !(ub >= 0.0f && ub < 1.0f)) return;  // the last pass reports it
  const Binning bn = Binning::of(st.M, st.zmin);
  for (int i = threadIdx.x; i < kBins; i += blockDim.x) hi[i] = lo[i] = 0u;
  __syncthreads();
  const int64_t j0 = int64_t(blockIdx.y) * chunk, j1 = min(V, j0 + chunk);
  for_span<kGatherUnroll<T>>(logits + b * V, j0, j1, [&](int64_t, float xv) {
    const float t = bn.t_of(__fmul_rn(xv, inv_t));  // -inf: t = +inf, f = 0
    float bf;
    const int bj = bin_fast(t, bf);
    const uint32_t f = f_fast(bn, t, bf);
    if (f == 0u) return;
    atomicAdd(&hi[bj], f >> 14);
    atomicAdd(&lo[bj], f & 0x3fffu);
  });
  __syncthreads();
  if (nchunks == 1) {
    bin_scan_of([&](int i) { return (static_cast<unsigned long long>(hi[i]) << 14) + lo[i]; }, bn, ub, wtot, bin_s,
                tu_s);
  } else {
    unsigned long long* g = ghist + b * kBins;
    for (int i = threadIdx.x; i < kBins; i += blockDim.x) {
      const unsigned long long F = (static_cast<unsigned long long>(hi[i]) << 14) + lo[i];
      if (F != 0ull) atomicAdd(g + i, F);
    }
    __threadfence();  // this block's sums reach the row histogram before its arrival is counted
    __syncthreads();
    if (threadIdx.x == 0) last_s = atomicAdd(&draws[b].pad, 1) == nchunks - 1;
    __syncthreads();
    if (!last_s) return;
    __threadfence();
    bin_scan_of([&](int i) { return __ldcg(g + i); }, bn, ub, wtot, bin_s, tu_s);
  }
  if (threadIdx.x == 0) {
    draws[b].bin = bin_s;
    draws[b].tu = tu_s;
  }
}

struct GatherSmem {
  unsigned long long skey[kCap];
  uint32_t smass[kCap];
  int count;
  uint32_t kmin, kmax, tie_f;
};

// Pass 3a: the chunk's tokens of the row's target bin (draws[b].bin, from the histogram
// pass; -1: none) appended to the row's list (one global atomic a block reserves its
// places; the list's order does not matter: the draw sorts or ranks it).
template <typename T>
__global__ void __launch_bounds__(kThreads, 4) gather_kernel(const T* logits, int64_t V, float inv_t,
                                                           const Part* parts, int nseg, int64_t chunk,
                                                           RowDrawInit* draws, unsigned long long* gkey,
                                                           uint32_t* gmass) {
  __shared__ GatherSmem gs;
  __shared__ int base;
  const int64_t b = blockIdx.x;
  RowDrawInit& rd = draws[b];
  const int bin = rd.bin;
  if (bin < 0) return;
  const RowStats st = combine_parts(parts + b * nseg, nseg);
  const Binning bn = Binning::of(st.M, st.zmin);
  if (threadIdx.x == 0) {
    gs.count = 0;
    gs.kmin = 0xffffffffu;
    gs.kmax = 0u;
  }
  __syncthreads();
  // bin_of(t) == bin iff lo_t <= t < hi_t (-inf: t = +inf, never a member)
  const float lo_t = float(bin), hi_t = bin < kBins - 1 ? float(bin + 1) : INFINITY;
  const int64_t j0 = int64_t(blockIdx.y) * chunk, j1 = min(V, j0 + chunk);
  for_span<kGatherUnroll<T>>(logits + b * V, j0, j1, [&](int64_t j, float xv) {
    const float zj = __fmul_rn(xv, inv_t);
    const float t = bn.t_of(zj);
    if (!(t >= lo_t && t < hi_t)) return;
    const uint32_t f = bn.f_of(t, bin);
    if (f == 0u) return;
    const uint32_t key = order_key(zj);
    atomicMin(&gs.kmin, key);
    atomicMax(&gs.kmax, key);
    gs.tie_f = f;  // the same for every token of one z
    const int i = atomicAdd(&gs.count, 1);
    if (i < kCap) {
      gs.skey[i] = (static_cast<unsigned long long>(key) << 32) | (0xffffffffu - uint32_t(j));
      gs.smass[i] = f;
    }
  });
  __syncthreads();
  const int n = gs.count;
  if (threadIdx.x == 0) {
    base = n > 0 ? atomicAdd(&rd.count, n) : 0;
    if (n > 0) {
      atomicMin(&rd.kmin, gs.kmin);
      atomicMax(&rd.kmax, gs.kmax);
      rd.tie_f = gs.tie_f;  // the same in every block when all share one z (the only use)
    }
  }
  __syncthreads();
  const int m = min(n, kCap), at = base;
  for (int i = threadIdx.x; i < m && at + i < kCap; i += blockDim.x) {
    gkey[b * kCap + at + i] = gs.skey[i];
    gmass[b * kCap + at + i] = gs.smass[i];
  }
}

// The draw from a short list (n <= kSmallPick, unsorted, distinct keys): the token whose
// mass before it in the order (summed over the list) is <= tu < that + its f. The same
// token as pick_sorted.
constexpr int kSmallPick = 256;
__device__ int pick_small(int n, unsigned long long tu, FastSmem& fs) {
  if (threadIdx.x == 0) fs.result = -1;
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const unsigned long long ki = fs.skey[i];
    unsigned long long before = 0;
    for (int j = 0; j < n; ++j) before += fs.skey[j] > ki ? fs.smass[j] : 0u;
    const unsigned long long h = fs.smass[i];
    if (h > 0 && before <= tu && before + h > tu) fs.result = int(0xffffffffu - uint32_t(ki & 0xffffffffull));
  }
  __syncthreads();
  const int res = fs.result;
  __syncthreads();
  return res;
}

// Pass 3b, one block per row: the row's statistics from the segments' partials,
// the error reports, greedy, then the plain draw (from the gather pass's list) or
// the radix search (top-k / top-p, or a plain draw that gave up).
template <typename T>
__global__ void __launch_bounds__(kThreads, 2) sample_kernel(int32_t* tokens, float* logp, const T* logits, const float* u,
                                                          int64_t V, float inv_t, bool greedy, int top_k, float top_p,
                                                          const Part* parts, int nseg, const RowDraw* draws,
                                                          const unsigned long long* gkey, const uint32_t* gmass,
                                                          int* bad) {
  __shared__ SampleSmem shm;
  Smem& sm = shm.radix;
  const int64_t b = blockIdx.x;
  Row<T> r{logits + b * V, V, inv_t, -INFINITY};
  const RowStats st = combine_parts(parts + b * nseg, nseg);
  if (st.bad || st.M == -INFINITY) {
    if (threadIdx.x == 0) {
      atomicMin(&bad[0], int(b));
      tokens[b] = 0;
      logp[b] = __int_as_float(0x7fc00000);
    }
    return;
  }
  const float lse = st.M + logf(st.S);
  if (greedy) {
    if (threadIdx.x == 0) {
      tokens[b] = st.arg;
      logp[b] = r.z(st.arg) - lse;
    }
    return;
  }
  const float ub = u[b];
  if (!(ub >= 0.0f && ub < 1.0f)) {
    if (threadIdx.x == 0) {
      atomicMin(&bad[1], int(b));
      tokens[b] = 0;
      logp[b] = __int_as_float(0x7fc00000);
    }
    return;
  }
  r.mx = st.M;
  if (draws) {
    const RowDraw rd = draws[b];
    int t = -1;
    if (rd.bin >= 0) {
      FastSmem& fs = shm.fast;
      const Binning bn = Binning::of(st.M, st.zmin);
      if (rd.count <= kCap) {
        for (int i = threadIdx.x; i < rd.count; i += blockDim.x) {
          fs.skey[i] = gkey[b * kCap + i];
          fs.smass[i] = gmass[b * kCap + i];
        }
        __syncthreads();
        t = rd.count <= kSmallPick ? pick_small(rd.count, rd.tu, fs) : pick_sorted(rd.count, rd.tu, fs);
      } else {
        if (threadIdx.x == 0) fs.tie_f = rd.tie_f;
        __syncthreads();
        t = draw_large_bin(r, bn, rd.bin, rd.tu, rd.kmin == rd.kmax, fs);
      }
    }
    if (t >= 0) {
      if (threadIdx.x == 0) {
        tokens[b] = t;
        logp[b] = r.z(t) - lse;
      }
      return;
    }
  }

  Pos lim{0u, int32_t(V - 1), st.S, int32_t(V)};  // the whole order
  if (top_k > 0 && top_k < V) lim = find_position(r, Goal{true, false, top_k, 0.0f}, sm);
  if (top_p < 1.0f) {
    const Pos p = find_position(r, Goal{false, false, 0, top_p * lim.mass}, sm);
    if (at_or_before(p, lim)) lim = p;
  }
  Pos d = find_position(r, Goal{false, true, 0, ub * lim.mass}, sm);
  if (!at_or_before(d, lim)) d = lim;
  if (threadIdx.x == 0) {
    tokens[b] = d.id;
    logp[b] = r.z(d.id) - lse;
  }
}

// The scratch of the plain draw's passes, carved from one persistent buffer.
struct PlainScratch {
  unsigned long long* hist;  // [B, kBins]
  RowDraw* draws;            // [B]
  unsigned long long* gkey;  // [B, kCap]
  uint32_t* gmass;           // [B, kCap]
  static int64_t bytes(int64_t B) {
    return B * (int64_t(kBins) * 8 + int64_t(sizeof(RowDraw)) + int64_t(kCap) * 12);
  }
  static PlainScratch at(void* p, int64_t B) {
    char* c = static_cast<char*>(p);
    PlainScratch s;
    s.hist = reinterpret_cast<unsigned long long*>(c);
    c += B * kBins * 8;
    s.gkey = reinterpret_cast<unsigned long long*>(c);
    c += B * kCap * 8;
    s.draws = reinterpret_cast<RowDraw*>(c);
    c += B * int64_t(sizeof(RowDraw));
    s.gmass = reinterpret_cast<uint32_t*>(c);
    return s;
  }
};

template <typename T>
void launch_sampling(cudaStream_t stream, int sm_count, int32_t* tokens, float* logp, const T* logits, const float* u,
                     int64_t B, int64_t V, float inv_t, bool greedy, int top_k, float top_p, bool plain, Part* parts,
                     int64_t seg_len, int nseg, const PlainScratch& ps, int* bad, cudaEvent_t* ev) {
  auto mark = [&](int i) {
    if (ev) TEMPER_CUDA_CHECK(cudaEventRecord(ev[i], stream));
  };
  mark(0);
  // Chunks of the histogram and gather passes, enough blocks to fill the device (4 a
  // multiprocessor), at most kMaxChunks a row: the whole blocks per row that fit one wave
  // (rounding up gave 1.45 waves at 256 rows on 132 multiprocessors).
  int64_t chunks = 1, chunk = V;
  if (plain) {
    const int64_t slots = int64_t(4) * sm_count;
    const int64_t want = std::max<int64_t>(1, slots / B);
    chunks = std::min<int64_t>({want, int64_t(kMaxChunks), std::max<int64_t>(1, V / kMinChunk)});
    chunk = ((V + chunks - 1) / chunks + 15) / 16 * 16;
    chunks = (V + chunk - 1) / chunk;
  }
  // (one chunk a row keeps the histogram in the block: no global histogram to zero)
  unsigned long long* ghist = plain && chunks > 1 ? ps.hist : nullptr;
  stats_kernel<<<dim3(unsigned(B), unsigned(nseg)), kStatThreads, 0, stream>>>(
      logits, V, inv_t, seg_len, nseg, parts, ghist, plain ? ps.draws : nullptr, bad);
  TEMPER_CUDA_CHECK_LAUNCH();
  mark(1);
  if (plain) {
    const dim3 grid{unsigned(B), unsigned(chunks), 1u};
    hist_kernel<<<grid, kThreads, 0, stream>>>(logits, V, inv_t, u, parts, nseg, chunk, int(chunks), ghist, ps.draws);
    TEMPER_CUDA_CHECK_LAUNCH();
    mark(2);
    gather_kernel<<<grid, kThreads, 0, stream>>>(logits, V, inv_t, parts, nseg, chunk, ps.draws, ps.gkey, ps.gmass);
    TEMPER_CUDA_CHECK_LAUNCH();
  } else {
    mark(2);
  }
  mark(3);
  sample_kernel<<<unsigned(B), kThreads, 0, stream>>>(tokens, logp, logits, u, V, inv_t, greedy, top_k, top_p, parts,
                                                      nseg, plain ? ps.draws : nullptr, ps.gkey, ps.gmass, bad);
  TEMPER_CUDA_CHECK_LAUNCH();
  mark(4);
}

}  // namespace

namespace {
template <typename T>
__global__ void mask_from_kernel(T* x, int64_t B, int64_t V, int64_t first, T value) {
  const int64_t W = V - first, n = B * W;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[(i / W) * V + first + i % W] = value;
}
}  // namespace

// logits[:, first:] = -inf in place (one launch, no host round trip: recordable in a graph).
void CudaKernels::mask_logits_from(Tensor& logits, int64_t first) {
  const char* op = "mask_logits_from";
  cuda::check_on_device(op, {{"logits", &logits}});
  TEMPER_CHECK(logits.ndim() == 2, op, ": 'logits' must be [B, V], got ", shape_str(logits.shape()));
  const int64_t B = logits.dim(0), V = logits.dim(1), from = std::max<int64_t>(first, 0);
  if (from >= V || B == 0) return;
  const int64_t n = B * (V - from);
  const unsigned blocks = unsigned(std::min<int64_t>((n + 255) / 256, 4096));
  if (logits.dtype() == DType::BF16)
    mask_from_kernel<<<blocks, 256, 0, stream_>>>(cuda::bf(logits), B, V, from, __float2bfloat16_rn(-INFINITY));
  else if (logits.dtype() == DType::F32)
    mask_from_kernel<<<blocks, 256, 0, stream_>>>(cuda::f32(logits), B, V, from, -INFINITY);
  else
    fail(op, ": 'logits' has dtype ", dtype_name(logits.dtype()), ", the cuda backend expects bf16 or f32");
  TEMPER_CUDA_CHECK_LAUNCH();
}

void CudaKernels::sample_tokens(Tensor& tokens, Tensor& logp, const Tensor& logits, const Tensor& u,
                                float temperature, int top_k, float top_p) {
  const char* op = "sample_tokens";
  cuda::check_on_device(op, {{"tokens", &tokens}, {"logp", &logp}, {"logits", &logits}, {"u", &u}});
  TEMPER_CHECK(logits.dtype() == DType::BF16 || logits.dtype() == DType::F32, op, ": 'logits' has dtype ",
               dtype_name(logits.dtype()), ", the cuda backend expects bf16 or f32");
  TEMPER_CHECK(logits.ndim() == 2 && logits.dim(1) > 0, op, ": 'logits' must be [B, V] with V > 0, got ",
               shape_str(logits.shape()));
  const int64_t B = logits.dim(0), V = logits.dim(1);
  TEMPER_CHECK(V < INT_MAX, op, ": vocabulary of ", V, " tokens is too large");
  TEMPER_CHECK(B < INT_MAX, op, ": ", B, " rows are too many for one launch");
  cuda::check_i32(op, "tokens", tokens, B);
  cuda::check_dtype(op, "logp", logp, DType::F32);
  cuda::check_shape(op, "logp", logp, {B});
  cuda::check_dtype(op, "u", u, DType::F32);
  cuda::check_shape(op, "u", u, {B});
  TEMPER_CHECK(!std::isnan(temperature) && !std::isnan(top_p), op, ": temperature and top_p must be numbers");
  if (B == 0) return;
  const bool greedy = temperature <= 0.0f;
  const float inv_t = greedy ? 1.0f : 1.0f / temperature;
  // No top-k and no top-p: the fixed-point bin search (TEMPER_SAMPLER=radix takes the radix search, for comparison).
  const char* env = std::getenv("TEMPER_SAMPLER");
  const bool plain = !greedy && (top_k <= 0 || int64_t(top_k) >= V) && top_p >= 1.0f && V <= kMaxPlainV &&
                     !(env && std::string(env) == "radix");
  // TEMPER_SAMPLER_PROFILE=1: each call prints its passes' times (events between the launches) on stderr.
  static const bool profile = std::getenv("TEMPER_SAMPLER_PROFILE") != nullptr;
  static cudaEvent_t ev[5];
  static bool ev_made = false;
  if (profile && !ev_made) {
    for (auto& e : ev) TEMPER_CUDA_CHECK(cudaEventCreate(&e));
    ev_made = true;
  }
  // Segments of the statistics pass: a length set by V alone (the same partials at any batch size).
  const int nseg = int(std::min<int64_t>((V + kSegLen - 1) / kSegLen, kMaxSegs));
  const int64_t seg_len = ((V + nseg - 1) / nseg + 15) / 16 * 16;
  // Persistent scratch (scratch_f32 numbers 13-15; attention_cached takes 0 and 1): the
  // error flags (set by pass 1), the partials, and the plain draw's per-row histograms,
  // gather results and lists.
  static_assert(sizeof(Part) % sizeof(float) == 0, "Part is a whole number of floats");
  Tensor bad = scratch_f32(13, 2);
  Tensor parts = scratch_f32(14, B * nseg * int64_t(sizeof(Part) / sizeof(float)));
  Tensor plain_buf = plain ? scratch_f32(15, PlainScratch::bytes(B) / int64_t(sizeof(float))) : Tensor();
  auto* pp = static_cast<Part*>(parts.raw());
  const PlainScratch ps = plain ? PlainScratch::at(plain_buf.raw(), B) : PlainScratch{};
  if (logits.dtype() == DType::BF16)
    launch_sampling(stream_, sm_count_, cuda::i32(tokens), cuda::f32(logp), cuda::bf(logits), cuda::f32(u), B, V, inv_t,
                    greedy, top_k, top_p, plain, pp, seg_len, nseg, ps, static_cast<int*>(bad.raw()), profile ? ev : nullptr);
  else
    launch_sampling(stream_, sm_count_, cuda::i32(tokens), cuda::f32(logp), cuda::f32(logits), cuda::f32(u), B, V,
                    inv_t, greedy, top_k, top_p, plain, pp, seg_len, nseg, ps, static_cast<int*>(bad.raw()), profile ? ev : nullptr);
  int host_bad[2] = {INT_MAX, INT_MAX};
  TEMPER_CUDA_CHECK(cudaMemcpyAsync(host_bad, bad.raw(), sizeof(host_bad), cudaMemcpyDeviceToHost, stream_));
  synchronize();
  if (profile) {
    float t[4];
    for (int i = 0; i < 4; ++i) TEMPER_CUDA_CHECK(cudaEventElapsedTime(&t[i], ev[i], ev[i + 1]));
    std::fprintf(stderr, "sample_tokens profile B=%lld %s plain=%d: stats %.4f hist %.4f gather %.4f draw %.4f ms\n",
                 static_cast<long long>(B), dtype_name(logits.dtype()), plain ? 1 : 0, t[0], t[1], t[2], t[3]);
  }
  TEMPER_CHECK(host_bad[0] >= B, op, ": logits row ", host_bad[0],
               " has a NaN or +inf entry, or every entry is -inf (the model's output diverged)");
  TEMPER_CHECK(host_bad[1] >= B, op, ": u[", host_bad[1], "] is outside [0, 1)");
}

}  // namespace temper
