// DeepSpeed-Ulysses sequence parallelism against 1 rank, on the CPU backend in f64:
//  * the all-to-all layouts (exact values, round trip, backward = transpose incl. kv replicas),
//  * the attention core (out, dq, dk, dv) for GQA with kv_heads >, = and < sp,
//  * a whole 2-layer model (qk_norm, qkv_bias, packed documents crossing shard boundaries,
//    padding, kv_heads < sp): logp per token, loss and ALL parameter gradients, for sp = world
//    and, at 4 ranks, sp = 2 x dp_replicate = 2; also under full activation checkpointing;
//  * the same for grouped differential attention (4:1 and 2:1 groups, the released layout,
//    PolyNorm MLP) and differential attention (G = H), sp = 2 and 4;
//  * QK-clip under sp: the max logits reduced over the SP group equal one rank's (standard and
//    both paths of differential attention), and so do the clipped W_q, W_k.
// Runs under mpirun -np 2 and -np 4.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <memory>
#include <vector>

#include "core/rng.h"
#include "model/batch.h"
#include "model/decoder.h"
#include "parallel/mesh.h"
#include "parallel/mpi_comm.h"
#include "parallel/ulysses.h"
#include "train/model_state.h"
#include "train/qk_clip.h"

using namespace temper;

namespace {

int world_size() { return MpiComm::dup(MPI_COMM_WORLD, "world")->size(); }

ModelConfig attn_config(int H, int KVH, int D) {
  ModelConfig c;
  c.vocab_size = 67;
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = H;
  c.n_kv_heads = KVH;
  c.head_dim = D;
  c.ffn_dim = 24;
  return c;
}

// Same values on every rank: a seeded normal tensor (host, f64).
Tensor random_tensor(const Shape& shape, uint64_t seed) {
  Tensor t = Tensor::empty(shape, DType::F64);
  Rng rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] = rng.normal();
  return t;
}

Tensor clone(Kernels& k, const Tensor& t) {
  Tensor c = k.alloc(t.shape(), t.dtype());
  k.copy(c, t);
  return c;
}

// max |a - b| / (max |b| + tiny) over the first min(numel) entries
double rel_err(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.numel(), b.numel());
  double worst = 0, scale = 1e-30;
  for (int64_t i = 0; i < b.numel(); ++i) scale = std::max(scale, std::fabs(b.data<double>()[i]));
  for (int64_t i = 0; i < std::min(a.numel(), b.numel()); ++i)
    worst = std::max(worst, std::fabs(a.data<double>()[i] - b.data<double>()[i]));
  return worst / scale;
}

double dot(const Tensor& a, const Tensor& b) {
  double s = 0;
  for (int64_t i = 0; i < a.numel(); ++i) s += a.data<double>()[i] * b.data<double>()[i];
  return s;
}

// Documents (lengths) packed back to back; cu_seqlens over them.
std::vector<int32_t> cu_of(const std::vector<int>& lens) {
  std::vector<int32_t> cu{0};
  for (int l : lens) cu.push_back(cu.back() + l);
  return cu;
}

// (H, KVH) pairs valid at sp = P: kv heads above, at and below P, and one where neither divides.
std::vector<std::pair<int, int>> head_cases(int P) {
  if (P == 2) return {{4, 4}, {4, 2}, {4, 1}, {6, 3}};
  return {{8, 8}, {4, 4}, {8, 2}, {4, 1}, {12, 3}};
}

}  // namespace

TEST(Ulysses, LayoutsExactRoundTripAndTranspose) {
  Mesh mesh = Mesh::build(MPI_COMM_WORLD, {world_size(), 1, 1});
  auto k = make_cpu_kernels();
  const int P = mesh.sp().size(), r = mesh.sp().rank();
  const int64_t n = 3, N = n * P, D = 4;
  for (auto [H, KVH] : head_cases(P)) {
    Ulysses u(mesh.sp(), attn_config(H, KVH, D));
    for (int kv = 0; kv < 2; ++kv) {
      const int64_t heads = kv ? KVH : H;
      const int e = kv ? u.kv_replicas() : 1;
      const int64_t h = kv ? u.local_kv_heads() : u.local_heads();
      ASSERT_EQ(heads * e, h * P);
      Tensor full = random_tensor({N, heads, D}, 11 + heads);
      Tensor x = full.rows(r * n, (r + 1) * n);
      Tensor y = k->alloc({N, h, D}, DType::F64);
      u.seq_to_heads(*k, y, x, heads, e);
      for (int64_t t = 0; t < N; ++t)  // the whole sequence, this rank's (virtual) heads
        for (int64_t l = 0; l < h; ++l)
          for (int64_t d = 0; d < D; ++d)
            ASSERT_EQ(y.data<double>()[(t * h + l) * D + d],
                      full.data<double>()[(t * heads + (r * h + l) / e) * D + d])
                << "H " << H << " KVH " << KVH << " kv " << kv << " t " << t << " l " << l;
      // round trip: back to the sequence layout, each of the e copies counted once
      Tensor back = k->alloc({n, heads, D}, DType::F64);
      u.heads_to_seq(*k, back, y, heads, e);
      for (int64_t i = 0; i < back.numel(); ++i) ASSERT_EQ(back.data<double>()[i], e * x.data<double>()[i]);
      // heads_to_seq is the transpose of seq_to_heads: <S x, z> = <x, S^T z> over the group
      Tensor z = random_tensor({N, h, D}, 100 + r);
      Tensor stz = k->alloc({n, heads, D}, DType::F64);
      u.heads_to_seq(*k, stz, z, heads, e);
      const double lhs = mesh.sp().allreduce_sum(dot(y, z)), rhs = mesh.sp().allreduce_sum(dot(x, stz));
      EXPECT_NEAR(lhs, rhs, 1e-12 * std::fabs(rhs)) << "H " << H << " KVH " << KVH << " kv " << kv;
    }
  }
  Tensor a = k->alloc({2, 3, D}, DType::F64), b = k->alloc({2, 2, D}, DType::F64);
  EXPECT_THROW(k->copy_heads(a, 2, b, 0, 2, false), Error);  // dst heads [2, 4) of 3
}

TEST(Ulysses, HeadsNotDivisibleBySpIsAClearError) {
  Mesh mesh = Mesh::build(MPI_COMM_WORLD, {world_size(), 1, 1});
  const int P = mesh.sp().size();
  try {
    Ulysses u(mesh.sp(), attn_config(P + 1, 1, 4));
    FAIL() << "n_heads " << P + 1 << " at sp " << P << " was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("parallel.sp"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("n_heads"), std::string::npos) << e.what();
  }
}

TEST(Ulysses, AttentionCoreEqualsOneRank) {
  Mesh mesh = Mesh::build(MPI_COMM_WORLD, {world_size(), 1, 1});
  auto k = make_cpu_kernels();
  const int P = mesh.sp().size(), r = mesh.sp().rank();
  const int64_t n = 9, N = n * P, D = 8;
  // documents crossing every shard boundary, one longer than a shard, one of length 1
  std::vector<int> lens = {int(n) + 3, 1, int(N - n) - 8, 4};
  const std::vector<int32_t> cu = cu_of(lens);
  Batch whole;
  whole.cu_seqlens = to_device(*k, cu);
  whole.max_seqlen = *std::max_element(lens.begin(), lens.end());
  for (auto [H, KVH] : head_cases(P)) {
    Ulysses u(mesh.sp(), attn_config(H, KVH, D));
    Tensor q = random_tensor({N, H, D}, 1), kk = random_tensor({N, KVH, D}, 2), v = random_tensor({N, KVH, D}, 3),
           dout = random_tensor({N, H, D}, 4);
    Tensor out = k->alloc({N, H, D}, DType::F64), lse = k->alloc({N, H}, DType::F64);
    Tensor dq = k->alloc(q.shape(), DType::F64), dk = k->alloc(kk.shape(), DType::F64),
           dv = k->alloc(v.shape(), DType::F64);
    k->attention_forward(out, lse, q, kk, v, whole.cu_seqlens, whole.max_seqlen);
    k->attention_backward(dq, dk, dv, dout, out, lse, q, kk, v, whole.cu_seqlens, whole.max_seqlen);

    auto mine = [&](const Tensor& t) { return clone(*k, t.rows(r * n, (r + 1) * n)); };
    Tensor lq = mine(q), lk = mine(kk), lv = mine(v), ldout = mine(dout);
    Tensor lout = k->alloc({n, H, D}, DType::F64), llse = k->alloc({n, H}, DType::F64);
    Tensor ldq = k->alloc(lq.shape(), DType::F64), ldk = k->alloc(lk.shape(), DType::F64),
           ldv = k->alloc(lv.shape(), DType::F64);
    u.forward(*k, lout, llse, lq, lk, lv, whole);
    u.backward(*k, ldq, ldk, ldv, ldout, lout, llse, lq, lk, lv, whole);
    const std::string what = "H " + std::to_string(H) + " KVH " + std::to_string(KVH) + " sp " + std::to_string(P);
    EXPECT_LT(rel_err(lout, mine(out)), 1e-13) << what;
    EXPECT_LT(rel_err(ldq, mine(dq)), 1e-12) << what;
    EXPECT_LT(rel_err(ldk, mine(dk)), 1e-12) << what;
    EXPECT_LT(rel_err(ldv, mine(dv)), 1e-12) << what;
  }
}

namespace {

struct HostBatch {
  std::vector<int32_t> tokens, targets, positions, cu;
};

// Packed documents of the given lengths; positions restart per document, the last token of
// each has no target, and every 5th token is masked (a prompt-like hole in the loss).
HostBatch packed(const std::vector<int>& lens, int vocab, uint64_t seed) {
  HostBatch b;
  Rng rng(seed);
  b.cu = cu_of(lens);
  for (int len : lens)
    for (int i = 0; i < len; ++i) {
      b.tokens.push_back(int32_t(rng.next_u64() % uint64_t(vocab)));
      b.positions.push_back(i);
    }
  for (size_t s = 0; s + 1 < b.cu.size(); ++s)
    for (int32_t t = b.cu[s]; t < b.cu[s + 1]; ++t)
      b.targets.push_back(t + 1 < b.cu[s + 1] && t % 5 != 3 ? b.tokens[size_t(t) + 1] : -1);
  return b;
}

std::vector<Tensor> grads_of(Decoder& m) {
  std::vector<Tensor> g;
  for (auto& p : m.params()) g.push_back(p.grad);
  return g;
}

// One SFT step's forward + backward of micro-batch `b` on `m`; returns sum of -logp.
double step(Decoder& m, Kernels& k, const Batch& b, const Tensor& dlogp, Tensor& logp) {
  m.forward(b, logp);
  double loss = 0;
  for (double v : to_host_f64(k, logp)) loss -= v;
  m.backward(b, dlogp);
  return loss;
}

ModelConfig standard_model() {
  ModelConfig c = attn_config(4, 1, 8);  // kv_heads < sp
  c.d_model = 32;
  c.qk_norm = true;
  c.qkv_bias = true;
  c.tie_embeddings = false;
  return c;
}

// Differential attention in the released layout: H signal heads in groups with G noise heads,
// KVH key heads per path, PolyNorm MLP. sp must divide H and G.
ModelConfig differential_model(int H, int G, int KVH) {
  ModelConfig c = attn_config(H, KVH, 8);
  c.d_model = 32;
  c.tie_embeddings = false;
  c.attention = G == H ? AttentionKind::Differential : AttentionKind::GroupedDifferential;
  c.n_noise_heads = G;
  c.mlp_activation = MlpActivation::PolyNorm;
  return c;
}

void model_equals_one_rank(int sp, Checkpointing ckpt, const ModelConfig& c = standard_model()) {
  const int W = world_size();
  Mesh mesh = Mesh::build(MPI_COMM_WORLD, {sp, 1, W / sp});
  auto k = make_cpu_kernels();
  const int R = mesh.replicate().size(), rho = mesh.replicate().rank(), r = mesh.sp().rank();
  // micro-batch i: documents crossing the shard boundaries, N not a multiple of sp (padding)
  std::vector<HostBatch> mbs;
  int64_t loss_tokens = 0;
  for (int i = 0; i < R; ++i) {
    mbs.push_back(packed({5 + i, 2, 19, 1, 6 - i}, c.vocab_size, 7 + uint64_t(i)));
    loss_tokens += count_loss_tokens(mbs.back().targets);
  }
  const std::string what = std::string(attention_kind_name(c.attention)) + " H " + std::to_string(c.n_heads) + " G " +
                           std::to_string(c.n_noise_heads) + " KVH " + std::to_string(c.n_kv_heads) + " sp " +
                           std::to_string(sp) + " dp_replicate " + std::to_string(R) + " checkpointing " +
                           checkpointing_name(ckpt);

  // 1 rank: every micro-batch, gradients accumulated
  Decoder ref(c, *k, DType::F64);
  ref.init_random(5);
  ref.zero_grad();
  double ref_loss = 0;
  Tensor ref_logp;
  for (int i = 0; i < R; ++i) {
    const HostBatch& h = mbs[size_t(i)];
    Batch b = make_batch(*k, h.tokens, h.targets, h.positions, h.cu, c.vocab_size);
    Tensor logp;
    ref_loss += step(ref, *k, b, sft_dlogp(*k, h.targets, double(loss_tokens), DType::F64), logp);
    if (i == rho) ref_logp = logp;
  }

  // sp ranks: this replica's micro-batch, this rank's tokens
  Decoder m(c, *k, DType::F64);
  m.init_random(5);
  m.set_checkpointing(ckpt);
  m.zero_grad();
  Ulysses u(mesh.sp(), c);
  HostBatch h = mbs[size_t(rho)];
  const int64_t N0 = int64_t(h.tokens.size());
  const int64_t pad = pad_sequence(h.tokens, h.targets, h.positions, h.cu, sp);
  ASSERT_GT(pad, 0) << "the test wants padding";
  Batch whole = make_batch(*k, h.tokens, h.targets, h.positions, h.cu, c.vocab_size);
  Batch b = u.shard(whole);
  const int64_t n = b.n_tokens;
  ASSERT_GT(whole.max_seqlen, n) << "the test wants a document longer than a shard";
  Tensor dlogp = sft_dlogp(*k, h.targets, double(loss_tokens), DType::F64).rows(r * n, (r + 1) * n);
  Tensor logp;
  double loss = step(m, *k, b, dlogp, logp);
  // logp per token: this rank's slice of the 1-rank values (pad tokens: 0)
  for (int64_t t = 0; t < n; ++t) {
    const int64_t g = r * n + t;
    const double want = g < N0 ? ref_logp.data<double>()[g] : 0.0;
    EXPECT_NEAR(logp.data<double>()[t], want, 1e-12 * (1 + std::fabs(want))) << what << " token " << g;
  }
  EXPECT_EQ(u.allocated_bytes(), Ulysses::scratch_bytes(c, n, sp, DType::F64)) << what;
  allreduce_grads(m, mesh.sp());
  allreduce_grads(m, mesh.replicate());
  loss = mesh.replicate().allreduce_sum(mesh.sp().allreduce_sum(loss));
  EXPECT_NEAR(loss / double(loss_tokens), ref_loss / double(loss_tokens), 1e-12 * ref_loss / double(loss_tokens))
      << what;
  auto g = grads_of(m), gr = grads_of(ref);
  for (size_t i = 0; i < g.size(); ++i) {
    EXPECT_LT(rel_err(g[i], gr[i]), 1e-11) << what << ": gradient of " << m.params()[i].name;
    EXPECT_GT(std::sqrt(dot(gr[i], gr[i])), 0.0) << m.params()[i].name << " has no gradient to compare";
  }
}

}  // namespace

TEST(Ulysses, ModelEqualsOneRankSpIsWorld) { model_equals_one_rank(world_size(), Checkpointing::None); }

TEST(Ulysses, ModelEqualsOneRankFullCheckpointing) { model_equals_one_rank(world_size(), Checkpointing::Full); }

TEST(Ulysses, ModelEqualsOneRankSp2Replicate2) {
  if (world_size() != 4) GTEST_SKIP() << "needs 4 ranks";
  model_equals_one_rank(2, Checkpointing::None);
}

// Grouped differential attention (4:1 and 2:1: 8 signal heads with 2 or 4 noise heads, 2 key heads per
// path, so kv_heads = sp or < sp) and differential attention (G = H) at sp = world (2 and 4).
TEST(Ulysses, GroupedDifferentialModelEqualsOneRank) {
  const int W = world_size();
  if (W == 2) model_equals_one_rank(2, Checkpointing::None, differential_model(8, 2, 2));
  model_equals_one_rank(W, Checkpointing::None, differential_model(8, 4, 2));
  model_equals_one_rank(W, Checkpointing::Full, differential_model(8, 4, 2));
  model_equals_one_rank(W, Checkpointing::None, differential_model(4, 4, 2));
}

TEST(Ulysses, GroupedDifferentialSp2Replicate2) {
  if (world_size() != 4) GTEST_SKIP() << "needs 4 ranks";
  model_equals_one_rank(2, Checkpointing::None, differential_model(8, 2, 2));
}

TEST(Ulysses, DifferentialHeadsNotDivisibleBySpIsAClearError) {
  Mesh mesh = Mesh::build(MPI_COMM_WORLD, {world_size(), 1, 1});
  const int P = mesh.sp().size();
  try {
    Ulysses u(mesh.sp(), differential_model(4 * P, 1, 1));  // one noise-control head cannot be split
    FAIL() << "1 noise head at sp " << P << " was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("parallel.sp = " + std::to_string(P)), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("1 noise-control heads"), std::string::npos) << e.what();
  }
}

// QK-clip at sp = world: every rank records the max logits of the heads it holds over the whole
// sequence; the max over the group equals one rank's record, for standard attention and for both
// softmaxes of differential attention, and the clipped W_q, W_k equal one rank's.
TEST(Ulysses, QkClipMaxLogitsEqualOneRank) {
  Mesh mesh = Mesh::build(MPI_COMM_WORLD, {world_size(), 1, 1});
  auto k = make_cpu_kernels();
  const int P = mesh.sp().size();
  for (ModelConfig c : {attn_config(4, 1, 8), differential_model(8, 4, 2)}) {
    c.d_model = 32;
    c.init_std = 0.2f;  // logits well above tau
    HostBatch h = packed({7, 2, 17, 1, 6}, c.vocab_size, 3);
    Decoder ref(c, *k, DType::F64), m(c, *k, DType::F64);
    for (Decoder* d : {&ref, &m}) {
      d->init_random(9);
      d->set_record_max_logits(true);
      d->zero_grad();
    }
    Tensor logp;
    ref.forward(make_batch(*k, h.tokens, h.targets, h.positions, h.cu, c.vocab_size), logp);
    Ulysses u(mesh.sp(), c);
    pad_sequence(h.tokens, h.targets, h.positions, h.cu, P);
    Batch whole = make_batch(*k, h.tokens, h.targets, h.positions, h.cu, c.vocab_size);
    m.forward(u.shard(whole), logp);
    const auto want = gathered_max_logits(ref, *k, nullptr), got = gathered_max_logits(m, *k, &mesh.sp());
    ASSERT_EQ(got.size(), want.size());
    const std::string what = std::string(attention_kind_name(c.attention)) + " sp " + std::to_string(P);
    double top = 0;
    for (size_t l = 0; l < want.size(); ++l) {
      ASSERT_EQ(int64_t(want[l].size()), c.q_heads()) << what;
      for (size_t i = 0; i < want[l].size(); ++i) {
        EXPECT_NEAR(got[l][i], want[l][i], 1e-12 * std::fabs(want[l][i])) << what << " layer " << l << " head " << i;
        top = std::max(top, want[l][i]);
      }
    }
    const double tau = 0.5 * top;
    const QkClipStats a = qk_clip(ref, *k, want, tau), b = qk_clip(m, *k, got, tau);
    EXPECT_GT(a.heads_clipped, 0) << what;
    EXPECT_EQ(a.heads_clipped, b.heads_clipped) << what;
    for (int l = 0; l < c.n_layers; ++l)
      for (const char* w : {"attn.q.weight", "attn.k.weight"}) {
        const std::string name = "layers." + std::to_string(l) + "." + w;
        EXPECT_LT(rel_err(m.param(name).value, ref.param(name).value), 1e-12) << what << " " << name;
      }
  }
}
