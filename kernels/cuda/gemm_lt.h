// CUDA backend: the forward GEMMs of few rows (a decode step's weight GEMMs)
// through cublasLt, by a fixed rule.
//
// Covered: row-major out[M, N] = A[M, K] @ B[N, K]^T (matmul_forward, the LM
// head's logits) with M <= Rule::max_rows and 16-byte aligned operands;
// everything else (more rows: training and prefill; transposed operands: the
// backward GEMMs; odd strides) keeps cublasGemmEx.
//
// The rule is a fixed function of (M, N, K, output dtype, bias, alignment, the
// multiprocessor count) and of the cublasLt heuristic's ranked answer for them
// (a model, not a timing), so generation stays reproducible from the seed:
//   - over the heuristic's first `ranks` algorithms and each split of K into s
//     parts (s <= splits, K / s >= kmin; partial sums in f32 in a workspace,
//     reduced in a separate step in a fixed order: CUBLASLT_REDUCTION_SCHEME_
//     COMPUTE_TYPE, the output rounded once), the least estimated time
//       ceil(waves) * tile area * (ceil(K / s) + k0) + red * s * M * N;
//     taken when it splits K, or (plain) is not the heuristic's first algorithm;
//   - else, for a problem with a bias (the packed q|k|v projection), the
//     heuristic's first algorithm with the bias added in its epilogue (no
//     broadcast pass and no read of the output): out = bf16(acc + bias), the
//     same single rounding as the broadcast + beta = 1 path;
//   - else cublasGemmEx.
// The defaults (rows=1024, splits=1: no split-K; bias=1) were picked from
// validation/bench/bench_gemm_decode.cpp's table on an H200 (132 SMs, cuBLAS 13.0;
// validation/rollout/results_2026-12-04_h200_gemm_decode.md): there the
// heuristic already fills the SMs with small tiles and clusters, every split-K
// variant lost to its separate reduction pass, and the epilogue bias took the qkv
// GEMM from 8.7 to 5.6 us at 256 rows. TEMPER_GEMM_LT overrides the rule ("off",
// or "rows=R,ranks=N,kmin=K,k0=K0,red=F,splits=S,plain=0|1,bias=0|1").
#pragma once
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace temper::cuda::gemm_lt {

// row-major out[M, N] = A[M, K] @ B[N, K]^T, bf16 A and B, f32 compute
struct Problem {
  int64_t M = 0, N = 0, K = 0;
  bool f32_out = false;  // else bf16
  bool bias = false;     // bf16 bias[N] added by the epilogue (bf16 output only)
  int64_t lda = 0, ldb = 0, ldd = 0;  // row strides (elements)
  int align = 256;  // bytes: the smallest alignment of the pointers and row strides (16..256)
  bool operator<(const Problem& o) const;
};

// The rule's parameters.
struct Rule {
  bool on = true;
  int64_t max_rows = 1024;  // M above this: cublasGemmEx
  int ranks = 1;            // heuristic results considered as the base algorithm
  int kmin = 128;           // no split leaves a part fewer than kmin of K
  int k0 = 256;             // per-part overhead in the cost model, in units of K
  int red = 4;              // cost of a partial sum written and read back, in MACs of one CTA per element
  int max_split = 1;        // 1: no split-K
  bool plain = false;       // also take an unsplit algorithm other than the heuristic's first
  bool bias = true;         // the bias in the epilogue (heuristic's first algorithm) when nothing else is taken
  std::string str() const;
};
Rule parse_rule(const std::string& spec);  // "off" or "rows=..,ranks=..,...": throws on bad input
Rule default_rule();                       // the built-in defaults, or TEMPER_GEMM_LT when set (read once)
void set_rule(const Rule& r);              // for benchmarks and tests: replaces the rule and forgets the plans

// Descriptors of one problem: the matmul (with the bias epilogue when asked for)
// and the column-major layouts of the swapped product D[N, M] = B A^T.
class Descs {
 public:
  explicit Descs(const Problem& p);
  ~Descs();
  Descs(const Descs&) = delete;
  Descs& operator=(const Descs&) = delete;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  Problem p;
};

struct Candidate {
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
  float waves = 0;
  int rank = -1;  // in the heuristic's list
  int split = 1;
};

cublasLtHandle_t handle();  // one per device, created on first use (the current device)
constexpr size_t kMaxWorkspace = size_t(64) << 20;
// The heuristic's ranked list (at most n), its own split-K choices included.
std::vector<Candidate> heuristic(const Descs& ds, int n, size_t max_workspace = kMaxWorkspace);
// `base` with K split into `split` parts (1: no split), reduced in f32; false when cublasLt rejects it.
bool with_split(const Descs& ds, const Candidate& base, int split, Candidate* out,
                size_t max_workspace = kMaxWorkspace);
// The rule's choice for the problem (see the top of this file), or false: use
// cublasGemmEx. waves: CTAs over what the SMs hold at once (cublasLt's wavesCount).
bool choose(const Descs& ds, int sms, const Rule& rule, Candidate* out);
// algo id, tile, stages, split, reduction, swizzle, custom option, cluster
std::string describe(const Candidate& c);

// D = alpha * A B^T (+ bias) + beta * D, on `stream`; ws: at least c.workspace bytes.
void run(const Descs& ds, const Candidate& c, const void* A, const void* B, void* D, const void* bias, float alpha,
         float beta, void* ws, cudaStream_t stream);

// The cached plan of a problem under the current rule (null: not covered), planned
// on first use. Thread-safe; plans live until set_rule.
struct Plan {
  Descs descs;
  Candidate cand;
  explicit Plan(const Problem& p) : descs(p) {}
};
const Plan* plan_for(const Problem& p, int device, int sms);

// Problem for the given pointers and strides (alignment from the addresses);
// false when the shape cannot go through cublasLt (alignment under 16 bytes).
bool make_problem(int64_t M, int64_t N, int64_t K, bool f32_out, bool bias, const void* A, int64_t lda,
                  const void* B, int64_t ldb, const void* D, int64_t ldd, const void* bias_ptr, Problem* out);

}  // namespace temper::cuda::gemm_lt
