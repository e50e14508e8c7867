// Comm: the collective-communication interface the training code uses. It is
// device-neutral and names no transport: mpi_comm implements it on host
// tensors, an NCCL implementation will implement it on device buffers.
//
// Every collective is called by every rank of the communicator, in the same
// order, with tensors of the same dtype and element count on every rank.
// Tensors are dense; shapes do not matter, only element counts.
#pragma once
#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace temper {

enum class ReduceOp { Sum, Max, Min };
const char* reduce_op_name(ReduceOp op);  // "sum", "max", "min"

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;  // "world", "sp", "dp_shard", "dp_replicate"

  // x <- op over all ranks of x, in place.
  virtual void allreduce(Tensor& x, ReduceOp op = ReduceOp::Sum) = 0;
  // in.numel == size * out.numel; rank r receives the reduction of chunk r of every rank's in.
  virtual void reduce_scatter(Tensor& out, const Tensor& in, ReduceOp op = ReduceOp::Sum) = 0;
  // out.numel == size * in.numel; chunk r of out is rank r's in (rank order).
  virtual void all_gather(Tensor& out, const Tensor& in) = 0;
  // in and out hold size equal chunks: chunk j of in goes to rank j; chunk i of out came from rank i.
  virtual void all_to_all(Tensor& out, const Tensor& in) = 0;
  // x on every rank <- x of rank `root`.
  virtual void broadcast(Tensor& x, int root) = 0;
  virtual void barrier() = 0;

  // ---- host conveniences (scalars and strings living in host memory) ------
  // Virtual so that a device communicator can route them through a host path.
  virtual double allreduce_sum(double v);
  virtual double allreduce_max(double v);
  virtual double allreduce_min(double v);
  virtual int64_t allreduce_sum_i64(int64_t v);
  virtual int64_t allreduce_max_i64(int64_t v);
  // s on every rank <- s of rank `root` (any length, any bytes).
  virtual void broadcast_string(std::string& s, int root);
};

}  // namespace temper
