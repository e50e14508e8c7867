// The optimizer factory (see optimizer.h): AdamW, Muon, and the QK-clip wrapper.
#include "train/optimizer.h"

#include "core/log.h"
#include "deck/deck.h"
#include "model/decoder.h"
#include "parallel/comm.h"
#include "train/model_state.h"
#include "train/muon.h"
#include "train/qk_clip.h"

namespace temper {

namespace {

class AdamWOptimizer final : public Optimizer {
 public:
  AdamWOptimizer(Kernels& k, std::vector<ParamRef> params, AdamWConfig cfg) : opt_(k, std::move(params), cfg) {}
  std::string name() const override { return "adamw"; }
  void step(double lr, double grad_scale) override { opt_.step(lr, grad_scale); }
  int64_t steps_taken() const override { return opt_.steps_taken(); }
  void save(std::map<std::string, Tensor>& out) const override { opt_.save(out); }
  void state(std::map<std::string, Tensor>& out) const override { opt_.state(out); }
  void load(const std::map<std::string, Tensor>& in, int64_t steps) override { opt_.load(in, steps); }
  const std::vector<ParamRef>& params() const override { return opt_.params(); }
  bool refreshes_compute() const override { return opt_.refreshes_compute(); }

 private:
  AdamW opt_;
};

// Any optimizer followed by QK-clip on the model it updates.
class QkClipped final : public Optimizer {
 public:
  // sharded: scale the W_q / W_k slices this rank holds; null: the model's whole tensors.
  QkClipped(std::unique_ptr<Optimizer> inner, Decoder& model, Kernels& k, Comm& comm, double tau,
            const ShardedParams* sharded)
      : inner_(std::move(inner)), model_(model), k_(k), comm_(comm), tau_(tau) {
    model_.set_record_max_logits(true);
    if (sharded) {
      shapes_ = sharded->shapes;
      for (const auto& r : sharded->refs) slices_[r.name] = r;
      scale_ = sliced_row_scaler(k_, slices_, shapes_, sharded->shard->rank(), sharded->shard->size());
    } else {
      scale_ = [this](const std::string& name, int64_t b, int64_t e, double s) {
        Tensor rows = model_.param(name).value.rows(b, e);
        k_.axpby(rows, 0.0, rows, s);
      };
    }
  }
  std::string name() const override { return inner_->name() + "+qk_clip"; }
  void step(double lr, double grad_scale) override {
    inner_->step(lr, grad_scale);
    last_ = qk_clip(model_.config(), gathered_max_logits(model_, k_, &comm_), tau_, scale_);
  }
  int64_t steps_taken() const override { return inner_->steps_taken(); }
  void save(std::map<std::string, Tensor>& out) const override { inner_->save(out); }
  void state(std::map<std::string, Tensor>& out) const override { inner_->state(out); }
  void load(const std::map<std::string, Tensor>& in, int64_t steps) override { inner_->load(in, steps); }
  const std::vector<ParamRef>& params() const override { return inner_->params(); }
  std::map<std::string, double> last_metrics() const override {
    return {{"max_logit", last_.max_logit}, {"qk_clipped", double(last_.heads_clipped)}};
  }

 private:
  std::unique_ptr<Optimizer> inner_;
  Decoder& model_;
  Kernels& k_;
  Comm& comm_;
  double tau_;
  std::map<std::string, ParamRef> slices_;
  std::map<std::string, Shape> shapes_;
  QkRowScaler scale_;
  QkClipStats last_;
};

}  // namespace

std::unique_ptr<Optimizer> make_adamw(Kernels& k, std::vector<ParamRef> params, AdamWConfig cfg) {
  return std::make_unique<AdamWOptimizer>(k, std::move(params), cfg);
}

OptimizerOptions optimizer_options_from_deck(const Deck& d, const std::string& section) {
  auto key = [&](const char* k) { return section + "." + k; };
  OptimizerOptions o;
  o.kind = d.get_string(key("optimizer")) == "muon" ? OptimizerKind::Muon : OptimizerKind::AdamW;
  o.adamw.beta1 = d.get_float(key("beta1"));
  o.adamw.beta2 = d.get_float(key("beta2"));
  o.adamw.eps = d.get_float(key("adam_eps"));
  o.adamw.weight_decay = d.get_float(key("weight_decay"));
  o.muon.momentum = d.get_float(key("muon_momentum"));
  o.muon.nesterov = d.get_bool(key("muon_nesterov"));
  o.muon.ns_steps = int(d.get_int(key("muon_ns_steps")));
  o.muon.update_scale = d.get_float(key("muon_update_scale"));
  o.muon.adamw = o.adamw;
  o.muon.weight_decay = o.adamw.weight_decay;
  o.qk_clip_tau = d.get_float(key("qk_clip_tau"));
  return o;
}

std::unique_ptr<Optimizer> make_muon(const MuonConfig& mc, std::vector<ParamRef> refs,
                                     const std::map<std::string, Shape>& shapes, Kernels& k, Comm* shard) {
  std::vector<MuonParam> ps;
  for (auto& r : refs) {
    auto it = shapes.find(r.name);
    TEMPER_CHECK(it != shapes.end(), "make_muon: no shape given for parameter '", r.name, "'");
    const Shape shape = it->second;
    const bool m = muon_eligible(r.name, shape);
    ps.push_back({std::move(r), shape, m});
  }
  return std::make_unique<Muon>(k, std::move(ps), mc, shard);
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerOptions& o, Decoder& model, Kernels& k, Comm& world,
                                          const ShardedParams* sharded) {
  std::vector<ParamRef> refs = sharded ? sharded->refs : param_refs(model);
  std::unique_ptr<Optimizer> opt;
  if (o.kind == OptimizerKind::AdamW) {
    opt = make_adamw(k, std::move(refs), o.adamw);
  } else {
    std::map<std::string, Shape> shapes;
    if (sharded) shapes = sharded->shapes;
    else
      for (const auto& p : model.params()) shapes[p.name] = p.value.shape();
    opt = make_muon(o.muon, std::move(refs), shapes, k, sharded ? sharded->shard : nullptr);
  }
  const double tau = o.qk_clip_tau;
  if (tau > 0) {
    if (model.config().qk_norm && world.rank() == 0)
      log_warn("qk_clip_tau with model.qk_norm: the per-head RMSNorm would undo a W_q/W_k rescale, so "
               "QK-clip only reports max_logit here and changes no weight (the shared norm weights are not touched)");
    opt = std::make_unique<QkClipped>(std::move(opt), model, k, world, tau, sharded);
  }
  return opt;
}

}  // namespace temper
