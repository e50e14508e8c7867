// Deadlines for MPI collectives (parallel.comm_timeout, the same key NCCL's use):
// MpiComm starts every collective non-blocking and waits for it here. A rank still
// waiting at the deadline asks the other members of the communicator where they
// are (point-to-point on MPI_COMM_WORLD with tags of its own; every rank waiting in
// any collective answers), then throws an Error naming the collective and the ranks
// that did not arrive: main prints it and aborts the job. A rank that is stopped
// (SIGSTOP), dead or busy outside MPI for the whole wait cannot answer and is named
// as not responding.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace temper {

class CollectiveDeadline {
 public:
  // Registers the communicator (so that this rank can answer questions about it).
  CollectiveDeadline(MPI_Comm comm, const std::string& name);
  ~CollectiveDeadline();
  CollectiveDeadline(const CollectiveDeadline&) = delete;
  CollectiveDeadline& operator=(const CollectiveDeadline&) = delete;

  // Seconds a collective may take; <= 0: no deadline (plain MPI_Wait).
  void set_timeout(double seconds) { timeout_s_ = seconds; }
  double timeout() const { return timeout_s_; }

  // Waits for `req`, the collective `coll` just started on the communicator. Returns
  // MPI's code; throws temper::Error when the deadline passes first.
  int wait(MPI_Request* req, const char* coll);

  // Answers the questions other ranks sent (called while waiting; harmless elsewhere).
  static void answer_queries();

 private:
  [[noreturn]] void report_timeout(MPI_Request* req, const char* coll);

  uint64_t key_ = 0;              // the same on every member: name + member world ranks
  std::string name_;
  std::vector<int> world_ranks_;  // world rank of each member, by rank in the communicator
  int rank_ = 0;
  int64_t seq_ = 0;               // collectives started on this communicator
  const char* waiting_in_ = nullptr;
  double timeout_s_ = 0;
};

}  // namespace temper
