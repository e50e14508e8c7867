// StagedComm: the Comm interface on device tensors over a host communicator
// (MPI): each collective copies its device tensors into host buffers, runs the
// host collective, and copies the result back. Host tensors pass straight
// through. Slower than a device transport (two copies per collective), but it
// lets several ranks share one GPU (NCCL refuses two ranks on one device) and
// runs where NCCL is missing: `parallel.device_comm = mpi`.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "parallel/comm.h"

namespace temper {

class StagedComm final : public Comm {
 public:
  // copy(dst, src): a copy between host and device memory (Kernels::copy),
  // finished when it returns.
  using Copy = std::function<void(Tensor& dst, const Tensor& src)>;
  StagedComm(std::unique_ptr<Comm> host, Copy copy);

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  std::string name() const override { return host_->name(); }
  Comm& host() { return *host_; }

  void allreduce(Tensor& x, ReduceOp op = ReduceOp::Sum) override;
  void reduce_scatter(Tensor& out, const Tensor& in, ReduceOp op = ReduceOp::Sum) override;
  void all_gather(Tensor& out, const Tensor& in) override;
  void all_to_all(Tensor& out, const Tensor& in) override;
  void broadcast(Tensor& x, int root) override;
  void barrier() override { host_->barrier(); }

 private:
  Tensor to_host(const Tensor& t) const;                  // a host copy (t itself when on the host)
  Tensor host_like(const Tensor& t) const;                // an uninitialised host tensor of t's shape
  void back(Tensor& dst, const Tensor& host) const;       // host result into dst (no-op when the same)
  std::unique_ptr<Comm> host_;
  Copy copy_;
};

}  // namespace temper
