#include "train/model_state.h"

namespace temper {

std::vector<ParamRef> param_refs(Decoder& model) {
  std::vector<ParamRef> refs;
  for (auto& p : model.params())
    refs.push_back({p.name, p.value, p.grad, p.decay, p.compute.raw() != p.value.raw() ? p.compute : Tensor()});
  return refs;
}

void allreduce_grads(Decoder& model, Comm& comm) {
  if (comm.size() == 1) return;
  for (auto& p : model.params()) comm.allreduce(p.grad);
}

void save_model_state(Decoder& model, Kernels& k, std::map<std::string, Tensor>& out) {
  for (auto& p : model.params()) out["model/" + p.name] = to_host(k, p.value);
}

void load_model_state(Decoder& model, Kernels& k, const CheckpointState& in) {
  for (auto& p : model.params()) {
    const std::string name = "model/" + p.name;
    TEMPER_CHECK(in.has_tensor(name), "checkpoint has no tensor '", name,
                 "': it was written by a different model (compare [model] in the deck)");
    const Shape shape = in.tensor_shape(name);
    TEMPER_CHECK(shape == p.value.shape(), "checkpoint tensor '", name, "' has shape ", shape_str(shape),
                 " but the deck's model needs ", shape_str(p.value.shape()),
                 " (vocabulary or model size differs from the checkpoint's)");
    k.copy(p.value, in.read_tensor(name));
  }
}

void load_model_state(Decoder& model, Kernels& k, const std::map<std::string, Tensor>& in) {
  for (auto& p : model.params()) {
    auto it = in.find("model/" + p.name);
    TEMPER_CHECK(it != in.end(), "checkpoint has no tensor 'model/", p.name,
                 "': it was written by a different model (compare [model] in the deck)");
    TEMPER_CHECK(it->second.shape() == p.value.shape(), "checkpoint tensor 'model/", p.name, "' has shape ",
                 shape_str(it->second.shape()), " but the deck's model needs ", shape_str(p.value.shape()),
                 " (vocabulary or model size differs from the checkpoint's)");
    k.copy(p.value, it->second);
  }
}

}  // namespace temper
