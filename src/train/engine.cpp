// The training engine (see engine.h).
#include "train/engine.h"

#include <cmath>

#include "core/error.h"
#include "deck/deck.h"
#include "model/batch.h"
#include "parallel/dp_shard.h"
#include "parallel/ulysses.h"
#include "train/grad_clip.h"
#include "train/model_setup.h"
#include "train/model_state.h"

namespace temper {

Engine::Engine(const ModelConfig& cfg, Kernels& k, Mesh& mesh, const EngineOptions& opt, const InitialWeights& init,
               uint64_t seed)
    : k_(k), mesh_(mesh), opt_(opt) {
  model_ = std::make_unique<Decoder>(cfg, k, opt.param_dtype);
  // sp > 1: the ranks of an SP group pass the same batches and each keeps N / sp tokens.
  if (mesh.sp().size() > 1) ulysses_ = std::make_unique<Ulysses>(mesh.sp(), cfg);
  apply_initial_weights(init, *model_, k, seed);
  model_->set_checkpointing(opt.checkpointing, opt.recompute);
  for (const auto& p : model_->params()) shards_.shapes[p.name] = p.value.shape();  // before DpShard releases them
  if (mesh.shard().size() > 1) {  // ZeRO-3: the optimizer steps this rank's slices
    shard_ = std::make_unique<DpShard>(*model_, k, mesh.shard(), &mesh.sp());
    shards_.refs = shard_->param_refs();
    shards_.shard = &mesh.shard();
  }
  if (opt.trainable)
    optimizer_ = make_optimizer(opt.optimizer, *model_, k, mesh.world(), shard_ ? &shards_ : nullptr);
}

Engine::~Engine() = default;

const ModelConfig& Engine::config() const { return model_->config(); }

int Engine::dp_size() const { return mesh_.shape().dp_shard * mesh_.shape().dp_replicate; }

int Engine::dp_rank() const { return mesh_.replicate_rank() * mesh_.shape().dp_shard + mesh_.shard_rank(); }

double Engine::dp_sum(double v) { return mesh_.replicate().allreduce_sum(mesh_.shard().allreduce_sum(v)); }

int64_t Engine::dp_sum(int64_t v) {
  return mesh_.replicate().allreduce_sum_i64(mesh_.shard().allreduce_sum_i64(v));
}

int64_t Engine::lockstep_count(int64_t n) {
  return mesh_.sp().allreduce_max_i64(mesh_.shard().allreduce_max_i64(n));
}

void Engine::zero_grad() {
  if (shard_) shard_->zero_grad();
  model_->zero_grad();  // skips the gradients DpShard released; resets QK-clip's max logits
}

Batch Engine::upload(const TokenBatch& b) {
  n_real_ = b.size();
  if (ulysses_) {
    TokenBatch p = b;
    pad_sequence(p.tokens, p.targets, p.positions, p.cu_seqlens, ulysses_->size());
    whole_ = make_batch(k_, p.tokens, p.targets, p.positions, p.cu_seqlens, config().vocab_size);
    local_ = ulysses_->shard(whole_);
  } else {
    whole_ = make_batch(k_, b.tokens, b.targets, b.positions, b.cu_seqlens, config().vocab_size);
    local_ = whole_;
  }
  return local_;
}

std::vector<double> Engine::whole_logp(const Tensor& local) {
  std::vector<double> out;
  if (ulysses_) {
    Tensor full = k_.alloc({whole_.n_tokens}, local.dtype());
    mesh_.sp().all_gather(full, local);
    out = to_host_f64(k_, full);
  } else {
    out = to_host_f64(k_, local);
  }
  out.resize(size_t(n_real_));
  return out;
}

Tensor Engine::local_coef(const std::vector<double>& coef) const {
  TEMPER_CHECK(int64_t(coef.size()) == n_real_, "Engine: ", coef.size(), " coefficients for a batch of ", n_real_,
               " tokens");
  std::vector<double> c = coef;
  c.resize(size_t(whole_.n_tokens), 0.0);  // Ulysses padding carries no loss
  Tensor t = to_device(k_, c, model_->stat_dtype());
  if (!ulysses_) return t;
  const int64_t n = local_.n_tokens, r = ulysses_->rank();
  return t.rows(r * n, (r + 1) * n);
}

std::vector<double> Engine::forward(const TokenBatch& b) {
  upload(b);
  Tensor logp;
  model_->forward(local_, logp);
  return whole_logp(logp);
}

void Engine::backward(const std::vector<double>& coef) {
  TEMPER_CHECK(whole_.n_tokens > 0, "Engine::backward: no forward() before it");
  model_->backward(local_, local_coef(coef));
}

std::vector<double> Engine::forward_backward(const TokenBatch& b, const std::vector<double>& coef) {
  upload(b);
  Tensor logp = k_.alloc({local_.n_tokens}, model_->stat_dtype());
  model_->forward_backward(local_, local_coef(coef), logp);  // one output-head pass
  return whole_logp(logp);
}

EngineStepStats Engine::step(double lr) {
  TEMPER_CHECK(optimizer_, "Engine::step: this engine is frozen (no optimizer)");
  if (shard_) {
    shard_->reduce_over(mesh_.replicate());  // sp and dp_shard were reduced in backward
  } else {
    if (ulysses_) allreduce_grads(*model_, mesh_.sp());  // each SP rank holds its tokens' share
    allreduce_grads(*model_, mesh_.replicate());
  }
  EngineStepStats st;
  st.grad_norm = grad_norm(k_, optimizer_->params(), shard_ ? &mesh_.shard() : nullptr);
  TEMPER_CHECK(std::isfinite(st.grad_norm), "the gradient norm is not finite (", st.grad_norm,
               "); lower ", opt_.section, ".lr");
  optimizer_->step(lr, clip_scale(st.grad_norm, opt_.grad_clip));
  if (!optimizer_->refreshes_compute()) model_->refresh_compute();  // AdamW wrote them in its update
  st.metrics = optimizer_->last_metrics();
  return st;
}

int64_t Engine::optimizer_steps() const { return optimizer_ ? optimizer_->steps_taken() : 0; }

Tensor Engine::stage(const std::string& key, const Tensor& src) {
  Tensor& h = stage_[key];
  if (!h.defined() || h.shape() != src.shape() || h.dtype() != src.dtype() || h.use_count() != 1)
    h = k_.alloc_host(src.shape(), src.dtype());
  k_.copy(h, src);
  return h;
}

void Engine::save(CheckpointState& s) {
  std::map<std::string, Tensor> moments;  // on the device (or host copies, from optimizers without state())
  if (optimizer_) optimizer_->state(moments);
  auto to_host = [this](const std::string& key, const Tensor& src) { return stage(key, src); };
  if (shard_) {  // the ranks of one shard (sp x dp_replicate) each write a part of it
    const int copies = mesh_.shape().sp * mesh_.shape().dp_replicate;
    shard_->save_pieces(moments, s.pieces, mesh_.replicate_rank() * mesh_.shape().sp + mesh_.sp_rank(), copies,
                        to_host);
  } else {  // identical on every rank: each copies and writes 1/world of every tensor
    std::map<std::string, Tensor> all = moments;
    for (auto& p : model_->params()) all["model/" + p.name] = p.value;
    const int W = mesh_.world().size(), r = mesh_.world().rank();
    for (const auto& [key, t] : all) {
      const int64_t n = t.numel(), len = (n + W - 1) / W;
      const int64_t b = std::min(n, int64_t(r) * len), e = std::min(n, b + len);
      TensorPiece p;
      p.shape = t.shape();
      p.dtype = t.dtype();
      p.offset = b;
      p.data = to_host(key, t.reshape({n}).rows(b, e));
      s.pieces[key] = p;
    }
  }
  s.u64["optim/steps"] = {uint64_t(optimizer_steps())};
}

void Engine::load(const CheckpointState& s) {
  int64_t steps = s.step;
  for (const char* key : {"optim/steps", "rl/optimizer_steps"}) {
    auto it = s.u64.find(key);
    if (it != s.u64.end() && !it->second.empty()) {
      steps = int64_t(it->second[0]);
      break;
    }
  }
  std::map<std::string, Tensor> mine;
  if (optimizer_) optimizer_->state(mine);  // the names of this optimizer's state (no copies)
  if (shard_) {  // this rank's slices of the whole tensors
    std::vector<std::string> keys;
    for (const auto& kv : mine) keys.push_back(kv.first);
    shard_->load_model(s);
    if (optimizer_) optimizer_->load(shard_->slice_moments(s, keys), steps);
  } else {
    load_model_state(*model_, k_, s);  // one tensor at a time
    model_->refresh_compute();
    if (optimizer_) {
      std::map<std::string, Tensor> state;
      for (const auto& kv : mine)
        if (s.has_tensor(kv.first)) state[kv.first] = s.read_tensor(kv.first);
      optimizer_->load(state, steps);
    }
  }
}

void Engine::begin_generation() {
  if (shard_) shard_->gather_all();  // compute dtype, layer by layer, resident until end_generation
}

void Engine::end_generation() {
  if (shard_) shard_->release_all();
}

EngineOptions engine_options_from_deck(const Deck& d, const std::string& section) {
  EngineOptions o;
  o.section = section;
  o.optimizer = optimizer_options_from_deck(d, section);
  o.grad_clip = d.get_float(section + ".grad_clip");
  o.checkpointing = checkpointing_from_deck(d);
  o.recompute = recompute_parts_from_deck(d);
  return o;
}

}  // namespace temper
