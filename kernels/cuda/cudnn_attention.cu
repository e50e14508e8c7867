// Attention variant v3 through cuDNN's backend graph API (see cudnn_attention.h).
#include "kernels/cuda/cudnn_attention.h"

#ifndef TEMPER_HAVE_CUDNN
#define TEMPER_HAVE_CUDNN 0
#endif

#include <cstdio>

#include "kernels/cuda/cuda_kernels.h"

#if TEMPER_HAVE_CUDNN
#include <cudnn_graph.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>
#endif

namespace temper::cuda {
bool attention_cudnn_built() { return TEMPER_HAVE_CUDNN + 0 != 0; }
}  // namespace temper::cuda

namespace temper::cuda::cudnn_attn {

#if !TEMPER_HAVE_CUDNN

}  // namespace temper::cuda::cudnn_attn
namespace temper::cuda {
void set_cudnn_workspace_limit_mb(int64_t) {}
}  // namespace temper::cuda
namespace temper::cuda::cudnn_attn {

bool available() { return false; }
bool forward(CudaKernels&, Tensor&, Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
             const attn::Dims&, int) {
  return false;
}
bool backward(CudaKernels&, Tensor&, Tensor&, Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
              const Tensor&, const Tensor&, const Tensor&, const attn::Dims&, int) {
  return false;
}

#else

namespace {

// ---- errors --------------------------------------------------------------------

struct Refused {
  std::string what;
};

std::string last_error() {
  char buf[1024] = {0};
  cudnnGetLastErrorString(buf, sizeof buf);
  return buf;
}

void ok(cudnnStatus_t s, const char* what) {
  if (s != CUDNN_STATUS_SUCCESS)
    throw Refused{std::string(what) + ": " + cudnnGetErrorString(s) + " (" + last_error() + ")"};
}

// ---- descriptors ---------------------------------------------------------------

class Desc {
 public:
  explicit Desc(cudnnBackendDescriptorType_t type) { ok(cudnnBackendCreateDescriptor(type, &d_), "create descriptor"); }
  ~Desc() {
    if (d_ != nullptr) cudnnBackendDestroyDescriptor(d_);
  }
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;
  cudnnBackendDescriptor_t get() const { return d_; }

  template <typename T>
  Desc& set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count, const T* values) {
    ok(cudnnBackendSetAttribute(d_, name, type, count, values), "set attribute");
    return *this;
  }
  Desc& set_desc(cudnnBackendAttributeName_t name, cudnnBackendDescriptor_t v) {
    return set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &v);
  }
  void finalize(const char* what) { ok(cudnnBackendFinalize(d_), what); }

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};
using DescPtr = std::shared_ptr<Desc>;

using Dim4 = std::array<int64_t, 4>;

// Unique ids of the tensors the caller binds (virtual tensors count up from kVirtual).
enum Uid : int64_t {
  kQ = 1, kK, kV, kO, kStats, kDO, kDQ, kDK, kDV,
  kSeqQ, kSeqKV, kOffQ, kOffKV, kOffStats,
  kScale, kNegInf1, kNegInf2, kOne,
  kSoftmaxSum, kDQAccum,
  kVirtual = 1000
};

// True when the engine of an engine config says its results may vary from run to run.
bool nondeterministic_engine(cudnnBackendDescriptor_t cfg) {
  Desc engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
  cudnnBackendDescriptor_t e = engine.get();
  int64_t n = 0;
  ok(cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &e),
     "engine of a config");
  cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
  int64_t count = 0;
  ok(cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                              CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &count, notes),
     "numerical notes");
  for (int64_t i = 0; i < count; ++i)
    if (notes[i] == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC) return true;
  return false;
}

// Builds one operation graph: tensors and operations in creation order, kept
// alive until the execution plan is finalised (and with it).
class Graph {
 public:
  cudnnBackendDescriptor_t tensor(int64_t uid, cudnnDataType_t dt, Dim4 dim, Dim4 stride, bool is_virtual,
                                  cudnnBackendDescriptor_t ragged = nullptr, bool by_value = false) {
    auto t = std::make_shared<Desc>(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    const int64_t align = 16;
    t->set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt)
        .set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dim.data())
        .set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, stride.data())
        .set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid)
        .set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align)
        .set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual);
    if (by_value) t->set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value);
    if (ragged != nullptr) t->set_desc(CUDNN_ATTR_TENSOR_RAGGED_OFFSET_DESC, ragged);
    t->finalize("tensor descriptor");
    keep_.push_back(t);
    return t->get();
  }
  cudnnBackendDescriptor_t virt(cudnnDataType_t dt, Dim4 dim, Dim4 stride, cudnnBackendDescriptor_t ragged = nullptr) {
    return tensor(next_virtual_++, dt, dim, stride, true, ragged);
  }
  // A host scalar passed by value at execution (dims 1x1x1x1).
  cudnnBackendDescriptor_t scalar(int64_t uid, cudnnDataType_t dt) {
    return tensor(uid, dt, {1, 1, 1, 1}, {1, 1, 1, 1}, false, nullptr, true);
  }

  // y = mode(x[, b[, t]]) with math precision prec; axis for GEN_INDEX.
  void pointwise(cudnnPointwiseMode_t mode, cudnnDataType_t prec, cudnnBackendDescriptor_t x,
                 cudnnBackendDescriptor_t y, cudnnBackendDescriptor_t b = nullptr,
                 cudnnBackendDescriptor_t t = nullptr, int64_t axis = -1) {
    auto pw = std::make_shared<Desc>(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    pw->set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode)
        .set(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec);
    if (axis >= 0) pw->set(CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis);
    pw->finalize("pointwise descriptor");
    auto op = std::make_shared<Desc>(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    op->set_desc(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw->get())
        .set_desc(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x)
        .set_desc(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y);
    if (b != nullptr) op->set_desc(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, b);
    if (t != nullptr) op->set_desc(CUDNN_ATTR_OPERATION_POINTWISE_TDESC, t);
    const float one = 1.0f;
    op->set(CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1, CUDNN_TYPE_FLOAT, 1, &one)
        .set(CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2, CUDNN_TYPE_FLOAT, 1, &one);
    op->finalize("pointwise operation");
    add(pw, op);
  }

  void reduction(cudnnReduceTensorOp_t red, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
    auto rd = std::make_shared<Desc>(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    const cudnnDataType_t f = CUDNN_DATA_FLOAT;
    rd->set(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f)
        .set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &red);
    rd->finalize("reduction descriptor");
    auto op = std::make_shared<Desc>(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    op->set_desc(CUDNN_ATTR_OPERATION_REDUCTION_DESC, rd->get())
        .set_desc(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x)
        .set_desc(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y);
    op->finalize("reduction operation");
    add(rd, op);
  }

  // c = a @ b over the last two dims (batch dims broadcast: GQA); m/n/k overrides
  // are the per-document lengths.
  void matmul(cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t c,
              cudnnBackendDescriptor_t m_ov, cudnnBackendDescriptor_t n_ov, cudnnBackendDescriptor_t k_ov,
              std::optional<double> padding = std::nullopt) {
    auto mm = std::make_shared<Desc>(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    const cudnnDataType_t f = CUDNN_DATA_FLOAT;
    mm->set(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f);
    if (padding) mm->set(CUDNN_ATTR_MATMUL_PADDING_VALUE, CUDNN_TYPE_DOUBLE, 1, &*padding);
    mm->finalize("matmul descriptor");
    auto op = std::make_shared<Desc>(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    op->set_desc(CUDNN_ATTR_OPERATION_MATMUL_ADESC, a)
        .set_desc(CUDNN_ATTR_OPERATION_MATMUL_BDESC, b)
        .set_desc(CUDNN_ATTR_OPERATION_MATMUL_CDESC, c)
        .set_desc(CUDNN_ATTR_OPERATION_MATMUL_DESC, mm->get());
    if (m_ov != nullptr) op->set_desc(CUDNN_ATTR_OPERATION_MATMUL_GEMM_M_OVERRIDE_DESC, m_ov);
    if (n_ov != nullptr) op->set_desc(CUDNN_ATTR_OPERATION_MATMUL_GEMM_N_OVERRIDE_DESC, n_ov);
    if (k_ov != nullptr) op->set_desc(CUDNN_ATTR_OPERATION_MATMUL_GEMM_K_OVERRIDE_DESC, k_ov);
    op->finalize("matmul operation");
    add(mm, op);
  }

  void reshape(cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
    auto op = std::make_shared<Desc>(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
    op->set_desc(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x).set_desc(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y);
    op->finalize("reshape operation");
    add(nullptr, op);
  }

  // Operation graph -> heuristics (mode A, then fallback) -> the first engine
  // config whose execution plan finalises.
  // deterministic: configs whose engine carries CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC are skipped.
  DescPtr plan(cudnnHandle_t handle, int64_t& workspace, std::string& engine_note, bool deterministic = false) {
    auto og = std::make_shared<Desc>(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    og->set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle)
        .set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, int64_t(ops_.size()), ops_.data());
    og->finalize("operation graph");
    keep_.push_back(og);
    std::string errors;
    for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
      try {
        auto heur = std::make_shared<Desc>(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
        heur->set_desc(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, og->get())
            .set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
        heur->finalize("engine heuristics");
        int64_t count = 0;
        ok(cudnnBackendGetAttribute(heur->get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0,
                                    &count, nullptr),
           "heuristics result count");
        if (count <= 0) {
          errors += " heuristics mode " + std::to_string(int(mode)) + ": no engine;";
          continue;
        }
        std::vector<DescPtr> cfgs;
        std::vector<cudnnBackendDescriptor_t> raw;
        for (int64_t i = 0; i < count; ++i) {
          cfgs.push_back(std::make_shared<Desc>(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR));
          raw.push_back(cfgs.back()->get());
        }
        int64_t got = 0;
        ok(cudnnBackendGetAttribute(heur->get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count,
                                    &got, raw.data()),
           "heuristics results");
        for (int64_t i = 0; i < got; ++i) {
          if (deterministic && nondeterministic_engine(raw[size_t(i)])) {
            errors += " config " + std::to_string(i) + ": nondeterministic;";
            continue;
          }
          try {
            auto plan = std::make_shared<Desc>(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
            plan->set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle)
                .set_desc(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, raw[size_t(i)]);
            plan->finalize("execution plan");
            int64_t ws_count = 0;
            ok(cudnnBackendGetAttribute(plan->get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1,
                                        &ws_count, &workspace),
               "workspace size");
            keep_.push_back(heur);
            for (auto& c : cfgs) keep_.push_back(c);
            engine_note = "heuristics mode " + std::to_string(int(mode)) + " config " + std::to_string(i) + " of " +
                          std::to_string(got);
            return plan;
          } catch (const Refused& e) {
            errors += " config " + std::to_string(i) + ": " + e.what + ";";
          }
        }
      } catch (const Refused& e) {
        errors += " heuristics mode " + std::to_string(int(mode)) + ": " + e.what + ";";
      }
    }
    throw Refused{"no execution plan:" + errors};
  }

 private:
  void add(const DescPtr& aux, const DescPtr& op) {
    if (aux) keep_.push_back(aux);
    keep_.push_back(op);
    ops_.push_back(op->get());
  }
  std::vector<DescPtr> keep_;
  std::vector<cudnnBackendDescriptor_t> ops_;
  int64_t next_virtual_ = kVirtual;
};

// ---- the two graphs --------------------------------------------------------------

// ragged: packed documents (THD, padding mask); dense: one document of exactly
// S tokens (B = 1, no lengths, no offsets), the graph PyTorch builds too.
struct Key {
  bool backward, ragged;
  int64_t H, KVH, D, B, S;
  bool det = false;  // backward: dQ = dS K straight into dQ (no f32 atomic accumulator), deterministic engines only
  bool operator<(const Key& o) const {
    return std::tie(backward, ragged, H, KVH, D, B, S, det) <
           std::tie(o.backward, o.ragged, o.H, o.KVH, o.D, o.B, o.S, o.det);
  }
};

struct Plan {
  Key key;
  std::shared_ptr<Graph> graph;  // descriptors the plan refers to
  DescPtr plan;                  // null: cuDNN refused this shape
  int64_t workspace = 0;
  bool warned = false;           // workspace guard message printed
};

// Descriptors of the tensors both passes bind. Layout (B documents, padded length
// S, element strides of the packed [N, heads, D] tensors; the batch stride is
// nominal, the ragged offsets place each document):
//   Q, O, dO, dQ [B, H, S, D]      strides (S H D, D, H D, 1), offsets cu * H * D
//   K, V, dK, dV [B, KVH, S, D]    strides (S KVH D, D, KVH D, 1), offsets cu * KVH * D
//   K^T, V^T     [B, KVH, D, S]    the same memory, last two dims swapped
//   stats        [B, H, S, 1]      strides (S H, 1, H, 1), offsets cu * H
// A dense graph has no lengths and offsets (null descriptors).
struct Common {
  cudnnBackendDescriptor_t seq_q, seq_kv, off_q, off_kv, off_stats, scale, neg_inf1, neg_inf2;
  Dim4 qdim, qstride, kdim, kstride, ktdim, ktstride, sdim, sstride, score, score_stride, score_t_stride, row,
      row_stride;
};

Common common(Graph& g, const Key& k) {
  Common c{};
  const int64_t B = k.B, H = k.H, KVH = k.KVH, D = k.D, S = k.S;
  if (k.ragged) {
    c.seq_q = g.tensor(kSeqQ, CUDNN_DATA_INT32, {B, 1, 1, 1}, {1, 1, 1, 1}, false);
    c.seq_kv = g.tensor(kSeqKV, CUDNN_DATA_INT32, {B, 1, 1, 1}, {1, 1, 1, 1}, false);
    c.off_q = g.tensor(kOffQ, CUDNN_DATA_INT32, {B + 1, 1, 1, 1}, {1, 1, 1, 1}, false);
    c.off_kv = g.tensor(kOffKV, CUDNN_DATA_INT32, {B + 1, 1, 1, 1}, {1, 1, 1, 1}, false);
    c.off_stats = g.tensor(kOffStats, CUDNN_DATA_INT32, {B + 1, 1, 1, 1}, {1, 1, 1, 1}, false);
  }
  c.scale = g.scalar(kScale, CUDNN_DATA_FLOAT);
  if (k.ragged) c.neg_inf1 = g.scalar(kNegInf1, CUDNN_DATA_FLOAT);  // padding mask only
  c.neg_inf2 = g.scalar(kNegInf2, CUDNN_DATA_FLOAT);
  c.qdim = {B, H, S, D};
  c.qstride = {S * H * D, D, H * D, 1};
  c.kdim = {B, KVH, S, D};
  c.kstride = {S * KVH * D, D, KVH * D, 1};
  c.ktdim = {B, KVH, D, S};
  c.ktstride = {S * KVH * D, D, 1, KVH * D};
  c.sdim = {B, H, S, 1};
  c.sstride = {S * H, 1, H, 1};
  c.score = {B, H, S, S};
  c.score_stride = {H * S * S, S * S, S, 1};
  c.score_t_stride = {H * S * S, S * S, 1, S};
  c.row = {B, H, S, 1};
  c.row_stride = {H * S, S, 1, 1};
  return c;
}

// Masks of the attention scores x (f32 [B, H, S, S]): positions past a
// document's length (padding), then keys after the query (causal). Returns the
// masked scores. `between` (if any) runs between the two masks, as cuDNN's
// backward graph subtracts the stats there.
cudnnBackendDescriptor_t padding_mask(Graph& g, const Common& c, cudnnBackendDescriptor_t x) {
  const auto I = CUDNN_DATA_INT32, Bo = CUDNN_DATA_BOOLEAN, F = CUDNN_DATA_FLOAT;
  auto row = g.virt(I, c.score, c.score_stride), col = g.virt(I, c.score, c.score_stride);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, I, x, row, nullptr, nullptr, 2);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, I, x, col, nullptr, nullptr, 3);
  auto row_ok = g.virt(Bo, c.score, c.score_stride), col_ok = g.virt(Bo, c.score, c.score_stride);
  g.pointwise(CUDNN_POINTWISE_CMP_LT, Bo, row, row_ok, c.seq_q);
  g.pointwise(CUDNN_POINTWISE_CMP_LT, Bo, col, col_ok, c.seq_kv);
  auto both = g.virt(Bo, c.score, c.score_stride);
  g.pointwise(CUDNN_POINTWISE_LOGICAL_AND, Bo, row_ok, both, col_ok);
  auto y = g.virt(F, c.score, c.score_stride);
  g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, F, x, y, c.neg_inf1, both);
  return y;
}

cudnnBackendDescriptor_t causal_mask(Graph& g, const Common& c, cudnnBackendDescriptor_t x) {
  const auto I = CUDNN_DATA_INT32, Bo = CUDNN_DATA_BOOLEAN, F = CUDNN_DATA_FLOAT;
  auto row = g.virt(I, c.score, c.score_stride), col = g.virt(I, c.score, c.score_stride);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, F, x, row, nullptr, nullptr, 2);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, F, x, col, nullptr, nullptr, 3);
  auto keep = g.virt(Bo, c.score, c.score_stride);
  g.pointwise(CUDNN_POINTWISE_CMP_GE, Bo, row, keep, col);
  auto y = g.virt(F, c.score, c.score_stride);
  g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, F, x, y, c.neg_inf2, keep);
  return y;
}

void build_forward(Graph& g, const Key& k) {
  const auto F = CUDNN_DATA_FLOAT, BF = CUDNN_DATA_BFLOAT16;
  const Common c = common(g, k);
  auto q = g.tensor(kQ, BF, c.qdim, c.qstride, false, c.off_q);
  auto kt = g.tensor(kK, BF, c.ktdim, c.ktstride, false, c.off_kv);
  auto v = g.tensor(kV, BF, c.kdim, c.kstride, false, c.off_kv);
  auto o = g.tensor(kO, BF, c.qdim, c.qstride, false, c.off_q);
  auto stats = g.tensor(kStats, F, c.sdim, c.sstride, false, c.off_stats);

  auto s0 = g.virt(F, c.score, c.score_stride);
  g.matmul(q, kt, s0, c.seq_q, c.seq_kv, nullptr, k.ragged ? std::optional<double>(0.0) : std::nullopt);
  auto s1 = g.virt(F, c.score, c.score_stride);
  g.pointwise(CUDNN_POINTWISE_MUL, F, s0, s1, c.scale);
  auto s2 = k.ragged ? padding_mask(g, c, s1) : s1;
  auto s3 = causal_mask(g, c, s2);
  // softmax, with lse = max + log(sum exp(s - max)) written to stats
  auto mx = g.virt(F, c.row, c.row_stride);
  g.reduction(CUDNN_REDUCE_TENSOR_MAX, s3, mx);
  auto sub = g.virt(F, c.score, c.score_stride);
  g.pointwise(CUDNN_POINTWISE_SUB, F, s3, sub, mx);
  auto ex = g.virt(F, c.score, c.score_stride);
  g.pointwise(CUDNN_POINTWISE_EXP, F, sub, ex);
  auto sum = g.virt(F, c.row, c.row_stride);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, ex, sum);
  auto lg = g.virt(F, c.row, c.row_stride);
  g.pointwise(CUDNN_POINTWISE_LOG, F, sum, lg);
  g.pointwise(CUDNN_POINTWISE_ADD, F, mx, stats, lg);
  auto p = g.virt(BF, c.score, c.score_stride);
  g.pointwise(CUDNN_POINTWISE_DIV, F, ex, p, sum);
  g.matmul(p, v, o, c.seq_q, nullptr, c.seq_kv);
}

void build_backward(Graph& g, const Key& k) {
  const auto F = CUDNN_DATA_FLOAT, BF = CUDNN_DATA_BFLOAT16;
  const Common c = common(g, k);
  const int64_t B = k.B, H = k.H, D = k.D, S = k.S;
  auto q = g.tensor(kQ, BF, c.qdim, c.qstride, false, c.off_q);
  auto kt = g.tensor(kK, BF, c.ktdim, c.ktstride, false, c.off_kv);
  auto vt = g.tensor(kV, BF, c.ktdim, c.ktstride, false, c.off_kv);
  auto o = g.tensor(kO, BF, c.qdim, c.qstride, false, c.off_q);
  auto dout = g.tensor(kDO, BF, c.qdim, c.qstride, false, c.off_q);
  auto stats = g.tensor(kStats, F, c.sdim, c.sstride, false, c.off_stats);
  auto dq = g.tensor(kDQ, BF, c.qdim, c.qstride, false, c.off_q);
  auto dk = g.tensor(kDK, BF, c.kdim, c.kstride, false, c.off_kv);
  auto dv = g.tensor(kDV, BF, c.kdim, c.kstride, false, c.off_kv);
  auto one = g.scalar(kOne, F);

  // softmax_sum = rowsum(dO * O), ragged [N, H] f32 in the workspace
  auto dog = g.virt(F, c.qdim, {H * S * D, S * D, H * D, 1});
  g.pointwise(CUDNN_POINTWISE_MUL, F, dout, dog, o);
  auto rs = g.virt(F, c.row, c.row_stride);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, dog, rs);
  // (dense: [H, S] rows, as cuDNN's non-ragged graphs lay it out)
  auto softmax_sum = k.ragged ? g.tensor(kSoftmaxSum, F, c.sdim, c.sstride, false, c.off_stats)
                              : g.tensor(kSoftmaxSum, F, c.sdim, c.row_stride, false);
  g.pointwise(CUDNN_POINTWISE_MUL, F, rs, softmax_sum, one);

  // P = exp(scale Q K^T - lse), masked
  auto s0 = g.virt(F, c.score, c.score_stride);
  g.matmul(q, kt, s0, c.seq_q, c.seq_kv, nullptr);
  auto s1 = g.virt(F, c.score, c.score_stride);
  g.pointwise(CUDNN_POINTWISE_MUL, F, s0, s1, c.scale);
  auto s2 = k.ragged ? padding_mask(g, c, s1) : s1;
  auto s3 = g.virt(F, c.score, c.score_stride);
  g.pointwise(CUDNN_POINTWISE_SUB, F, s2, s3, stats);
  auto s4 = causal_mask(g, c, s3);
  auto p = g.virt(F, c.score, c.score_stride);
  g.pointwise(CUDNN_POINTWISE_EXP, F, s4, p);

  const bool gqa = k.H != k.KVH;
  const Dim4 full_stride = {H * S * D, S * D, D, 1};  // per-query-head dK / dV before the group sum
  // dV = P^T dO (summed over the query heads of a kv group)
  auto pt = g.virt(BF, c.score, c.score_t_stride);
  g.reshape(p, pt);
  if (gqa) {
    auto dv_full = g.virt(BF, c.qdim, full_stride);
    g.matmul(pt, dout, dv_full, c.seq_kv, nullptr, c.seq_q);
    g.reduction(CUDNN_REDUCE_TENSOR_ADD, dv_full, dv);
  } else {
    g.matmul(pt, dout, dv, c.seq_kv, nullptr, c.seq_q);
  }
  // dS = scale P (dO V^T - softmax_sum)
  auto dp = g.virt(F, c.score, c.score_stride);
  g.matmul(dout, vt, dp, c.seq_q, c.seq_kv, nullptr);
  auto d1 = g.virt(F, c.score, c.score_stride);
  g.pointwise(CUDNN_POINTWISE_SUB, F, dp, d1, softmax_sum);
  auto d2 = g.virt(F, c.score, c.score_stride);
  g.pointwise(CUDNN_POINTWISE_MUL, F, d1, d2, p);
  auto ds = g.virt(F, c.score, c.score_stride);
  g.pointwise(CUDNN_POINTWISE_MUL, F, d2, ds, c.scale);
  // dK = dS^T Q
  auto dst = g.virt(BF, c.score, c.score_t_stride);
  g.reshape(ds, dst);
  if (gqa) {
    auto dk_full = g.virt(BF, c.qdim, full_stride);
    g.matmul(dst, q, dk_full, c.seq_kv, nullptr, c.seq_q);
    g.reduction(CUDNN_REDUCE_TENSOR_ADD, dk_full, dk);
  } else {
    g.matmul(dst, q, dk, c.seq_kv, nullptr, c.seq_q);
  }
  auto kk = g.virt(BF, c.kdim, c.kstride, c.off_kv);
  g.reshape(kt, kk);
  if (k.det) {  // dQ = dS K written once (no accumulator tensor: cuDNN's deterministic variant)
    g.matmul(ds, kk, dq, c.seq_q, nullptr, c.seq_kv);
    (void)B;
    return;
  }
  // dQ = dS K through an f32 accumulator (ragged [N, H, D] in the workspace; added to with atomics)
  auto dq_acc = k.ragged ? g.tensor(kDQAccum, F, c.qdim, c.qstride, false, c.off_q)
                         : g.tensor(kDQAccum, F, c.qdim, full_stride, false);
  g.matmul(ds, kk, dq_acc, c.seq_q, nullptr, c.seq_kv);
  g.pointwise(CUDNN_POINTWISE_IDENTITY, F, dq_acc, dq);
  (void)B;
}

// ---- per-device state ------------------------------------------------------------

struct DeviceState {
  cudnnHandle_t handle = nullptr;
  bool broken = false;  // cudnnCreate failed
  std::map<Key, Plan> plans;
};

std::mutex g_mutex;
std::map<int, DeviceState> g_devices;

DeviceState& device_state() {  // g_mutex held
  int dev = 0;
  TEMPER_CUDA_CHECK(cudaGetDevice(&dev));
  DeviceState& st = g_devices[dev];
  if (st.handle == nullptr && !st.broken) {
    const cudnnStatus_t s = cudnnCreate(&st.handle);
    if (s != CUDNN_STATUS_SUCCESS) {
      st.broken = true;
      st.handle = nullptr;
      std::fprintf(stderr, "temper: cuDNN attention unavailable (cudnnCreate: %s); using the v2/v1 kernels\n",
                   cudnnGetErrorString(s));
    }
  }
  return st;
}

Plan& get_plan(DeviceState& st, const Key& key) {  // g_mutex held
  auto it = st.plans.find(key);
  if (it != st.plans.end()) return it->second;
  Plan p;
  p.key = key;
  p.graph = std::make_shared<Graph>();
  std::string note;
  try {
    if (key.backward)
      build_backward(*p.graph, key);
    else
      build_forward(*p.graph, key);
    p.plan = p.graph->plan(st.handle, p.workspace, note, key.det);
  } catch (const Refused& e) {
    p.plan = nullptr;
    std::fprintf(stderr,
                 "temper: cuDNN %s %s attention refused H=%lld KVH=%lld D=%lld batch=%lld seq=%lld (%s); using the "
                 "%s for it\n",
                 key.ragged ? "ragged" : "dense", key.backward ? "backward" : "forward", (long long)key.H, (long long)key.KVH, (long long)key.D,
                 (long long)key.B, (long long)key.S, e.what.c_str(),
                 key.ragged ? "v2/v1 kernels" : "ragged graph");
  }
  if (p.plan && std::getenv("TEMPER_CUDNN_VERBOSE") != nullptr)
    std::fprintf(stderr,
                 "temper: cuDNN %s %s attention H=%lld KVH=%lld D=%lld batch=%lld seq=%lld: %s, workspace %lld B\n",
                 key.ragged ? "ragged" : "dense", key.backward ? "backward" : "forward", (long long)key.H, (long long)key.KVH, (long long)key.D,
                 (long long)key.B, (long long)key.S, note.c_str(), (long long)p.workspace);
  return st.plans.emplace(key, std::move(p)).first->second;
}

int64_t pow2_at_least(int64_t x, int64_t lo) {
  int64_t p = lo;
  while (p < x) p *= 2;
  return p;
}

// The plan for this call: the ragged graph (cached per padded batch and
// length). A single document whose length is a multiple of 128 tries the dense
// graph first (cached per length; the layout PyTorch's SDPA uses: no padding
// mask, no offsets), falling back to the ragged graph where cuDNN refuses it.
// Measured on the H200 (2026-12-04): test_cuda_attention passes on it, forward
// 1.19x / 1.26x the ragged graph at 4K (D 128 / 64). TEMPER_CUDNN_DENSE=0 turns it off.
Plan* choose(DeviceState& st, bool backward, const attn::Dims& d, int max_seqlen, bool det = false) {
  static const bool dense_on = [] {
    const char* e = std::getenv("TEMPER_CUDNN_DENSE");
    return e == nullptr || std::string(e) != "0";
  }();
  if (dense_on && d.S == 1 && d.N % 128 == 0) {
    Plan& dense = get_plan(st, Key{backward, false, d.H, d.KVH, d.D, 1, d.N, det});
    if (dense.plan) return &dense;
  }
  Plan& p = get_plan(st, Key{backward, true, d.H, d.KVH, d.D, pow2_at_least(d.S, 1), pow2_at_least(max_seqlen, 64),
                             det});
  return p.plan ? &p : nullptr;
}

// Largest backward workspace v3 may take (bytes). With GQA, cuDNN's backward
// plan holds the per-query-head dK/dV in its workspace at the graph's padded
// shape, batch x length x H x D f32 (H200, 2026-12-04: 48 MiB at 4 x 2048 x 12
// x 128), so a packing of many documents with one long one pays for
// documents x longest; past this bound the call runs the v2 kernels instead.
// TEMPER_CUDNN_MAX_WORKSPACE_MB overrides the default 2048.
std::atomic<int64_t> g_workspace_override{-1};  // set_cudnn_workspace_limit_mb (-1: environment)

int64_t max_backward_workspace() {
  const int64_t o = g_workspace_override.load(std::memory_order_relaxed);
  if (o >= 0) return o << 20;
  static const int64_t bytes = [] {
    const char* e = std::getenv("TEMPER_CUDNN_MAX_WORKSPACE_MB");
    int64_t mb = 2048;
    if (e != nullptr && *e != '\0') {
      char* end = nullptr;
      const long long v = std::strtoll(e, &end, 10);
      TEMPER_CHECK(end != e && *end == '\0' && v >= 0, "environment variable TEMPER_CUDNN_MAX_WORKSPACE_MB='", e,
                   "' is not a non-negative number of MiB");
      mb = v;
    }
    return mb << 20;
  }();
  return bytes;
}

// A dense plan that cuDNN rejects at execution (nothing has run) is dropped
// for the process; the caller retries with the ragged graph.
void drop_dense(Plan& plan, const Refused& e) {
  std::fprintf(stderr, "temper: cuDNN dense %s attention H=%lld D=%lld seq=%lld failed to execute (%s); using the "
               "ragged graph for it\n", plan.key.backward ? "backward" : "forward", (long long)plan.key.H,
               (long long)plan.key.D, (long long)plan.key.S, e.what.c_str());
  plan.plan = nullptr;
}

// seq[b] = document lengths (0 past the last document), offsets[b+1] =
// document starts times the per-token element counts of Q/O, K/V and the stats.
__global__ void ragged_kernel(int32_t* seq, int32_t* off_q, int32_t* off_kv, int32_t* off_stats,
                              const int32_t* __restrict__ cu, int S, int B, int H, int KVH, int D) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i > B) return;
  const int c = cu[i < S ? i : S];
  off_q[i] = c * H * D;
  off_kv[i] = c * KVH * D;
  off_stats[i] = c * H;
  if (i < B) seq[i] = i < S ? cu[i + 1] - c : 0;
}

// The device-side shape arrays of one call (in one allocation, 16-byte aligned parts).
struct Ragged {
  std::shared_ptr<void> mem;
  int32_t *seq = nullptr, *off_q = nullptr, *off_kv = nullptr, *off_stats = nullptr;
};

Ragged ragged(CudaKernels& g, const Tensor& cu, const attn::Dims& d, int64_t B) {
  const int64_t part = (B + 1 + 3) / 4 * 4;  // ints, rounded to 16 bytes
  Ragged r;
  r.mem = g.allocator().allocate(size_t(4 * part) * sizeof(int32_t));
  int32_t* base = static_cast<int32_t*>(r.mem.get());
  r.seq = base, r.off_q = base + part, r.off_kv = base + 2 * part, r.off_stats = base + 3 * part;
  const int threads = 128, blocks = int((B + 1 + threads - 1) / threads);
  ragged_kernel<<<blocks, threads, 0, g.stream()>>>(r.seq, r.off_q, r.off_kv, r.off_stats, cuda::i32(cu), d.S,
                                                    int(B), d.H, d.KVH, d.D);
  TEMPER_CUDA_CHECK_LAUNCH();
  return r;
}

// Shape checks shared by both passes; false when cuDNN is not to be tried.
bool eligible(const attn::Dims& d, int max_seqlen, std::initializer_list<const Tensor*> ts) {
  if (d.D != 64 && d.D != 128) return false;
  if (d.N <= 0 || d.S <= 0 || max_seqlen <= 0) return false;
  if (int64_t(d.N) * d.H * d.D >= (int64_t(1) << 31)) return false;  // int32 ragged offsets
  return attn::aligned16(ts);
}

struct Binding {
  std::vector<int64_t> uids;
  std::vector<void*> ptrs;
  void add(int64_t uid, const void* p) {
    uids.push_back(uid);
    ptrs.push_back(const_cast<void*>(p));
  }
};

// Computes and binds the lengths and offsets of a ragged graph (B padded documents).
Ragged bind_ragged(CudaKernels& g, Binding& b, const Tensor& cu, const attn::Dims& d, int64_t B) {
  Ragged r = ragged(g, cu, d, B);
  b.add(kSeqQ, r.seq), b.add(kSeqKV, r.seq), b.add(kOffQ, r.off_q), b.add(kOffKV, r.off_kv),
      b.add(kOffStats, r.off_stats);
  return r;
}

void execute(CudaKernels& g, DeviceState& st, const Plan& plan, Binding& b, size_t extra_bytes,
             const std::vector<std::pair<int64_t, size_t>>& extras) {
  const size_t ws_plan = (size_t(plan.workspace) + 255) / 256 * 256;
  std::shared_ptr<void> ws;
  if (ws_plan + extra_bytes > 0) ws = g.allocator().allocate(ws_plan + extra_bytes);
  char* base = static_cast<char*>(ws.get());
  for (const auto& [uid, offset] : extras) b.add(uid, base + ws_plan + offset);
  Desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  void* wsp = base;
  pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, int64_t(b.uids.size()), b.uids.data())
      .set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, int64_t(b.ptrs.size()), b.ptrs.data())
      .set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &wsp);
  pack.finalize("variant pack");
  ok(cudnnSetStream(st.handle, g.stream()), "cudnnSetStream");
  ok(cudnnBackendExecute(st.handle, plan.plan->get(), pack.get()), "execute");
}

const float kNegInf = -std::numeric_limits<float>::infinity();
const float kOneValue = 1.0f;

}  // namespace

}  // namespace temper::cuda::cudnn_attn

namespace temper::cuda {
void set_cudnn_workspace_limit_mb(int64_t mb) { cudnn_attn::g_workspace_override.store(mb < 0 ? -1 : mb); }
}  // namespace temper::cuda

namespace temper::cuda::cudnn_attn {

bool available() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return device_state().handle != nullptr;
}

bool forward(CudaKernels& g, Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
             const Tensor& cu, const attn::Dims& d, int max_seqlen) {
  if (!eligible(d, max_seqlen, {&out, &lse, &q, &k, &v})) return false;
  std::lock_guard<std::mutex> lock(g_mutex);
  DeviceState& st = device_state();
  if (st.handle == nullptr) return false;
  const float scale = 1.0f / std::sqrt(float(d.D));
  for (;;) {
    Plan* plan = choose(st, false, d, max_seqlen);
    if (plan == nullptr) return false;
    Binding b;
    b.add(kQ, q.raw()), b.add(kK, k.raw()), b.add(kV, v.raw()), b.add(kO, out.raw()), b.add(kStats, lse.raw());
    b.add(kScale, &scale), b.add(kNegInf2, &kNegInf);
    Ragged r;
    if (plan->key.ragged) {
      r = bind_ragged(g, b, cu, d, plan->key.B);
      b.add(kNegInf1, &kNegInf);
    }
    try {
      execute(g, st, *plan, b, 0, {});
      return true;
    } catch (const Refused& e) {
      TEMPER_CHECK(!plan->key.ragged, "attention_forward (cuDNN): ", e.what);
      drop_dense(*plan, e);
    }
  }
}

bool backward(CudaKernels& g, Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& out,
              const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu,
              const attn::Dims& d, int max_seqlen) {
  if (!eligible(d, max_seqlen, {&dq, &dk, &dv, &dout, &out, &lse, &q, &k, &v})) return false;
  std::lock_guard<std::mutex> lock(g_mutex);
  DeviceState& st = device_state();
  if (st.handle == nullptr) return false;
  const float scale = 1.0f / std::sqrt(float(d.D));
  // f32 workspace tensors of the graph: softmax_sum [N, H] and the dQ accumulator [N, H, D]
  const size_t sum_bytes = (size_t(d.N) * d.H * sizeof(float) + 255) / 256 * 256;
  const size_t acc_bytes = size_t(d.N) * d.H * d.D * sizeof(float);
  for (;;) {
    Plan* plan = choose(st, true, d, max_seqlen, g.deterministic());
    if (plan == nullptr) return false;
    // cuDNN's deterministic engines keep dQ partials per key tile: their workspace
    // grows with length^2 (H200, 1.5B heads: 6.1 GiB at 16K, 24 GiB at 32K). Past
    // the guard, the nondeterministic plan (dQ through an f32 accumulator with
    // atomics, workspace linear in the length) keeps long contexts at cuDNN's speed
    // instead of the scalar kernels (20x slower); said once per shape.
    if (plan->key.det && plan->workspace > max_backward_workspace()) {
      Plan* fast = choose(st, true, d, max_seqlen, false);
      if (fast != nullptr && fast->workspace <= max_backward_workspace()) {
        if (!plan->warned)
          std::fprintf(stderr,
                       "temper: cuDNN's deterministic backward attention H=%lld KVH=%lld D=%lld batch=%lld seq=%lld "
                       "needs %lld MiB of workspace (> TEMPER_CUDNN_MAX_WORKSPACE_MB=%lld); running its "
                       "nondeterministic plan (dQ by f32 atomics: not bitwise reproducible) for it\n",
                       (long long)plan->key.H, (long long)plan->key.KVH, (long long)plan->key.D,
                       (long long)plan->key.B, (long long)plan->key.S, (long long)(plan->workspace >> 20),
                       (long long)(max_backward_workspace() >> 20));
        plan->warned = true;
        plan = fast;
      }
    }
    if (plan->workspace > max_backward_workspace()) {  // memory guard: the v2 kernels need none
      if (!plan->warned)
        std::fprintf(stderr,
                     "temper: cuDNN backward attention H=%lld KVH=%lld D=%lld batch=%lld seq=%lld needs %lld MiB of "
                     "workspace (> TEMPER_CUDNN_MAX_WORKSPACE_MB=%lld); using the v2 kernels for it\n",
                     (long long)plan->key.H, (long long)plan->key.KVH, (long long)plan->key.D,
                     (long long)plan->key.B, (long long)plan->key.S, (long long)(plan->workspace >> 20),
                     (long long)(max_backward_workspace() >> 20));
      plan->warned = true;
      return false;
    }
    Binding b;
    b.add(kQ, q.raw()), b.add(kK, k.raw()), b.add(kV, v.raw()), b.add(kO, out.raw()), b.add(kStats, lse.raw());
    b.add(kDO, dout.raw()), b.add(kDQ, dq.raw()), b.add(kDK, dk.raw()), b.add(kDV, dv.raw());
    b.add(kScale, &scale), b.add(kNegInf2, &kNegInf), b.add(kOne, &kOneValue);
    Ragged r;
    if (plan->key.ragged) {
      r = bind_ragged(g, b, cu, d, plan->key.B);
      b.add(kNegInf1, &kNegInf);
    }
    try {
      if (plan->key.det)
        execute(g, st, *plan, b, sum_bytes, {{kSoftmaxSum, 0}});
      else
        execute(g, st, *plan, b, sum_bytes + acc_bytes, {{kSoftmaxSum, 0}, {kDQAccum, sum_bytes}});
      return true;
    } catch (const Refused& e) {
      TEMPER_CHECK(!plan->key.ragged, "attention_backward (cuDNN): ", e.what);
      drop_dense(*plan, e);
    }
  }
}

#endif  // TEMPER_HAVE_CUDNN

}  // namespace temper::cuda::cudnn_attn
