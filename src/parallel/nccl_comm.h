// NcclComm: the Comm interface on device (CUDA) tensors with NCCL, one GPU per
// rank. Built only when temper finds NCCL (TEMPER_HAVE_NCCL); elsewhere the
// factory throws "built without NCCL" and nccl_comm_supported() says why not.
//
// Setup is collective over an MPI communicator: every rank selects its GPU
// (options.device, or its rank among the ranks of its node), rank 0 creates the
// NCCL unique id, MPI broadcasts it, and ncclCommInitRankConfig joins the ranks
// (non-blocking, so that a missing rank cannot hang the job past the timeout).
//
// Every collective is queued on one stream and waited for by a watchdog that
// polls cudaStreamQuery and ncclCommGetAsyncError until the collective is done
// or options.timeout_s has passed; on expiry or on an asynchronous NCCL error
// the communicator is aborted (ncclCommAbort) and temper::Error names the
// collective, the communicator, the rank and the timeout. After an abort every
// further call throws. Collectives therefore return with their result in place.
//
// Streams: with options.stream set (the CUDA backend's stream), collectives are
// queued in order after the kernels that produced their inputs. Without it the
// communicator uses a stream of its own and synchronises the device before each
// collective (correct, slower).
//
// Host (cpu) tensors and the host conveniences (allreduce_sum, broadcast_string,
// ...) go through an MPI duplicate of the same communicator.
#pragma once
#include <mpi.h>

#include <memory>
#include <string>

#include "parallel/comm.h"

namespace temper {

struct NcclOptions {
  int device = -1;          // CUDA device of this rank; -1: the rank's index among the ranks of its node
  double timeout_s = 600;   // per collective (and for joining the communicator); > 0
  void* stream = nullptr;   // cudaStream_t to queue collectives on (e.g. CudaKernels::stream()); null: own stream
};

// True when this build has NCCL and every rank of `comm` sees a CUDA device for
// its node-local index. Collective over `comm` (all ranks get the same answer);
// `why` (when non-null) gets the reason when false.
bool nccl_comm_supported(MPI_Comm comm, std::string* why = nullptr);

class NcclComm : public Comm {
 public:
  // Collective over `comm` (which is duplicated for the host path). Throws on
  // every rank, naming the cause, when NCCL or a GPU is missing.
  static std::unique_ptr<NcclComm> create(MPI_Comm comm, std::string name, NcclOptions options = {});
  ~NcclComm() override;  // graceful finalize (bounded by the timeout), else abort
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int rank() const override;
  int size() const override;
  std::string name() const override;
  int device() const;
  double timeout_s() const;
  void set_timeout_s(double seconds);  // > 0
  bool aborted() const;
  // Aborts the NCCL communicator now (e.g. when a peer failed); later calls throw.
  void abort();

  // Device tensors (all ranks: same dtype and counts); cpu tensors go through MPI.
  // Reductions: f32, f64, bf16, f16, i32, i64, u8 (sum, max, min).
  void allreduce(Tensor& x, ReduceOp op = ReduceOp::Sum) override;
  void reduce_scatter(Tensor& out, const Tensor& in, ReduceOp op = ReduceOp::Sum) override;
  void all_gather(Tensor& out, const Tensor& in) override;
  void all_to_all(Tensor& out, const Tensor& in) override;
  void broadcast(Tensor& x, int root) override;
  void barrier() override;  // waits for this rank's queued work, then an MPI barrier

  struct Impl;  // defined in nccl_comm.cpp

 private:
  explicit NcclComm(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// create() as a Comm.
std::unique_ptr<Comm> make_nccl_comm(MPI_Comm comm, const std::string& name, const NcclOptions& options = {});

}  // namespace temper
