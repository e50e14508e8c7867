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
  void load(const std::map<std::string, Tensor>& in, int64_t steps) override { opt_.load(in, steps); }
  const std::vector<ParamRef>& params() const override { return opt_.params(); }

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

namespace {
AdamWConfig adamw_config(const Deck& d, const std::string& section) {
  AdamWConfig acfg;
  acfg.beta1 = d.get_float("sft.beta1");
  acfg.beta2 = d.get_float("sft.beta2");
  acfg.eps = d.get_float("sft.adam_eps");
  acfg.weight_decay = d.get_float(section + ".weight_decay");
  return acfg;
}
}  // namespace

std::unique_ptr<Optimizer> make_muon(const Deck& d, const std::string& section, std::vector<ParamRef> refs,
                                     const std::map<std::string, Shape>& shapes, Kernels& k, Comm* shard) {
  MuonConfig mc;
  mc.momentum = d.get_float("sft.muon_momentum");
  mc.nesterov = d.get_bool("sft.muon_nesterov");
  mc.ns_steps = int(d.get_int("sft.muon_ns_steps"));
  mc.update_scale = d.get_float("sft.muon_update_scale");
  mc.adamw = adamw_config(d, section);
  mc.weight_decay = mc.adamw.weight_decay;
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

std::unique_ptr<Optimizer> make_optimizer(const Deck& d, const std::string& section, Decoder& model, Kernels& k,
                                          Comm& world, const ShardedParams* sharded) {
  const std::string kind = d.get_string(section + ".optimizer");
  std::vector<ParamRef> refs = sharded ? sharded->refs : param_refs(model);
  std::unique_ptr<Optimizer> opt;
  if (kind == "adamw") {
    opt = make_adamw(k, std::move(refs), adamw_config(d, section));
  } else if (kind == "muon") {
    std::map<std::string, Shape> shapes;
    if (sharded) shapes = sharded->shapes;
    else
      for (const auto& p : model.params()) shapes[p.name] = p.value.shape();
    opt = make_muon(d, section, std::move(refs), shapes, k, sharded ? sharded->shard : nullptr);
  } else {
    fail(d.source(), ": ", section, ".optimizer = '", kind, "' (", d.where(section + ".optimizer"),
         ") is not one of adamw, muon");
  }
  const double tau = d.get_float(section + ".qk_clip_tau");
  if (tau > 0) {
    if (model.config().qk_norm && world.rank() == 0)
      log_warn(section, ".qk_clip_tau with model.qk_norm: the per-head RMSNorm would undo a W_q/W_k rescale, so "
               "QK-clip only reports max_logit here and changes no weight (the shared norm weights are not touched)");
    opt = std::make_unique<QkClipped>(std::move(opt), model, k, world, tau, sharded);
  }
  return opt;
}

}  // namespace temper
