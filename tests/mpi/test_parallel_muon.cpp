// Parallel Muon: Muon over flat 1/S slices of every tensor (S = world size, the
// DP-shard layout: ceil(numel / S) elements per rank, zero padded), matrices
// owned round-robin by size, gathered / orthogonalised / scattered with
// all_to_all, equals the unsharded Muon on whole tensors bit for bit, over
// several steps, for matrices whose sizes do not divide S and more matrices
// than ranks (several rounds). Runs under mpirun -np 2 and -np 4.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <set>

#include "kernels/kernels.h"
#include "parallel/mpi_comm.h"
#include "train/muon.h"
#include "train/qk_clip.h"
#include "model/config.h"

using namespace temper;

namespace {

struct Spec {
  std::string name;
  Shape shape;
  bool muon;
};

const std::vector<Spec> kSpecs = {{"a", {5, 7}, true},  {"b", {12, 3}, true}, {"embed", {11, 3}, false},
                                  {"c", {4, 4}, true},  {"d", {9, 10}, true}, {"norm", {5}, false},
                                  {"e", {1, 6}, true},  {"f", {3, 13}, true}};

std::vector<float> randn(int64_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(g);
  return v;
}

Tensor host(const std::vector<float>& v, const Shape& s) {
  Tensor t = Tensor::empty(s, DType::F32);
  std::copy(v.begin(), v.end(), t.data<float>());
  return t;
}

// Elements [r L, (r+1) L) of v, zero padded to L.
std::vector<float> slice(const std::vector<float>& v, int r, int S) {
  const int64_t L = (int64_t(v.size()) + S - 1) / S;
  std::vector<float> out(size_t(L), 0.0f);
  for (int64_t i = 0; i < L && r * L + i < int64_t(v.size()); ++i) out[size_t(i)] = v[size_t(r * L + i)];
  return out;
}

}  // namespace

TEST(ParallelMuon, ShardedUpdatesEqualUnshardedBitForBit) {
  auto comm = MpiComm::dup(MPI_COMM_WORLD, "dp_shard");
  const int S = comm->size(), r = comm->rank();
  auto k = make_cpu_kernels();
  MuonConfig cfg;
  cfg.weight_decay = 0.1;
  cfg.adamw.weight_decay = 0.01;
  std::vector<MuonParam> full, sharded;
  std::vector<std::vector<float>> w0;
  for (size_t i = 0; i < kSpecs.size(); ++i) {
    const auto& s = kSpecs[i];
    const int64_t n = shape_numel(s.shape);
    w0.push_back(randn(n, uint32_t(1 + i)));
    full.push_back({{s.name, host(w0[i], s.shape), Tensor::empty(s.shape, DType::F32), s.name != "norm"}, s.shape,
                    s.muon});
    const std::vector<float> piece = slice(w0[i], r, S);
    const Shape ps{int64_t(piece.size())};
    sharded.push_back({{s.name, host(piece, ps), Tensor::empty(ps, DType::F32), s.name != "norm"}, s.shape, s.muon});
  }
  Muon ref(*k, full, cfg);
  Muon par(*k, sharded, cfg, comm.get());
  // owners: round-robin by size, every rank owns some matrix when there are enough
  std::set<int> owners;
  for (size_t i = 0; i < kSpecs.size(); ++i) {
    EXPECT_EQ(par.owner_of(i) >= 0, kSpecs[i].muon);
    if (kSpecs[i].muon) owners.insert(par.owner_of(i));
  }
  EXPECT_EQ(int(owners.size()), std::min(S, 6));
  EXPECT_EQ(par.owner_of(4), 0) << "the largest matrix (d, 9x10) is dealt first";
  for (int step = 1; step <= 3; ++step) {
    for (size_t i = 0; i < kSpecs.size(); ++i) {
      const auto g = randn(shape_numel(kSpecs[i].shape), uint32_t(100 * step + i));
      std::copy(g.begin(), g.end(), full[i].ref.grad.data<float>());
      const auto gp = slice(g, r, S);
      std::copy(gp.begin(), gp.end(), sharded[i].ref.grad.data<float>());
    }
    ref.step(0.01 * step, 0.8);
    par.step(0.01 * step, 0.8);
    for (size_t i = 0; i < kSpecs.size(); ++i) {
      const Tensor& wf = full[i].ref.value;
      const std::vector<float> all(wf.data<float>(), wf.data<float>() + wf.numel());
      const auto want = slice(all, r, S);
      const float* got = sharded[i].ref.value.data<float>();
      for (size_t e = 0; e < want.size(); ++e)
        ASSERT_EQ(std::memcmp(&got[e], &want[e], sizeof(float)), 0)
            << kSpecs[i].name << " step " << step << " rank " << r << " element " << e << ": " << got[e]
            << " vs " << want[e];
    }
  }
  // the state round-trips through save/load (this rank's slices)
  std::map<std::string, Tensor> state;
  par.save(state);
  EXPECT_EQ(state.count("optim/muon_m/d"), 1u);
  EXPECT_EQ(state.at("optim/muon_m/d").numel(), (90 + S - 1) / S);
  EXPECT_EQ(state.count("optim/m/embed"), 1u);
}

TEST(ParallelMuon, WrongSliceLengthIsRefused) {
  auto comm = MpiComm::dup(MPI_COMM_WORLD, "dp_shard");
  auto k = make_cpu_kernels();
  const Shape whole{6, 5};  // a whole tensor where a 1/S slice is expected
  std::vector<MuonParam> ps = {{{"w", Tensor::zeros(whole, DType::F32), Tensor::zeros(whole, DType::F32), true},
                                whole, true}};
  try {
    Muon bad(*k, ps, MuonConfig{}, comm.get());
    FAIL() << "accepted a whole tensor as a slice";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("flat slice"), std::string::npos) << e.what();
  }
}

// QK-clip on DP-shard slices (each rank scales the part of the rows it holds)
// equals QK-clip on whole tensors.
TEST(ParallelMuon, QkClipOnSlicesEqualsQkClipOnWholeTensors) {
  auto comm = MpiComm::dup(MPI_COMM_WORLD, "dp_shard");
  const int S = comm->size(), r = comm->rank();
  auto k = make_cpu_kernels();
  ModelConfig c;
  c.vocab_size = 11;
  c.d_model = 5;
  c.n_layers = 2;
  c.n_heads = 6;  // q rows of a head (15 elements) straddle slice boundaries for S = 2 (k) and 4 (q, k)
  c.n_kv_heads = 3;
  c.head_dim = 3;
  c.ffn_dim = 7;
  c.qkv_bias = true;
  std::map<std::string, Tensor> whole;
  std::map<std::string, ParamRef> slices;
  std::map<std::string, Shape> shapes;
  uint32_t seed = 50;
  for (int l = 0; l < c.n_layers; ++l)
    for (auto [suffix, shape] : {std::pair<std::string, Shape>{"q.weight", {18, 5}}, {"k.weight", {9, 5}},
                                 {"q.bias", {18}}, {"k.bias", {9}}}) {
      const std::string name = "layers." + std::to_string(l) + ".attn." + suffix;
      const auto v = randn(shape_numel(shape), seed++);
      whole[name] = host(v, shape);
      const auto piece = slice(v, r, S);
      slices[name] = {name, host(piece, {int64_t(piece.size())}), Tensor(), true};
      shapes[name] = shape;
    }
  const std::vector<std::vector<double>> logits = {{9.0, 2.0, 1.0, 12.0, 3.0, 7.0},
                                                     {0.5, 3.5, 4.0, 1.0, 2.0, 2.5}};
  const QkClipStats a = qk_clip(c, logits, 3.0, [&](const std::string& name, int64_t b, int64_t e, double s) {
    Tensor rows = whole.at(name).rows(b, e);
    k->axpby(rows, 0.0, rows, s);
  });
  const QkClipStats b = qk_clip(c, logits, 3.0, sliced_row_scaler(*k, slices, shapes, r, S));
  EXPECT_EQ(a.heads_clipped, 5);
  EXPECT_EQ(b.heads_clipped, 5);
  for (const auto& [name, t] : whole) {
    const std::vector<float> all(t.data<float>(), t.data<float>() + t.numel());
    const auto want = slice(all, r, S);
    const float* got = slices.at(name).value.data<float>();
    for (size_t e = 0; e < want.size(); ++e) ASSERT_EQ(got[e], want[e]) << name << " element " << e << " rank " << r;
  }
}
