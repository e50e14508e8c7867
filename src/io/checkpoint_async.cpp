// AsyncCheckpointWriter (see the header).
#include "io/checkpoint_async.h"

#include <cstdio>

#include "core/log.h"

namespace temper {

AsyncCheckpointWriter::AsyncCheckpointWriter(const CheckpointStore& store, MPI_Comm comm)
    : store_(store), comm_(comm) {}

AsyncCheckpointWriter::~AsyncCheckpointWriter() {
  try {
    wait();
  } catch (const std::exception& e) {
    log_warn("checkpoint written in the background failed: ", e.what());
  }
}

bool AsyncCheckpointWriter::supported(MPI_Comm comm, std::string* why) {
  int size = 1;
  if (comm != MPI_COMM_NULL) MPI_Comm_size(comm, &size);
  if (size <= 1) return true;
  int provided = MPI_THREAD_SINGLE;
  MPI_Query_thread(&provided);
  if (provided == MPI_THREAD_MULTIPLE) return true;
  if (why) *why = "MPI was not initialised with MPI_THREAD_MULTIPLE";
  return false;
}

std::string AsyncCheckpointWriter::submit(CheckpointState s) {
  wait();
  path_ = store_.path_for(s.step);
  error_ = nullptr;
  thread_ = std::thread([this, st = std::move(s)]() mutable {
    try {
      const auto t0 = std::chrono::steady_clock::now();
      double bytes = 0;
      for (const auto& kv : st.tensors) bytes += double(kv.second.nbytes());
      for (const auto& kv : st.pieces) bytes += kv.second.data.defined() ? double(kv.second.data.nbytes()) : 0.0;
      const std::string path = comm_ == MPI_COMM_NULL ? store_.write(st) : store_.write(st, comm_);
      const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      int rank = 0;
      if (comm_ != MPI_COMM_NULL) MPI_Comm_rank(comm_, &rank);
      if (rank == 0) {
        char buf[160];
        std::snprintf(buf, sizeof buf, " (in the background: %.2f s; rank 0 wrote %.3f GB, %.2f GB/s)", sec,
                      bytes / 1e9, sec > 0 ? bytes / 1e9 / sec : 0.0);
        log_info("checkpoint written: ", path, buf);
      }
      st = CheckpointState();  // release the staged host buffers before the thread reports done
    } catch (...) {
      error_ = std::current_exception();
    }
  });
  return path_;
}

std::string AsyncCheckpointWriter::wait() {
  if (!thread_.joinable()) return "";
  thread_.join();
  std::string path = path_;
  path_.clear();
  if (error_) {
    std::exception_ptr e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
  return path;
}

}  // namespace temper
