#include "train/adamw.h"

namespace temper {

Tensor to_host(Kernels& k, const Tensor& t) {
  Tensor h = Tensor::empty(t.shape(), t.dtype(), Device::CPU);
  k.copy(h, t);
  return h;
}

AdamW::AdamW(Kernels& k, std::vector<ParamRef> params, AdamWConfig cfg)
    : k_(k), params_(std::move(params)), cfg_(cfg) {
  for (const auto& p : params_) {
    TEMPER_CHECK(p.value.shape() == p.grad.shape(), "AdamW: parameter '", p.name, "' and its gradient differ in shape");
    m_.push_back(k_.alloc(p.value.shape(), p.value.dtype()));
    v_.push_back(k_.alloc(p.value.shape(), p.value.dtype()));
    k_.zero(m_.back());
    k_.zero(v_.back());
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    const ParamRef& p = params_[i];
    batch_.push_back({p.value, p.grad, m_[i], v_[i], p.compute, p.decay ? float(cfg_.weight_decay) : 0.0f});
    if (!p.compute.defined()) refreshes_ = false;
  }
}

void AdamW::step(double lr, double grad_scale) {
  ++t_;
  AdamWParams ap;  // weight decay per tensor (batch_)
  ap.lr = float(lr);
  ap.beta1 = float(cfg_.beta1);
  ap.beta2 = float(cfg_.beta2);
  ap.eps = float(cfg_.eps);
  ap.step = t_;
  ap.grad_scale = float(grad_scale);
  k_.adamw_step_many(batch_, ap);
}

void AdamW::save(std::map<std::string, Tensor>& out) const {
  for (size_t i = 0; i < params_.size(); ++i) {
    out["optim/m/" + params_[i].name] = to_host(k_, m_[i]);
    out["optim/v/" + params_[i].name] = to_host(k_, v_[i]);
  }
}

void AdamW::state(std::map<std::string, Tensor>& out) const {
  for (size_t i = 0; i < params_.size(); ++i) {
    out["optim/m/" + params_[i].name] = m_[i];
    out["optim/v/" + params_[i].name] = v_[i];
  }
}

void AdamW::load(const std::map<std::string, Tensor>& in, int64_t steps_taken) {
  for (size_t i = 0; i < params_.size(); ++i) {
    for (auto [prefix, dst] : {std::pair{"optim/m/", &m_[i]}, std::pair{"optim/v/", &v_[i]}}) {
      std::string key = prefix + params_[i].name;
      auto it = in.find(key);
      TEMPER_CHECK(it != in.end(), "checkpoint has no optimizer state '", key, "'");
      TEMPER_CHECK(it->second.shape() == dst->shape(), "checkpoint tensor '", key, "' has shape ",
                   shape_str(it->second.shape()), ", the model expects ", shape_str(dst->shape()));
      k_.copy(*dst, it->second);
    }
  }
  t_ = steps_taken;
}

}  // namespace temper
