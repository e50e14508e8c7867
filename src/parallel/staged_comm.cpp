// Device collectives staged through host memory (see staged_comm.h).
#include "parallel/staged_comm.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace temper {

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
bool on_device(const Tensor& t) { return t.device() != Device::CPU; }
}  // namespace

void StagedComm::count(const Tensor& in, double seconds) {
  ++totals_.calls;
  totals_.bytes += double(in.nbytes());
  totals_.seconds += seconds;
}

StagedComm::StagedComm(std::unique_ptr<Comm> host, Copy copy, Alloc alloc, Sync sync)
    : host_(std::move(host)), copy_(std::move(copy)), alloc_(std::move(alloc)), sync_(std::move(sync)) {
  TEMPER_CHECK(host_ && copy_, "StagedComm: needs a host communicator and a copy function");
  if (!alloc_) alloc_ = [](const Shape& s, DType d) { return Tensor::empty(s, d, Device::CPU); };
}

Tensor StagedComm::host_like(const Tensor& t, int slot) {
  const int64_t n = t.numel();
  Tensor& buf = buffers_[{slot, int(t.dtype())}];
  if (!buf.defined() || buf.numel() < n) {
    buf = Tensor();  // free the smaller one first
    buf = alloc_({std::max<int64_t>(n, 1)}, t.dtype());
    TEMPER_CHECK(buf.device() == Device::CPU && buf.numel() >= n, "StagedComm: the host allocator returned ",
                 buf.numel(), " elements for ", n);
  }
  return buf.rows(0, n).reshape(t.shape());
}

Tensor StagedComm::to_host(const Tensor& t, int slot) {
  if (t.device() == Device::CPU) return t;
  Tensor h = host_like(t, slot);
  copy_(h, t);
  return h;
}

void StagedComm::back(Tensor& dst, const Tensor& host) const {
  if (dst.device() == Device::CPU) return;  // host tensors were used in place
  copy_(dst, host);
}

void StagedComm::staged(Tensor& out, const Tensor& in, const std::function<void(Tensor&, const Tensor&)>& host_op) {
  const bool device = on_device(in);
  if (device && sync_) sync_();
  const double t0 = now();
  Tensor hi = to_host(in, 0);
  Tensor ho = &out == &in ? hi : on_device(out) ? host_like(out, 1) : out;
  host_op(ho, hi);
  back(out, ho);
  if (device) count(in, now() - t0);
}

void StagedComm::allreduce(Tensor& x, ReduceOp op) {
  staged(x, x, [&](Tensor& h, const Tensor&) { host_->allreduce(h, op); });
}

void StagedComm::reduce_scatter(Tensor& out, const Tensor& in, ReduceOp op) {
  staged(out, in, [&](Tensor& ho, const Tensor& hi) { host_->reduce_scatter(ho, hi, op); });
}

void StagedComm::all_gather(Tensor& out, const Tensor& in) {
  staged(out, in, [&](Tensor& ho, const Tensor& hi) { host_->all_gather(ho, hi); });
}

void StagedComm::all_to_all(Tensor& out, const Tensor& in) {
  staged(out, in, [&](Tensor& ho, const Tensor& hi) { host_->all_to_all(ho, hi); });
}

void StagedComm::broadcast(Tensor& x, int root) {
  staged(x, x, [&](Tensor& h, const Tensor&) { host_->broadcast(h, root); });
}

}  // namespace temper
