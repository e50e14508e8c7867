// AsyncCheckpointWriter: writes checkpoints in a background thread while
// training continues. At most one write is in flight: submit() first waits for
// the previous one. The write is CheckpointStore::write(state, comm), collective
// over a communicator that only this writer uses (MPI must provide
// MPI_THREAD_MULTIPLE when it has more than one rank), so its collectives never
// meet the training's. A process killed in the middle leaves at most the
// `.partial` file: the previous checkpoint stays the newest complete one.
#pragma once
#include <mpi.h>

#include <chrono>
#include <exception>
#include <string>
#include <thread>

#include "io/checkpoint.h"

namespace temper {

class AsyncCheckpointWriter {
 public:
  // `comm` (may be MPI_COMM_NULL for one process) must outlive the writer.
  AsyncCheckpointWriter(const CheckpointStore& store, MPI_Comm comm);
  // Waits for the write in flight; an error is logged, not thrown.
  ~AsyncCheckpointWriter();
  AsyncCheckpointWriter(const AsyncCheckpointWriter&) = delete;
  AsyncCheckpointWriter& operator=(const AsyncCheckpointWriter&) = delete;

  // Waits for the write in flight (throwing its error), then starts writing `s`
  // (its tensors are kept alive until written). Returns the final path it will have.
  std::string submit(CheckpointState s);
  // Waits for the write in flight; throws its error (on every rank). Returns its
  // path, "" when nothing was in flight.
  std::string wait();
  bool in_flight() const { return thread_.joinable(); }

  // Whether this process may write in the background: a single rank, or MPI
  // initialised with MPI_THREAD_MULTIPLE.
  static bool supported(MPI_Comm comm, std::string* why = nullptr);

 private:
  const CheckpointStore& store_;
  MPI_Comm comm_;
  std::thread thread_;
  std::exception_ptr error_;
  std::string path_;
};

}  // namespace temper
