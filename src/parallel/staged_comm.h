// StagedComm: the Comm interface on device tensors over a host communicator
// (MPI): each collective copies its device tensors into host buffers, runs the
// host collective, and copies the result back. Host tensors pass straight
// through. Slower than a device transport (two copies per collective), but it
// lets several ranks share one GPU (NCCL refuses two ranks on one device) and
// runs where NCCL is missing: `parallel.device_comm = mpi`.
// The host buffers are kept and reused (grown when a larger tensor comes), so
// a collective does not allocate and first-touch gigabytes each time; with an
// `alloc` of page-locked memory (Kernels::alloc_host) the copies run at the
// link's speed.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "parallel/comm.h"

namespace temper {

class StagedComm final : public Comm {
 public:
  // copy(dst, src): a copy between host and device memory (Kernels::copy),
  // finished when it returns.
  using Copy = std::function<void(Tensor& dst, const Tensor& src)>;
  // alloc(shape, dtype): a host tensor (default: pageable memory).
  using Alloc = std::function<Tensor(const Shape& shape, DType dtype)>;
  // sync(): waits for the backend's queued work, so totals() time the collective and not the kernels
  // before it (the copies would wait for them anyway).
  using Sync = std::function<void()>;
  StagedComm(std::unique_ptr<Comm> host, Copy copy, Alloc alloc = nullptr, Sync sync = nullptr);

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  std::string name() const override { return host_->name(); }
  Comm& host() { return *host_; }

  // What the staged collectives on device tensors cost on this rank so far:
  // calls, bytes of their inputs, wall seconds (copies and the MPI call).
  struct Totals {
    int64_t calls = 0;
    double bytes = 0, seconds = 0;
  };
  const Totals& totals() const { return totals_; }

  void allreduce(Tensor& x, ReduceOp op = ReduceOp::Sum) override;
  void reduce_scatter(Tensor& out, const Tensor& in, ReduceOp op = ReduceOp::Sum) override;
  void all_gather(Tensor& out, const Tensor& in) override;
  void all_to_all(Tensor& out, const Tensor& in) override;
  void broadcast(Tensor& x, int root) override;
  void barrier() override { host_->barrier(); }

 private:
  // Staging slot 0 holds inputs, slot 1 outputs (a collective may use both at once).
  Tensor to_host(const Tensor& t, int slot);              // a host copy (t itself when on the host)
  Tensor host_like(const Tensor& t, int slot);            // an uninitialised host tensor of t's shape
  void back(Tensor& dst, const Tensor& host) const;       // host result into dst (no-op when the same)
  std::unique_ptr<Comm> host_;
  Copy copy_;
  Alloc alloc_;
  Sync sync_;
  // One collective: `in` (and `out`, unless the same tensor: in place) staged to the host,
  // host_op(host out, host in), the result copied back into `out`; device calls counted in totals_.
  void staged(Tensor& out, const Tensor& in, const std::function<void(Tensor&, const Tensor&)>& host_op);
  void count(const Tensor& in, double seconds);          // adds a device collective to totals_
  Totals totals_;
  std::map<std::pair<int, int>, Tensor> buffers_;         // (slot, dtype) -> flat host buffer, grown on demand
};

}  // namespace temper
