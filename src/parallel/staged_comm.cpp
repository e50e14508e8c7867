// Device collectives staged through host memory (see staged_comm.h).
#include "parallel/staged_comm.h"

#include "core/error.h"

namespace temper {

StagedComm::StagedComm(std::unique_ptr<Comm> host, Copy copy) : host_(std::move(host)), copy_(std::move(copy)) {
  TEMPER_CHECK(host_ && copy_, "StagedComm: needs a host communicator and a copy function");
}

Tensor StagedComm::host_like(const Tensor& t) const { return Tensor::empty(t.shape(), t.dtype(), Device::CPU); }

Tensor StagedComm::to_host(const Tensor& t) const {
  if (t.device() == Device::CPU) return t;
  Tensor h = host_like(t);
  copy_(h, t);
  return h;
}

void StagedComm::back(Tensor& dst, const Tensor& host) const {
  if (dst.device() == Device::CPU) return;  // host tensors were used in place
  copy_(dst, host);
}

void StagedComm::allreduce(Tensor& x, ReduceOp op) {
  Tensor h = to_host(x);
  host_->allreduce(h, op);
  back(x, h);
}

void StagedComm::reduce_scatter(Tensor& out, const Tensor& in, ReduceOp op) {
  Tensor hi = to_host(in), ho = out.device() == Device::CPU ? out : host_like(out);
  host_->reduce_scatter(ho, hi, op);
  back(out, ho);
}

void StagedComm::all_gather(Tensor& out, const Tensor& in) {
  Tensor hi = to_host(in), ho = out.device() == Device::CPU ? out : host_like(out);
  host_->all_gather(ho, hi);
  back(out, ho);
}

void StagedComm::all_to_all(Tensor& out, const Tensor& in) {
  Tensor hi = to_host(in), ho = out.device() == Device::CPU ? out : host_like(out);
  host_->all_to_all(ho, hi);
  back(out, ho);
}

void StagedComm::broadcast(Tensor& x, int root) {
  Tensor h = to_host(x);
  host_->broadcast(h, root);
  back(x, h);
}

}  // namespace temper
