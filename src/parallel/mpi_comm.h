// MpiComm: the Comm interface on host (CPU) tensors over an MPI communicator.
// dtypes f32, f64, i32, i64, u8 and bf16 (bf16 reductions go through
// user-defined MPI ops that add/compare in float); f16 moves but does not reduce.
// Element counts above the MPI int limit are split into pieces.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>

#include "parallel/comm.h"
#include "parallel/mpi_deadline.h"

namespace temper {

class MpiComm : public Comm {
 public:
  // Wraps `comm`. With take_ownership the communicator is freed on destruction
  // and its error handler is set to return codes (turned into temper::Error);
  // without, the caller's communicator is used as is.
  MpiComm(MPI_Comm comm, std::string name, bool take_ownership);
  // Duplicates `comm` (temper's traffic never matches the caller's messages) and owns the copy. Collective.
  static std::unique_ptr<MpiComm> dup(MPI_Comm comm, std::string name);
  ~MpiComm() override;
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return name_; }
  MPI_Comm handle() const { return comm_; }

  void allreduce(Tensor& x, ReduceOp op = ReduceOp::Sum) override;
  void reduce_scatter(Tensor& out, const Tensor& in, ReduceOp op = ReduceOp::Sum) override;
  void all_gather(Tensor& out, const Tensor& in) override;
  void all_to_all(Tensor& out, const Tensor& in) override;
  void broadcast(Tensor& x, int root) override;
  void barrier() override;

  // Largest element count passed to one MPI call (default and ceiling: 2^30).
  // Tests lower it to exercise the piecewise paths; set it equally on every rank.
  void set_max_chunk_elems(int64_t n);
  int64_t max_chunk_elems() const { return max_chunk_; }

  // Seconds each collective may take before this rank throws an Error naming it and the
  // ranks that did not arrive (parallel.comm_timeout); <= 0: wait forever. Set it equally
  // on every rank.
  void set_timeout(double seconds) { deadline_.set_timeout(seconds); }
  double timeout() const { return deadline_.timeout(); }

 private:
  void check_mpi(int rc, const char* call) const;
  void check_host(const char* coll, const Tensor& t, const char* role) const;
  MPI_Op resolve_op(const char* coll, DType dt, ReduceOp op) const;
  int64_t staged_piece(size_t elem_bytes) const;  // piece length for paths that pack size × piece

  MPI_Comm comm_ = MPI_COMM_NULL;
  std::string name_;
  bool owned_ = false;
  int rank_ = 0, size_ = 1;
  MPI_Op bf16_sum_ = MPI_OP_NULL, bf16_max_ = MPI_OP_NULL, bf16_min_ = MPI_OP_NULL;
  int64_t max_chunk_ = int64_t(1) << 30;
  CollectiveDeadline deadline_;
};

}  // namespace temper
