// DpShard: ZeRO-3 style parameter / gradient / optimizer-state sharding (see the header).
#include "parallel/dp_shard.h"

#include <cstring>

#include "core/error.h"

namespace temper {

namespace {

Tensor host_copy(Kernels& k, const Tensor& t) {
  Tensor h = Tensor::empty(t.shape(), t.dtype(), Device::CPU);
  k.copy(h, t);
  return h;
}

// Block index from a parameter name ("layers.7.attn.q.weight" -> 7); kEmbed for the
// embedding, kHead for the final norm and an untied head.
int group_of(const std::string& name) {
  static const std::string pre = "layers.";
  if (name == "embed") return LayerParamHooks::kEmbed;
  if (name.compare(0, pre.size(), pre) != 0) return LayerParamHooks::kHead;
  const size_t dot = name.find('.', pre.size());
  TEMPER_CHECK(dot != std::string::npos, "DpShard: unexpected parameter name '", name, "'");
  return std::stoi(name.substr(pre.size(), dot - pre.size()));
}

}  // namespace

DpShard::DpShard(Decoder& model, Kernels& k, Comm& shard, Comm* sp)
    : model_(model), k_(k), shard_(shard), sp_(sp), S_(shard.size()), r_(shard.rank()) {
  const int L = model.config().n_layers;
  groups_.assign(size_t(L + 2), {});
  auto& params = model.params();
  pieces_.reserve(params.size());
  for (auto& p : params) {
    TEMPER_CHECK(p.value.defined() && p.grad.defined(), "DpShard: parameter '", p.name,
                 "' is not resident (the model is already sharded?)");
    Piece x;
    x.p = &p;
    x.shape = p.value.shape();
    x.numel = p.value.numel();
    x.len = (x.numel + S_ - 1) / S_;
    x.padded = x.len * S_;
    x.group = group_of(p.name);
    TEMPER_CHECK(x.group >= kHead && x.group < L, "DpShard: parameter '", p.name, "' names no layer of ", L);
    x.master = k_.alloc({x.len}, p.value.dtype());
    x.grad = k_.alloc({x.len}, p.grad.dtype());
    k_.zero(x.master);
    k_.zero(x.grad);
    // This rank's slice of the (replicated) initial value; the padded tail stays 0.
    const int64_t begin = std::min<int64_t>(x.numel, int64_t(r_) * x.len);
    const int64_t end = std::min<int64_t>(x.numel, begin + x.len);
    if (end > begin) {
      Tensor dst = x.master.rows(0, end - begin);
      k_.copy(dst, p.value.reshape({x.numel}).rows(begin, end));
    }
    pieces_.push_back(std::move(x));
  }
  for (auto& x : pieces_) {
    release(x);
    groups_[size_t(x.group + 2)].push_back(&x);
    if (x.group == kEmbed && model.config().tie_embeddings) groups_[size_t(kHead + 2)].push_back(&x);
  }
  model_.set_param_hooks(this);
}

DpShard::~DpShard() {
  if (model_.param_hooks() == this) model_.set_param_hooks(nullptr);
}

std::vector<DpShard::Piece*>& DpShard::group(int layer) {
  TEMPER_CHECK(layer >= kHead && layer + 2 < int(groups_.size()), "DpShard: no layer ", layer);
  return groups_[size_t(layer + 2)];
}

void DpShard::gather(Piece& x) {
  const DType cd = model_.compute_dtype();
  Tensor src = x.master;
  if (cd != x.master.dtype()) {  // the compute dtype's shard (bf16 on cuda), then gathered
    src = k_.alloc({x.len}, cd);
    k_.copy(src, x.master);
  }
  Tensor full = k_.alloc({x.padded}, cd);
  shard_.all_gather(full, src);
  x.p->compute = full.rows(0, x.numel).reshape(x.shape);
  x.p->value = cd == x.master.dtype() ? x.p->compute : Tensor();
}

void DpShard::release(Piece& x) {
  x.p->value = Tensor();
  x.p->compute = Tensor();
  x.p->grad = Tensor();
  x.full_grad = Tensor();
}

void DpShard::scatter_grad(Piece& x) {
  // x.p->grad is a view of the first numel elements of the zero-padded flat buffer
  // x.full_grad (before_backward), which is reduced whole.
  TEMPER_CHECK(x.full_grad.defined(), "DpShard: no full gradient of '", x.p->name, "' to reduce");
  Tensor& full = x.full_grad;
  if (sp_ && sp_->size() > 1) sp_->allreduce(full);
  Tensor mine = k_.alloc({x.len}, x.grad.dtype());
  shard_.reduce_scatter(mine, full);
  k_.add_inplace(x.grad, mine);
  x.full_grad = Tensor();
  x.p->grad = Tensor();
}

void DpShard::before_forward(int layer) {
  if (pinned_) return;
  for (Piece* x : group(layer)) gather(*x);
}

void DpShard::after_forward(int layer) {
  if (pinned_) return;
  for (Piece* x : group(layer)) release(*x);
}

void DpShard::before_backward(int layer) {
  for (Piece* x : group(layer)) {
    if (!pinned_ && layer != kEmbed) gather(*x);  // the embedding's backward reads no weights
    Tensor full = k_.alloc({x->padded}, x->grad.dtype());
    k_.zero(full);  // the padded tail must reduce to zeros
    x->p->grad = full.rows(0, x->numel).reshape(x->shape);
    x->full_grad = full;
  }
}

void DpShard::after_backward(int layer) {
  for (Piece* x : group(layer)) {
    scatter_grad(*x);
    if (!pinned_) release(*x);
  }
}

std::vector<ParamRef> DpShard::param_refs() {
  std::vector<ParamRef> refs;
  for (auto& x : pieces_) refs.push_back({x.p->name, x.master, x.grad, x.p->decay});
  return refs;
}

void DpShard::zero_grad() {
  for (auto& x : pieces_) k_.zero(x.grad);
}

void DpShard::reduce_over(Comm& comm) {
  if (comm.size() == 1) return;
  for (auto& x : pieces_) comm.allreduce(x.grad);
}

void DpShard::gather_all() {
  if (pinned_) return;
  for (auto& x : pieces_) gather(x);
  pinned_ = true;
}

void DpShard::release_all() {
  if (!pinned_) return;
  pinned_ = false;
  for (auto& x : pieces_) release(x);
}

Tensor DpShard::full_host(const Piece& x, const Tensor& shard_host) const {
  TEMPER_CHECK(shard_host.numel() == x.len, "DpShard: shard of '", x.p->name, "' has ", shard_host.numel(),
               " elements, expected ", x.len);
  Tensor mine = k_.alloc({x.len}, shard_host.dtype());
  k_.copy(mine, shard_host.reshape({x.len}));
  Tensor full = k_.alloc({x.padded}, shard_host.dtype());
  shard_.all_gather(full, mine);
  return host_copy(k_, full.rows(0, x.numel).reshape(x.shape));
}

Tensor DpShard::slice_host(const Piece& x, const CheckpointState& in, const std::string& key) const {
  const Shape shape = in.tensor_shape(key);
  TEMPER_CHECK(shape == x.shape, "checkpoint tensor '", key, "' has shape ", shape_str(shape),
               " but the deck's model needs ", shape_str(x.shape),
               " (vocabulary or model size differs from the checkpoint's)");
  const int64_t begin = std::min<int64_t>(x.numel, int64_t(r_) * x.len);
  const int64_t end = std::min<int64_t>(x.numel, begin + x.len);
  Tensor mine = in.read_range(key, begin, end);  // only this rank's elements are read
  Tensor out = Tensor::empty({x.len}, mine.dtype(), Device::CPU);
  const size_t es = dtype_size(mine.dtype());
  std::memset(out.raw(), 0, size_t(x.len) * es);
  if (end > begin) std::memcpy(out.raw(), mine.raw(), size_t(end - begin) * es);
  return out;
}

void DpShard::save_pieces(const std::map<std::string, Tensor>& moments, std::map<std::string, TensorPiece>& out,
                          int copy, int copies, const HostCopy& to_host) const {
  TEMPER_CHECK(copies >= 1 && copy >= 0 && copy < copies, "DpShard::save_pieces: part ", copy, " of ", copies);
  auto piece = [&](const Piece& x, const Tensor& shard, const std::string& key) {
    TEMPER_CHECK(shard.numel() == x.len, "DpShard: shard of '", key, "' has ", shard.numel(),
                 " elements, expected ", x.len);
    const int64_t b = std::min<int64_t>(x.numel, int64_t(r_) * x.len);
    const int64_t n = std::min<int64_t>(x.numel, b + x.len) - b;  // real elements of this shard
    const int64_t part = (n + copies - 1) / copies;
    const int64_t lo = std::min(n, int64_t(copy) * part), hi = std::min(n, lo + part);
    TensorPiece p;
    p.shape = x.shape;
    p.dtype = shard.dtype();
    p.offset = b + lo;
    p.data = to_host(key, shard.reshape({x.len}).rows(lo, hi));  // only this rank's part leaves the device
    out[key] = p;
  };
  for (const auto& x : pieces_) piece(x, x.master, "model/" + x.p->name);
  for (const auto& [key, shard] : moments) piece(piece_of_moment(key), shard, key);
}

void DpShard::save_state(const std::map<std::string, Tensor>& moments, std::map<std::string, Tensor>& out,
                         bool keep) const {
  for (const auto& x : pieces_) {
    Tensor t = full_host(x, host_copy(k_, x.master));
    if (keep) out["model/" + x.p->name] = t;
  }
  for (const auto& [key, shard] : moments) {
    const Piece& x = piece_of_moment(key);
    Tensor m = full_host(x, shard);
    if (keep) out[key] = m;
  }
}

const DpShard::Piece& DpShard::piece_of_moment(const std::string& key) const {
  const size_t slash = key.find('/', key.find('/') + 1);  // "optim/<kind>/<name>"
  TEMPER_CHECK(key.rfind("optim/", 0) == 0 && slash != std::string::npos,
               "DpShard: optimizer state '", key, "' is not named optim/<kind>/<parameter>");
  const std::string name = key.substr(slash + 1);
  for (const auto& x : pieces_)
    if (x.p->name == name) return x;
  fail("DpShard: optimizer state '", key, "' names no parameter of the model");
}

void DpShard::load_model(const std::map<std::string, Tensor>& in) {
  CheckpointState s;
  s.tensors = in;
  load_model(s);
}

void DpShard::load_model(const CheckpointState& in) {
  for (auto& x : pieces_) {
    const std::string key = "model/" + x.p->name;
    TEMPER_CHECK(in.has_tensor(key), "checkpoint has no tensor '", key,
                 "': it was written by a different model (compare [model] in the deck)");
    k_.copy(x.master, slice_host(x, in, key));
  }
  if (pinned_) {  // keep the resident copies in step with the new masters
    pinned_ = false;
    gather_all();
  }
}

std::map<std::string, Tensor> DpShard::slice_moments(const std::map<std::string, Tensor>& in,
                                                     const std::vector<std::string>& keys) const {
  CheckpointState s;
  s.tensors = in;
  return slice_moments(s, keys);
}

std::map<std::string, Tensor> DpShard::slice_moments(const CheckpointState& in,
                                                     const std::vector<std::string>& keys) const {
  std::map<std::string, Tensor> moments;
  for (const auto& key : keys) {
    TEMPER_CHECK(in.has_tensor(key), "checkpoint has no optimizer state '", key,
                 "' (was it written with another sft.optimizer?)");
    moments[key] = slice_host(piece_of_moment(key), in, key);
  }
  return moments;
}

int64_t DpShard::resident_shard_bytes() const {
  int64_t b = 0;
  for (const auto& x : pieces_) b += int64_t(x.master.nbytes() + x.grad.nbytes());
  return b;
}

}  // namespace temper
