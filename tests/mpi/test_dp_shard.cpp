// DpShard (ZeRO-3 style sharding over dp_shard, hybrid with dp_replicate):
//  - equivalence: over several AdamW steps (global-norm clipping active) the
//    loss, the gradient shards and the updated weights of a small f64 model equal
//    a 1-rank run of the same global batch, for shard 2 (a 2-rank sub-world),
//    shard 4 and shard 2 x replicate 2 (np 4), with every checkpointing policy,
//    tied and untied heads, and tensor sizes that need padding;
//  - resharding restart: state saved on one mesh (via an HDF5 checkpoint file)
//    loads bit for bit on two other meshes (one of them a single rank without
//    DpShard), and training continues within f64 tolerance of the 1-rank run;
//  - bad input: a dp_shard that does not divide the world, a checkpoint of
//    another model shape, a checkpoint without optimizer state.
// Runs under mpirun -np 2 and -np 4 (shapes that need 4 ranks skip on 2).
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "io/checkpoint.h"
#include "model/batch.h"
#include "model/decoder.h"
#include "parallel/dp_shard.h"
#include "parallel/mesh.h"
#include "train/adamw.h"
#include "train/grad_clip.h"
#include "train/model_state.h"
#include "mpi/mpi_util.h"
#include "unit/model_util.h"

using namespace temper;

namespace {

using temper_mpi_test::world_rank;
using temper_mpi_test::world_size;

// d_model 21: 21, 61 x 21 (odd), 6 (q/k norm), 12 (k/v bias), 21 x 24 need padding at shard 2 and 4
ModelConfig small_config(bool tied) { return temper_test::small_model({61, 21, 2, 4, 2, 6, 30}, true, true, tied, 0.2f); }

constexpr int kMicro = 4;  // micro-batches per global batch (divisible by every DP degree used)
constexpr double kClip = 0.05;  // small: the clip is active, so the global norm matters

// The micro-batches of step `step`: packed documents of varied lengths.
std::vector<std::vector<std::vector<int32_t>>> step_docs(int step, int vocab) {
  Rng rng(mix64(77, uint64_t(step)));
  std::vector<std::vector<std::vector<int32_t>>> micro(kMicro);
  for (auto& m : micro) {
    const int n_docs = 1 + int(rng.below(3));
    for (int d = 0; d < n_docs; ++d) {
      std::vector<int32_t> doc(size_t(3 + rng.below(7)));
      for (auto& t : doc) t = int32_t(rng.below(uint64_t(vocab)));
      m.push_back(doc);
    }
  }
  return micro;
}

int64_t loss_tokens_of(const std::vector<std::vector<int32_t>>& docs) {
  int64_t n = 0;
  for (const auto& d : docs) n += int64_t(d.size()) - 1;
  return n;
}

AdamWConfig adam_config() {
  AdamWConfig c;
  c.weight_decay = 0.1;
  return c;
}

// One data-parallel trainer: a DpShard model on a mesh, or (mesh == nullptr) one rank.
struct Trainer {
  std::unique_ptr<Kernels> k = make_cpu_kernels();
  ModelConfig cfg;
  std::unique_ptr<Decoder> model;
  std::unique_ptr<DpShard> shard;
  std::unique_ptr<AdamW> opt;
  Mesh* mesh = nullptr;
  int64_t step = 0;

  Trainer(const ModelConfig& c, Mesh* m, Checkpointing policy) : cfg(c), mesh(m) {
    model = std::make_unique<Decoder>(cfg, *k, DType::F64);
    model->init_random(5);
    model->set_checkpointing(policy);
    if (mesh) {
      shard = std::make_unique<DpShard>(*model, *k, mesh->shard(), &mesh->sp());
      opt = std::make_unique<AdamW>(*k, shard->param_refs(), adam_config());
    } else {
      opt = std::make_unique<AdamW>(*k, param_refs(*model), adam_config());
    }
  }
  int dp_size() const { return mesh ? mesh->shape().dp_shard * mesh->shape().dp_replicate : 1; }
  int dp_rank() const { return mesh ? mesh->replicate_rank() * mesh->shape().dp_shard + mesh->shard_rank() : 0; }

  // Forward/backward of this rank's micro-batches, reductions; returns the global loss.
  double backward_step() {
    auto micro = step_docs(int(step), cfg.vocab_size);
    int64_t loss_tokens = 0;
    for (const auto& m : micro) loss_tokens += loss_tokens_of(m);
    if (shard) shard->zero_grad();
    else model->zero_grad();
    double loss = 0;
    for (int i = 0; i < kMicro; ++i) {
      if (i % dp_size() != dp_rank()) continue;
      Batch b = make_lm_batch(*k, micro[size_t(i)], cfg.vocab_size);
      Tensor logp;
      model->forward(b, logp);
      for (double v : to_host_f64(*k, logp)) loss -= v;
      std::vector<int32_t> targets = to_host_i32(b.targets);
      model->backward(b, sft_dlogp(*k, targets, double(loss_tokens), DType::F64));
    }
    if (mesh) {
      shard->reduce_over(mesh->replicate());
      loss = mesh->replicate().allreduce_sum(mesh->shard().allreduce_sum(loss));
    }
    return loss / double(loss_tokens);
  }
  void update() {
    const double norm = grad_norm(*k, opt->params(), mesh ? &mesh->shard() : nullptr);
    opt->step(1e-2, clip_scale(norm, kClip));
    ++step;
  }
  std::vector<int32_t> to_host_i32(const Tensor& t) {
    std::vector<int32_t> v(size_t(t.numel()));
    Tensor h = Tensor::wrap(v.data(), t.shape(), DType::I32);
    k->copy(h, t);
    return v;
  }
  // Logical (mesh-independent) state, as a checkpoint holds it.
  std::map<std::string, Tensor> state() {
    std::map<std::string, Tensor> out;
    if (shard) {
      std::map<std::string, Tensor> moments;
      opt->save(moments);
      shard->save_state(moments, out);
    } else {
      save_model_state(*model, *k, out);
      opt->save(out);
    }
    return out;
  }
  void load(const std::map<std::string, Tensor>& in, int64_t steps) {
    if (shard) {
      std::map<std::string, Tensor> names;
      opt->save(names);  // the optimizer's state names
      std::vector<std::string> keys;
      for (const auto& kv : names) keys.push_back(kv.first);
      shard->load_model(in);
      opt->load(shard->slice_moments(in, keys), steps);
    } else {
      load_model_state(*model, *k, in);
      opt->load(in, steps);
    }
    step = steps;
  }
};

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  EXPECT_EQ(a.dtype(), DType::F64);
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::fabs(a.data<double>()[i] - b.data<double>()[i]));
  return m;
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// A mesh over the first `n` world ranks (others get nullptr and skip), or nullptr everywhere when n > world.
struct SubMesh {
  MPI_Comm comm = MPI_COMM_NULL;
  std::unique_ptr<Mesh> mesh;
  SubMesh(int n, MeshShape shape) {
    const int color = world_rank() < n ? 0 : MPI_UNDEFINED;
    MPI_Comm_split(MPI_COMM_WORLD, color, world_rank(), &comm);
    if (comm != MPI_COMM_NULL) mesh = std::make_unique<Mesh>(Mesh::build(comm, shape));
  }
  ~SubMesh() {
    mesh.reset();
    if (comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
  }
};

struct Case {
  int ranks, shard, replicate;
  Checkpointing policy;
  bool tied;
};

}  // namespace

TEST(DpShard, MatchesOneRankOverSeveralSteps) {
  const std::vector<Case> cases = {{2, 2, 1, Checkpointing::None, true},
                                   {4, 4, 1, Checkpointing::Selective, false},
                                   {4, 2, 2, Checkpointing::Full, true},
                                   {2, 2, 1, Checkpointing::Full, false}};
  for (const Case& c : cases) {
    if (c.ranks > world_size()) continue;
    SCOPED_TRACE(::testing::Message() << "shard " << c.shard << " x replicate " << c.replicate << ", "
                                      << checkpointing_name(c.policy) << (c.tied ? ", tied" : ", untied"));
    SubMesh sm(c.ranks, {1, c.shard, c.replicate});
    if (!sm.mesh) continue;
    const ModelConfig cfg = small_config(c.tied);
    Trainer ref(cfg, nullptr, Checkpointing::None);
    Trainer dist(cfg, sm.mesh.get(), c.policy);
    for (int s = 0; s < 3; ++s) {
      const double want = ref.backward_step();
      const double got = dist.backward_step();
      EXPECT_NEAR(got, want, 1e-13 * std::fabs(want)) << "loss at step " << s;
      // each gradient shard is this rank's slice of the 1-rank gradient; the padded tail is 0
      const auto rp = ref.opt->params();
      const auto dp = dist.opt->params();
      ASSERT_EQ(rp.size(), dp.size());
      const int r = sm.mesh->shard_rank();
      for (size_t i = 0; i < rp.size(); ++i) {
        const int64_t len = dp[i].grad.numel(), n = rp[i].grad.numel();
        EXPECT_EQ(len, (n + c.shard - 1) / c.shard) << rp[i].name;
        for (int64_t j = 0; j < len; ++j) {
          const int64_t g = int64_t(r) * len + j;
          const double want_g = g < n ? rp[i].grad.data<double>()[g] : 0.0;
          ASSERT_NEAR(dp[i].grad.data<double>()[j], want_g, 1e-13) << rp[i].name << " element " << g;
        }
      }
      ref.update();
      dist.update();
    }
    const auto want = ref.state(), got = dist.state();
    ASSERT_EQ(want.size(), got.size());
    for (const auto& [name, t] : want) {
      ASSERT_TRUE(got.count(name)) << name;
      EXPECT_LT(max_abs_diff(got.at(name), t), 1e-12) << name;
    }
    // the shards really are a 1/shard slice: resident sharded state vs the full model
    int64_t full = 0;
    for (const auto& p : ref.opt->params()) full += int64_t(p.value.nbytes() + p.grad.nbytes());
    EXPECT_LE(dist.shard->resident_shard_bytes(), full / c.shard + 2 * int64_t(sizeof(double)) * 40);
    EXPECT_GT(dist.shard->resident_shard_bytes(), full / c.shard - 1);
  }
}

TEST(DpShard, GatherAllServesGenerationAndMatchesTheFullModel) {
  if (world_size() < 2) GTEST_SKIP();
  SubMesh sm(2, {1, 2, 1});
  if (!sm.mesh) return;
  const ModelConfig cfg = small_config(false);
  Trainer ref(cfg, nullptr, Checkpointing::None);
  Trainer dist(cfg, sm.mesh.get(), Checkpointing::None);
  EXPECT_FALSE(dist.model->params()[0].compute.defined());  // released between uses
  dist.shard->gather_all();
  for (size_t i = 0; i < ref.model->params().size(); ++i)
    EXPECT_EQ(max_abs_diff(dist.model->params()[i].compute, ref.model->params()[i].compute), 0.0)
        << ref.model->params()[i].name;
  Batch b = make_lm_batch(*dist.k, {{1, 2, 3, 4, 5}}, cfg.vocab_size);
  Tensor la, lb;
  dist.model->logits_at(b, {4}, la);
  ref.model->logits_at(b, {4}, lb);
  EXPECT_EQ(max_abs_diff(la, lb), 0.0);
  dist.shard->release_all();
  EXPECT_FALSE(dist.model->params()[0].compute.defined());
}

TEST(DpShard, ReshardingRestartAcrossThreeMeshes) {
  const int W = world_size();
  // np 4: shard 2 x replicate 2 -> shard 4 -> 1 rank; np 2: shard 2 -> replicate 2 (shard 1) -> 1 rank
  const MeshShape first = W >= 4 ? MeshShape{1, 2, 2} : MeshShape{1, 2, 1};
  const MeshShape second = W >= 4 ? MeshShape{1, 4, 1} : MeshShape{1, 1, 2};
  const int n = W >= 4 ? 4 : 2;
  const ModelConfig cfg = small_config(true);
  const std::string dir = (std::filesystem::temp_directory_path() / "temper_test_dp_shard_reshard").string();
  std::string path;
  std::map<std::string, Tensor> saved;
  {
    SubMesh sm(n, first);
    if (sm.mesh) {
      Trainer a(cfg, sm.mesh.get(), Checkpointing::Selective);
      for (int s = 0; s < 2; ++s) {
        a.backward_step();
        a.update();
      }
      saved = a.state();
      CheckpointState st;
      st.step = a.step;
      st.phase = "sft";
      st.mesh = {first.sp, first.dp_shard, first.dp_replicate};
      st.tensors = saved;
      if (world_rank() == 0) {
        std::filesystem::remove_all(dir);
        path = CheckpointStore(dir, 0).write(st);
      }
    }
  }
  int len = int(path.size());
  MPI_Bcast(&len, 1, MPI_INT, 0, MPI_COMM_WORLD);
  path.resize(size_t(len));
  MPI_Bcast(path.data(), len, MPI_CHAR, 0, MPI_COMM_WORLD);
  const CheckpointState st = CheckpointStore::load(path);
  EXPECT_EQ(st.mesh, (std::vector<int>{first.sp, first.dp_shard, first.dp_replicate}));
  // every logical tensor has the unsharded shape
  Decoder shape_ref(cfg, *make_cpu_kernels(), DType::F64);
  for (const auto& p : shape_ref.params()) {
    ASSERT_TRUE(st.tensors.count("model/" + p.name)) << p.name;
    EXPECT_EQ(st.tensors.at("model/" + p.name).shape(), p.value.shape()) << p.name;
    EXPECT_EQ(st.tensors.at("optim/m/" + p.name).shape(), p.value.shape()) << p.name;
  }

  // 1-rank reference continuation from the same file
  Trainer one(cfg, nullptr, Checkpointing::None);
  one.load(st.tensors, st.step);
  for (const auto& [name, t] : one.state()) EXPECT_TRUE(bit_equal(t, st.tensors.at(name))) << "1 rank: " << name;
  std::vector<double> one_loss;
  for (int s = 0; s < 2; ++s) {
    one_loss.push_back(one.backward_step());
    one.update();
  }
  // the second mesh: bit-exact state after load, continuation within f64 tolerance
  SubMesh sm(n, second);
  if (!sm.mesh) return;
  Trainer b(cfg, sm.mesh.get(), Checkpointing::Full);
  b.load(st.tensors, st.step);
  for (const auto& [name, t] : b.state())
    EXPECT_TRUE(bit_equal(t, st.tensors.at(name))) << "mesh " << second.dp_shard << "x" << second.dp_replicate << ": "
                                                   << name;
  for (int s = 0; s < 2; ++s) {
    // Not bitwise: the ranks add their micro-batches' gradients in another order
    // (reduce-scatter / all-reduce over a different rank count) than one rank's
    // accumulation, so the sums differ in the last bits.
    const double loss = b.backward_step();
    EXPECT_NEAR(loss, one_loss[size_t(s)], 1e-13 * std::fabs(loss)) << "continued step " << s;
    b.update();
  }
  const auto want = one.state();
  for (const auto& [name, t] : b.state()) EXPECT_LT(max_abs_diff(t, want.at(name)), 1e-12) << name;
  MPI_Barrier(sm.comm);
  if (world_rank() == 0) std::filesystem::remove_all(dir);
}

TEST(DpShard, BadInputGivesClearErrors) {
  // dp_shard that does not divide the world
  const int W = world_size();
  std::string msg;
  try {
    Mesh::build(MPI_COMM_WORLD, {1, W + 1, 1});
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("dp_shard"), std::string::npos) << msg;
  msg.clear();
  try {
    Mesh::build(MPI_COMM_WORLD, {1, 3, 0});
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("not a multiple of sp 1"), std::string::npos) << msg;

  // a checkpoint of another model shape, and one without optimizer state
  SubMesh sm(2, {1, 2, 1});
  if (!sm.mesh) return;
  Trainer small(small_config(true), sm.mesh.get(), Checkpointing::None);
  ModelConfig wider = small_config(true);
  wider.d_model = 25;
  Trainer big(wider, nullptr, Checkpointing::None);
  msg.clear();
  try {
    small.load(big.state(), 1);
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("checkpoint tensor 'model/embed' has shape [61, 25] but the deck's model needs [61, 21]"),
            std::string::npos)
      << msg;
  auto no_optim = small.state();
  for (auto it = no_optim.begin(); it != no_optim.end();) it = it->first.rfind("optim/", 0) == 0 ? no_optim.erase(it) : std::next(it);
  msg.clear();
  try {
    small.load(no_optim, 1);
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("checkpoint has no optimizer state 'optim/m/embed'"), std::string::npos) << msg;
}
