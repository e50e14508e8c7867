// CUDA backend: small-batch weight GEMMs through cublasLt with split-K (see
// gemm_lt.h for the rule and why).
#include "kernels/cuda/gemm_lt.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <tuple>

#include "core/error.h"
#include "kernels/cuda/cuda_common.h"

namespace temper::cuda::gemm_lt {

namespace {

std::mutex g_mu;  // the handles, the rule and the plans; run()'s bias pointer

// rows x cols of the standard tile ids (cublasLtMatmulTile_t, 1..35); 0 when unknown
void tile_dims(uint32_t tile, int* r, int* c) {
  static const int dims[][2] = {{0, 0},     {8, 8},     {8, 16},   {16, 8},   {8, 32},    {16, 16},   {32, 8},
                                {8, 64},    {16, 32},   {32, 16},  {64, 8},   {32, 32},   {32, 64},   {64, 32},
                                {32, 128},  {64, 64},   {128, 32}, {64, 128}, {128, 64},  {64, 256},  {128, 128},
                                {256, 64},  {64, 512},  {128, 256}, {256, 128}, {512, 64}, {64, 96},  {96, 64},
                                {96, 128},  {128, 160}, {160, 128}, {192, 128}, {128, 192}, {128, 96}, {32, 256},
                                {256, 32}};
  if (tile < sizeof(dims) / sizeof(dims[0])) {
    *r = dims[tile][0];
    *c = dims[tile][1];
  } else {
    *r = *c = 0;
  }
}

template <typename T>
T config(const cublasLtMatmulAlgo_t& a, cublasLtMatmulAlgoConfigAttributes_t attr) {
  T v{};
  size_t written = 0;
  if (cublasLtMatmulAlgoConfigGetAttribute(&a, attr, &v, sizeof(v), &written) != CUBLAS_STATUS_SUCCESS) return T{};
  return v;
}

int64_t int_field(const std::string& spec, const std::string& key, const std::string& val) {
  try {
    size_t used = 0;
    const long long v = std::stoll(val, &used);
    if (used == val.size() && v >= 0) return v;
  } catch (const std::exception&) {
  }
  fail("TEMPER_GEMM_LT=\"", spec, "\": ", key, " needs a non-negative integer, got \"", val, "\"");
}

Rule& current_rule() {
  static Rule r = default_rule();
  return r;
}

using PlanKey = std::tuple<int, int, Problem>;
std::map<PlanKey, std::unique_ptr<Plan>>& plans() {
  static std::map<PlanKey, std::unique_ptr<Plan>> m;
  return m;
}

}  // namespace

bool Problem::operator<(const Problem& o) const {
  return std::tie(M, N, K, f32_out, bias, lda, ldb, ldd, align) <
         std::tie(o.M, o.N, o.K, o.f32_out, o.bias, o.lda, o.ldb, o.ldd, o.align);
}

std::string Rule::str() const {
  if (!on) return "off";
  std::ostringstream os;
  os << "rows=" << max_rows << ",ranks=" << ranks << ",kmin=" << kmin << ",k0=" << k0 << ",red=" << red
     << ",splits=" << max_split << ",plain=" << (plain ? 1 : 0) << ",bias=" << (bias ? 1 : 0);
  return os.str();
}

Rule parse_rule(const std::string& spec) {
  Rule r;
  if (spec == "off") {
    r.on = false;
    return r;
  }
  std::stringstream ss(spec);
  for (std::string item; std::getline(ss, item, ',');) {
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    TEMPER_CHECK(eq != std::string::npos, "TEMPER_GEMM_LT=\"", spec, "\": \"", item,
                 "\" is not key=value (keys rows, ranks, kmin, k0, splits; or the word off)");
    const std::string key = item.substr(0, eq), val = item.substr(eq + 1);
    const int64_t v = int_field(spec, key, val);
    if (key == "rows") r.max_rows = v;
    else if (key == "ranks") r.ranks = int(std::clamp<int64_t>(v, 1, 64));
    else if (key == "kmin") r.kmin = int(std::min<int64_t>(v, 1 << 20));
    else if (key == "k0") r.k0 = int(std::min<int64_t>(v, 1 << 20));
    else if (key == "red") r.red = int(std::min<int64_t>(v, 1 << 20));
    else if (key == "splits") r.max_split = int(std::clamp<int64_t>(v, 1, 64));
    else if (key == "plain") r.plain = v != 0;
    else if (key == "bias") r.bias = v != 0;
    else fail("TEMPER_GEMM_LT=\"", spec, "\": unknown key \"", key,
              "\" (rows, ranks, kmin, k0, red, splits, plain, bias)");
  }
  return r;
}

Rule default_rule() {
  const char* env = std::getenv("TEMPER_GEMM_LT");
  if (env && *env) return parse_rule(env);
  return Rule{};
}

void set_rule(const Rule& r) {
  std::lock_guard<std::mutex> lk(g_mu);
  current_rule() = r;
  plans().clear();
}

Descs::Descs(const Problem& pr) : p(pr) {
  // Row-major out[M, N] = A[M, K] B[N, K]^T is column-major D[N, M] = op(B') B'' with B' = B read
  // column-major (K x N, transposed) and B'' = A read column-major (K x M).
  TEMPER_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t t = CUBLAS_OP_T, n = CUBLAS_OP_N;
  TEMPER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof(t)));
  TEMPER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &n, sizeof(n)));
  if (p.bias) {
    TEMPER_CHECK(!p.f32_out, "gemm_lt: the bias epilogue is for bf16 outputs only");
    const cublasLtEpilogue_t e = CUBLASLT_EPILOGUE_BIAS;
    const int32_t bt = CUDA_R_16BF;
    TEMPER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof(e)));
    TEMPER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)));
  }
  TEMPER_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a, CUDA_R_16BF, uint64_t(p.K), uint64_t(p.N), p.ldb));
  TEMPER_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&b, CUDA_R_16BF, uint64_t(p.K), uint64_t(p.M), p.lda));
  TEMPER_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&d, p.f32_out ? CUDA_R_32F : CUDA_R_16BF, uint64_t(p.N), uint64_t(p.M), p.ldd));
}

Descs::~Descs() {
  if (d) (void)cublasLtMatrixLayoutDestroy(d);
  if (b) (void)cublasLtMatrixLayoutDestroy(b);
  if (a) (void)cublasLtMatrixLayoutDestroy(a);
  if (op) (void)cublasLtMatmulDescDestroy(op);
}

cublasLtHandle_t handle() {
  static std::mutex mu;
  static std::map<int, cublasLtHandle_t> handles;
  int dev = 0;
  TEMPER_CUDA_CHECK(cudaGetDevice(&dev));
  std::lock_guard<std::mutex> lk(mu);
  cublasLtHandle_t& h = handles[dev];
  if (!h) TEMPER_CUBLAS_CHECK(cublasLtCreate(&h));
  return h;
}

std::vector<Candidate> heuristic(const Descs& ds, int n, size_t max_workspace) {
  cublasLtMatmulPreference_t pref = nullptr;
  TEMPER_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = max_workspace;
  const uint32_t al = uint32_t(ds.p.align);
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                           sizeof(ws));
  for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatmulPreferenceSetAttribute(pref, attr, &al, sizeof(al));
  std::vector<cublasLtMatmulHeuristicResult_t> res(size_t(std::max(n, 1)));
  int got = 0;
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulAlgoGetHeuristic(handle(), ds.op, ds.a, ds.b, ds.d, ds.d, pref, int(res.size()), res.data(),
                                        &got);
  (void)cublasLtMatmulPreferenceDestroy(pref);
  std::vector<Candidate> out;
  if (st != CUBLAS_STATUS_SUCCESS) return out;  // no algorithm for this problem: the caller keeps cublasGemmEx
  for (int i = 0; i < got; ++i) {
    if (res[size_t(i)].state != CUBLAS_STATUS_SUCCESS) continue;
    Candidate c;
    c.algo = res[size_t(i)].algo;
    c.workspace = res[size_t(i)].workspaceSize;
    c.waves = res[size_t(i)].wavesCount;
    c.rank = i;
    c.split = std::max(1, config<int32_t>(c.algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM));
    out.push_back(c);
  }
  return out;
}

bool with_split(const Descs& ds, const Candidate& base, int split, Candidate* out, size_t max_workspace) {
  const int32_t s = std::max(split, 1);
  // Partial sums in f32 in the workspace, reduced in a separate step. With f32 outputs the
  // in-place scheme (parts added into the output in a fixed sequence) and f32 partials in the
  // output type are the same precision: tried when the first is refused.
  std::vector<uint32_t> schemes = {s > 1 ? uint32_t(CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE)
                                         : uint32_t(CUBLASLT_REDUCTION_SCHEME_NONE)};
  if (s > 1 && ds.p.f32_out)
    schemes.insert(schemes.end(), {uint32_t(CUBLASLT_REDUCTION_SCHEME_INPLACE),
                                   uint32_t(CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE)});
  for (uint32_t red : schemes) {
    Candidate c = base;
    if (cublasLtMatmulAlgoConfigSetAttribute(&c.algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &s, sizeof(s)) !=
            CUBLAS_STATUS_SUCCESS ||
        cublasLtMatmulAlgoConfigSetAttribute(&c.algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &red, sizeof(red)) !=
            CUBLAS_STATUS_SUCCESS)
      continue;
    cublasLtMatmulHeuristicResult_t r{};
    if (cublasLtMatmulAlgoCheck(handle(), ds.op, ds.a, ds.b, ds.d, ds.d, &c.algo, &r) != CUBLAS_STATUS_SUCCESS ||
        r.state != CUBLAS_STATUS_SUCCESS || r.workspaceSize > max_workspace)
      continue;
    c.workspace = r.workspaceSize;
    c.waves = r.wavesCount;
    c.split = s;
    *out = c;
    return true;
  }
  return false;
}

bool choose(const Descs& ds, int sms, const Rule& rule, Candidate* out) {
  const Problem& p = ds.p;
  if (!rule.on || p.M > rule.max_rows || p.M <= 0 || p.N <= 0 || p.K <= 0 || sms <= 0) return false;
  if (rule.max_split <= 1 && !(rule.plain && rule.ranks > 1) && !(p.bias && rule.bias)) return false;
  const std::vector<Candidate> list = heuristic(ds, rule.ranks);
  double best = 0;
  bool have = false;
  Candidate pick;
  auto consider = [&](const Candidate& c, double area) {
    const double waves = std::max(1.0, std::ceil(double(c.waves) - 1e-3));
    const int s = c.split;
    double cost = waves * area * (double((p.K + s - 1) / s) + rule.k0);
    if (s > 1) cost += double(rule.red) * s * double(p.M) * double(p.N);
    if (!have || cost < best * (1 - 1e-9)) {
      have = true;
      best = cost;
      pick = c;
    }
  };
  for (size_t r = 0; r < list.size() && int(r) < rule.ranks; ++r) {
    Candidate one;
    if (!with_split(ds, list[r], 1, &one)) continue;
    // CTA tile area: from the tile id, else from the heuristic's waves (CTAs / SMs)
    int tr = 0, tc = 0;
    tile_dims(config<uint32_t>(one.algo, CUBLASLT_ALGO_CONFIG_TILE_ID), &tr, &tc);
    double area = double(tr) * tc;
    if (area <= 0) area = double(p.M) * double(p.N) / std::max(1.0, double(one.waves) * sms);
    for (int s = 1; s <= rule.max_split; ++s) {
      if (s > 1 && p.K / s < rule.kmin) break;
      Candidate c;
      if (s == 1) c = one;
      else if (!with_split(ds, list[r], s, &c)) continue;
      consider(c, area);
    }
    // the heuristic's own split, when its partial sums are f32 (bf16 partials would round more often)
    const uint32_t red = config<uint32_t>(list[r].algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME);
    if (list[r].split > 1 && list[r].split <= rule.max_split &&
        (red == CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE || p.f32_out))
      consider(list[r], area);
  }
  if (have && (pick.split >= 2 || (rule.plain && pick.rank != 0))) {
    *out = pick;
    return true;
  }
  // The bias in cublasLt's epilogue instead of a broadcast pass and beta = 1: the heuristic's
  // first algorithm, unsplit unless its own split sums f32 partials within max_split.
  if (p.bias && rule.bias && !list.empty()) {
    const Candidate& first = list[0];
    const uint32_t red = config<uint32_t>(first.algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME);
    if (first.split <= 1 || (first.split <= rule.max_split && red == CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE)) {
      *out = first;
      return true;
    }
    return with_split(ds, first, 1, out);
  }
  return false;
}

std::string describe(const Candidate& c) {
  std::ostringstream os;
  int tr = 0, tc = 0;
  const uint32_t tile = config<uint32_t>(c.algo, CUBLASLT_ALGO_CONFIG_TILE_ID);
  tile_dims(tile, &tr, &tc);
  os << "algo " << config<int32_t>(c.algo, CUBLASLT_ALGO_CONFIG_ID) << " tile ";
  if (tr) os << tr << "x" << tc;
  else os << "#" << tile;
  os << " st " << config<uint32_t>(c.algo, CUBLASLT_ALGO_CONFIG_STAGES_ID) << " split " << c.split << " red "
     << config<uint32_t>(c.algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME) << " sw "
     << config<uint32_t>(c.algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING) << " cu "
     << config<uint32_t>(c.algo, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION) << " cl "
     << config<uint16_t>(c.algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID) << " waves " << c.waves;
  return os.str();
}

void run(const Descs& ds, const Candidate& c, const void* A, const void* B, void* D, const void* bias, float alpha,
         float beta, void* ws, cudaStream_t stream) {
  std::lock_guard<std::mutex> lk(g_mu);  // the bias pointer lives in the shared descriptor
  if (ds.p.bias) {
    TEMPER_CHECK(bias, "gemm_lt: the problem has a bias and none was given");
    TEMPER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  TEMPER_CUBLAS_CHECK(cublasLtMatmul(handle(), ds.op, &alpha, B, ds.a, A, ds.b, &beta, D, ds.d, D, ds.d, &c.algo, ws,
                                     c.workspace, stream));
}

const Plan* plan_for(const Problem& p, int device, int sms) {
  std::lock_guard<std::mutex> lk(g_mu);
  const Rule& rule = current_rule();
  if (!rule.on || p.M > rule.max_rows) return nullptr;
  auto& m = plans();
  const PlanKey key{device, sms, p};
  auto it = m.find(key);
  if (it == m.end()) {
    auto plan = std::make_unique<Plan>(p);
    Candidate c;
    if (choose(plan->descs, sms, rule, &c)) plan->cand = c;
    else plan.reset();
    it = m.emplace(key, std::move(plan)).first;
  }
  return it->second.get();
}

bool make_problem(int64_t M, int64_t N, int64_t K, bool f32_out, bool bias, const void* A, int64_t lda,
                  const void* B, int64_t ldb, const void* D, int64_t ldd, const void* bias_ptr, Problem* out) {
  if (M <= 0 || N <= 0 || K <= 0 || (bias && (f32_out || !bias_ptr))) return false;
  uint64_t al = 256;
  auto fold = [&](uint64_t v) {
    if (v) al = std::min<uint64_t>(al, v & (~v + 1));
  };
  fold(reinterpret_cast<uintptr_t>(A));
  fold(reinterpret_cast<uintptr_t>(B));
  fold(reinterpret_cast<uintptr_t>(D));
  if (bias) fold(reinterpret_cast<uintptr_t>(bias_ptr));
  fold(uint64_t(lda) * 2);
  fold(uint64_t(ldb) * 2);
  fold(uint64_t(ldd) * (f32_out ? 4 : 2));
  if (al < 16) return false;
  Problem p;
  p.M = M;
  p.N = N;
  p.K = K;
  p.f32_out = f32_out;
  p.bias = bias;
  p.lda = lda;
  p.ldb = ldb;
  p.ldd = ldd;
  p.align = int(al);
  *out = p;
  return true;
}

}  // namespace temper::cuda::gemm_lt
