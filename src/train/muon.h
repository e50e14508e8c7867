// Muon (Jordan et al. 2024; Liu et al. 2025, "Muon is scalable for LLM training"):
// momentum on each 2-D hidden weight matrix, orthogonalised by a quintic
// Newton-Schulz iteration, with an update scale that matches AdamW's RMS so the
// same learning rate serves both groups. Embeddings, the output head, norm
// weights and biases are updated by AdamW (train/adamw.h) inside this class.
//
// For a matrix W [m, n] with gradient G (times grad_scale s):
//   M <- mu M + s G                               (momentum, f32 master dtype)
//   U  = s G + mu M  (nesterov)  or  M            (plain)
//   O  = NS_k(U)                                  (~ U V^T of U's SVD, see newton_schulz)
//   W <- W (1 - lr wd) - lr * update_scale * sqrt(max(m, n)) * O
// O has singular values ~1, so its RMS is ~1/sqrt(max(m, n)); update_scale 0.2
// gives updates of RMS 0.2 * lr, the RMS AdamW's updates typically have
// (Liu et al. 2025, sec. 2.2), hence one lr for both groups.
//
// Parallel Muon (under DP-shard): every tensor is held as flat 1/S slices of
// the row-major tensor over the shard communicator (S ranks; rank r holds
// elements [r L, (r+1) L), L = ceil(numel / S), zero padded). Momentum and the
// AdamW state stay sliced. Each matrix is owned by one rank: matrices sorted by
// size (descending, ties by position) are dealt round-robin, so rounds of S
// matrices hold one matrix per owner. Per round one all_to_all brings every
// owner the S slices of its U, the owner orthogonalises the full matrix, and a
// second all_to_all returns each rank its slices of O. The result equals the
// unsharded update exactly (tests/mpi/test_parallel_muon.cpp).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "train/adamw.h"
#include "train/optimizer.h"

namespace temper {

class Comm;

// The quintic Newton-Schulz iteration with coefficients (a, b, c) =
// (3.4445, -4.7750, 2.0315): X0 = G / (||G||_F + 1e-7), then
//   X <- a X + (b A + c A^2) X,  A = X X^T        (m <= n)
//   X <- a X + X (b A + c A^2),  A = X^T X        (m > n: the same on G^T, transposed back)
// Each singular value s of X0 maps to phi^k(s), phi(x) = a x + b x^3 + c x^5;
// after 5 steps values in [3e-3, 1] land in [0.68, 1.21] (in [0.68, 1.14] from
// [1e-2, 1]; not exactly 1: the coefficients trade accuracy for speed). The GEMMs run in `compute` dtype
// (the backend's activation dtype, or f64 on the CPU f64 path); out [m, n] is
// written in its own dtype (f32 / f64).
struct NewtonSchulzCoeffs {
  double a = 3.4445, b = -4.7750, c = 2.0315;
};
void newton_schulz(Kernels& k, const Tensor& g, Tensor& out, int steps, DType compute,
                   NewtonSchulzCoeffs coeffs = {});

// MuonConfig: train/optimizer.h.

struct MuonParam {
  ParamRef ref;      // the whole tensor, or (with a shard communicator) this rank's flat padded slice
  Shape shape;       // the full tensor's shape
  bool muon = false; // true: Muon (must be 2-D); false: AdamW
};

// Which parameters the factory gives to Muon: 2-D '*.weight' matrices except the embedding and the output head.
bool muon_eligible(const std::string& name, const Shape& shape);

class Muon final : public Optimizer {
 public:
  // shard: null (or size 1) for whole tensors; else the DP-shard communicator the slices are over.
  Muon(Kernels& k, std::vector<MuonParam> params, MuonConfig cfg, Comm* shard = nullptr);
  std::string name() const override { return "muon"; }
  void step(double lr, double grad_scale) override;
  int64_t steps_taken() const override { return adam_.steps_taken(); }
  // Momenta as "optim/muon_m/<name>" (this rank's slices under DP-shard), AdamW's as "optim/m|v/<name>".
  void save(std::map<std::string, Tensor>& out) const override;
  void state(std::map<std::string, Tensor>& out) const override;
  void load(const std::map<std::string, Tensor>& in, int64_t steps_taken) override;
  const std::vector<ParamRef>& params() const override { return refs_; }
  // The rank of the shard communicator that orthogonalises matrix i (an index into
  // the constructor's params; -1 for AdamW parameters).
  int owner_of(size_t i) const { return owner_[i]; }

 private:
  void step_round(size_t first, size_t last, double lr, double grad_scale);
  Kernels& k_;
  std::vector<MuonParam> params_;
  std::vector<ParamRef> refs_;
  MuonConfig cfg_;
  Comm* shard_;
  int S_ = 1, rank_ = 0;
  DType compute_ = DType::F32;
  std::vector<size_t> order_;  // Muon matrices, largest first
  std::vector<int> owner_;
  std::vector<Tensor> mom_;    // per param (Muon ones only)
  AdamW adam_;
};

}  // namespace temper
