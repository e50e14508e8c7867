// Muon and Parallel Muon (see muon.h). Only Kernels calls (matmul_forward,
// matmul_backward's weight-gradient GEMM, axpby, copy) and Comm::all_to_all.
#include "train/muon.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "parallel/comm.h"

namespace temper {

void newton_schulz(Kernels& k, const Tensor& g, Tensor& out, int steps, DType compute, NewtonSchulzCoeffs co) {
  TEMPER_CHECK(g.ndim() == 2, "newton_schulz: the input must be a matrix, got shape ", shape_str(g.shape()));
  TEMPER_CHECK(out.shape() == g.shape(), "newton_schulz: 'out' has shape ", shape_str(out.shape()), ", expected ",
               shape_str(g.shape()));
  TEMPER_CHECK(steps >= 0, "newton_schulz: steps must be >= 0, got ", steps);
  const int64_t m = g.dim(0), n = g.dim(1);
  const double norm = std::sqrt(k.sum_squares(g));
  Tensor X = k.alloc({m, n}, compute);
  k.axpby(X, 0.0, g, 1.0 / (norm + 1e-7));
  if (m <= n) {  // left form: Gram matrix m x m
    Tensor A = k.alloc({m, m}, compute), B = k.alloc({m, m}, compute);
    for (int s = 0; s < steps; ++s) {
      k.matmul_forward(A, X, X, nullptr);  // A = X X^T
      k.matmul_forward(B, A, A, nullptr);  // A A^T = A^2 (A symmetric)
      k.axpby(B, co.c, A, co.b);           // B = b A + c A^2
      k.axpby(out, 0.0, X, co.a);          // out = a X
      k.matmul_backward(nullptr, false, out, nullptr, B, X, X);  // out += B^T X = B X
      if (s + 1 < steps) k.copy(X, out);
    }
    if (steps == 0) k.copy(out, X);
  } else {  // right form: Gram matrix n x n
    Tensor G = k.alloc({n, n}, out.dtype()), A = k.alloc({n, n}, compute), B = k.alloc({n, n}, compute);
    Tensor Z = k.alloc({m, n}, compute);
    for (int s = 0; s < steps; ++s) {
      k.zero(G);
      k.matmul_backward(nullptr, false, G, nullptr, X, X, A);  // G += X^T X (A only gives the shape)
      k.copy(A, G);
      k.matmul_forward(B, A, A, nullptr);  // A^2
      k.axpby(B, co.c, A, co.b);           // B = b A + c A^2
      k.matmul_forward(Z, X, B, nullptr);  // Z = X B^T = X B
      k.axpby(Z, 1.0, X, co.a);            // Z = a X + X B
      std::swap(X, Z);
    }
    k.copy(out, X);
  }
}

bool muon_eligible(const std::string& name, const Shape& shape) {
  const std::string suffix = ".weight";  // weight matrices only (not e.g. differential attention's lambda [4, D])
  const bool weight = name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  return shape.size() == 2 && weight && name != "embed" && name != "lm_head.weight";
}

namespace {
std::vector<ParamRef> adamw_refs(const std::vector<MuonParam>& ps) {
  std::vector<ParamRef> r;
  for (const auto& p : ps)
    if (!p.muon) r.push_back(p.ref);
  return r;
}
int64_t slice_len(int64_t numel, int S) { return (numel + S - 1) / S; }
}  // namespace

Muon::Muon(Kernels& k, std::vector<MuonParam> params, MuonConfig cfg, Comm* shard)
    : k_(k), params_(std::move(params)), cfg_(cfg), shard_(shard), adam_(k, adamw_refs(params_), cfg.adamw) {
  TEMPER_CHECK(cfg_.ns_steps >= 1 && cfg_.ns_steps <= 20, "Muon: ns_steps must be in [1, 20], got ", cfg_.ns_steps);
  TEMPER_CHECK(cfg_.momentum >= 0 && cfg_.momentum < 1, "Muon: momentum must be in [0, 1), got ", cfg_.momentum);
  TEMPER_CHECK(cfg_.update_scale > 0, "Muon: update_scale must be > 0, got ", cfg_.update_scale);
  if (shard_) {
    S_ = shard_->size();
    rank_ = shard_->rank();
  }
  owner_.assign(params_.size(), -1);
  mom_.resize(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const MuonParam& p = params_[i];
    refs_.push_back(p.ref);
    TEMPER_CHECK(p.ref.value.shape() == p.ref.grad.shape(), "Muon: parameter '", p.ref.name,
                 "' and its gradient differ in shape");
    const int64_t want = S_ == 1 ? shape_numel(p.shape) : slice_len(shape_numel(p.shape), S_);
    TEMPER_CHECK(p.ref.value.numel() == want, "Muon: parameter '", p.ref.name, "' of shape ", shape_str(p.shape),
                 " holds ", p.ref.value.numel(), " elements on this rank; ", S_ == 1 ? "expected the whole tensor, " :
                 "expected a flat slice of ", want, " (ceil(numel / ", S_, "))");
    if (!p.muon) continue;
    TEMPER_CHECK(p.shape.size() == 2 && p.shape[0] > 0 && p.shape[1] > 0, "Muon: parameter '", p.ref.name,
                 "' has shape ", shape_str(p.shape), ": Muon updates 2-D matrices only (give it to AdamW)");
    TEMPER_CHECK(p.ref.value.dtype() == DType::F32 || p.ref.value.dtype() == DType::F64, "Muon: parameter '",
                 p.ref.name, "' must be f32 or f64, got ", dtype_name(p.ref.value.dtype()));
    mom_[i] = k_.alloc(p.ref.value.shape(), p.ref.value.dtype());
    k_.zero(mom_[i]);
    order_.push_back(i);
    if (p.ref.value.dtype() == DType::F64) compute_ = DType::F64;
  }
  if (compute_ != DType::F64) compute_ = k_.act_dtype();
  std::stable_sort(order_.begin(), order_.end(), [&](size_t a, size_t b) {
    return shape_numel(params_[a].shape) > shape_numel(params_[b].shape);
  });
  for (size_t j = 0; j < order_.size(); ++j) owner_[order_[j]] = int(j % size_t(S_));
}

void Muon::step(double lr, double grad_scale) {
  adam_.step(lr, grad_scale);
  for (size_t first = 0; first < order_.size(); first += size_t(S_))
    step_round(first, std::min(order_.size(), first + size_t(S_)), lr, grad_scale);
}

// Matrices order_[first, last): the one at position j of the round is owned by shard rank j.
void Muon::step_round(size_t first, size_t last, double lr, double gs) {
  const DType acc = params_[order_[first]].ref.value.dtype();
  // 1. momentum and the matrix to orthogonalise, on this rank's piece
  std::vector<Tensor> u(last - first);
  for (size_t j = first; j < last; ++j) {
    const size_t i = order_[j];
    ParamRef& p = params_[i].ref;
    k_.axpby(mom_[i], cfg_.momentum, p.grad, gs);  // M = mu M + s G
    Tensor& uj = u[j - first];
    if (cfg_.nesterov) {
      uj = k_.alloc(p.value.shape(), acc);
      k_.axpby(uj, 0.0, p.grad, gs);
      k_.axpby(uj, 1.0, mom_[i], cfg_.momentum);  // U = s G + mu M
    } else {
      uj = mom_[i];
    }
  }
  auto apply = [&](size_t j, const Tensor& o) {  // W = W (1 - lr wd) - lr * scale * sqrt(max(m, n)) * O
    MuonParam& p = params_[order_[j]];
    const double scale = cfg_.update_scale * std::sqrt(double(std::max(p.shape[0], p.shape[1])));
    const double decay = p.ref.decay ? cfg_.weight_decay : 0.0;
    k_.axpby(p.ref.value, 1.0 - lr * decay, o, -lr * scale);
  };
  if (S_ == 1) {
    const size_t i = order_[first];
    Tensor o = k_.alloc(params_[i].shape, acc);
    newton_schulz(k_, u[0].reshape(params_[i].shape), o, cfg_.ns_steps, compute_);
    apply(first, o.reshape(params_[i].ref.value.shape()));
    return;
  }
  // 2. gather: chunk j of `send` is this rank's slice of the matrix owned by rank j
  int64_t Lmax = 0;
  for (size_t j = first; j < last; ++j) Lmax = std::max(Lmax, slice_len(shape_numel(params_[order_[j]].shape), S_));
  Tensor send = k_.alloc({S_ * Lmax}, acc), recv = k_.alloc({S_ * Lmax}, acc);
  k_.zero(send);
  for (size_t j = first; j < last; ++j) {
    Tensor dst = send.rows(int64_t(j - first) * Lmax, int64_t(j - first) * Lmax + u[j - first].numel());
    k_.copy(dst, u[j - first].reshape({u[j - first].numel()}));
  }
  shard_->all_to_all(recv, send);
  // 3. the owner orthogonalises its matrix; 4. chunk j of `back` is rank j's slice of O
  Tensor back = k_.alloc({S_ * Lmax}, acc);
  k_.zero(back);
  const size_t mine = first + size_t(rank_);
  if (mine < last) {
    const MuonParam& p = params_[order_[mine]];
    const int64_t numel = shape_numel(p.shape), L = slice_len(numel, S_);
    Tensor full = k_.alloc({S_ * L}, acc);
    for (int r = 0; r < S_; ++r) {
      Tensor dst = full.rows(r * L, (r + 1) * L);
      k_.copy(dst, recv.rows(r * Lmax, r * Lmax + L));
    }
    Tensor o = k_.alloc({S_ * L}, acc);
    k_.zero(o);
    Tensor o_mat = o.rows(0, numel).reshape(p.shape);
    newton_schulz(k_, full.rows(0, numel).reshape(p.shape), o_mat, cfg_.ns_steps, compute_);
    for (int r = 0; r < S_; ++r) {
      Tensor dst = back.rows(r * Lmax, r * Lmax + L);
      k_.copy(dst, o.rows(r * L, (r + 1) * L));
    }
  }
  shard_->all_to_all(recv, back);
  // 5. every rank applies its slice of each matrix's update (chunk j came from owner j)
  for (size_t j = first; j < last; ++j) {
    const Tensor& v = params_[order_[j]].ref.value;
    const int64_t off = int64_t(j - first) * Lmax;
    apply(j, recv.rows(off, off + v.numel()).reshape(v.shape()));
  }
}

void Muon::save(std::map<std::string, Tensor>& out) const {
  adam_.save(out);
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].muon) out["optim/muon_m/" + params_[i].ref.name] = to_host(k_, mom_[i]);
}

void Muon::state(std::map<std::string, Tensor>& out) const {
  adam_.state(out);
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].muon) out["optim/muon_m/" + params_[i].ref.name] = mom_[i];
}

void Muon::load(const std::map<std::string, Tensor>& in, int64_t steps_taken) {
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].muon) continue;
    const std::string key = "optim/muon_m/" + params_[i].ref.name;
    auto it = in.find(key);
    TEMPER_CHECK(it != in.end(), "checkpoint has no optimizer state '", key,
                 "' (was it written with another sft.optimizer / rl.optimizer?)");
    TEMPER_CHECK(it->second.shape() == mom_[i].shape(), "checkpoint tensor '", key, "' has shape ",
                 shape_str(it->second.shape()), ", the model expects ", shape_str(mom_[i].shape()));
    k_.copy(mom_[i], it->second);
  }
  adam_.load(in, steps_taken);
}

}  // namespace temper
