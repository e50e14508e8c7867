#include "app/run_context.h"

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "core/file_write.h"
#include "core/log.h"
#include "core/signals.h"
#include "parallel/nccl_comm.h"

namespace temper {

namespace fs = std::filesystem;

RunContext::RunContext(const Deck& deck, Mesh& mesh) : deck_(deck), mesh_(mesh) {
  output_dir_ = deck.get_string("run.output_dir");
  std::string ckpt_dir = deck.get_string("checkpoint.dir");
  if (ckpt_dir.empty()) ckpt_dir = (fs::path(output_dir_) / "checkpoints").string();
  store_ = std::make_unique<CheckpointStore>(ckpt_dir, int(deck.get_int("checkpoint.keep_last")));
  // checkpoint I/O on a communicator of its own: its collectives never match the training's
  MPI_Comm_dup(MPI_COMM_WORLD, &io_comm_);
  std::string why;
  if (deck.get_bool("checkpoint.async")) {
    if (AsyncCheckpointWriter::supported(io_comm_, &why))
      writer_ = std::make_unique<AsyncCheckpointWriter>(*store_, io_comm_);
    else if (mesh.world_rank() == 0)
      log_warn("checkpoint.async: checkpoints are written synchronously: ", why);
  }
  if (mesh.world_rank() == 0)
    log_info("checkpoints: HDF5 files written through MPI-IO by all ", mesh.world_size(),
             mesh.world_size() == 1 ? " rank" : " ranks", writer_ ? " in the background" : "", " into ", ckpt_dir);
  kernels_ = make_kernels(deck.get_string("run.backend"), mesh.local_rank());
  kernels_->set_deterministic(deck.get_bool("run.deterministic"));
  const std::string dc = deck.get_string("parallel.device_comm");
  if (kernels_->device() == Device::CUDA) {
    const auto sh = mesh.shape();
    const bool multi = sh.sp > 1 || sh.dp_shard > 1 || sh.dp_replicate > 1;
    // auto: NCCL where every rank has a GPU of its own, else collectives staged through host memory
    std::string why;
    const bool nccl = dc == "nccl" || (dc == "auto" && multi && nccl_comm_supported(MPI_COMM_WORLD, &why));
    if (nccl) {
      mesh.use_nccl(kernels_->native_stream(), deck.get_float("parallel.comm_timeout"), dc == "nccl");
      if (mesh.world_rank() == 0)
        log_info("communicators: NCCL on the device (", dc == "nccl" ? "every axis" : "the axes of several ranks", ")");
    } else if (multi) {
      Kernels* k = kernels_.get();
      mesh.use_staged([k](Tensor& dst, const Tensor& src) { k->copy(dst, src); },
                      [k](const Shape& s, DType d) { return k->alloc_host(s, d); },  // page-locked, reused
                      [k]() { k->synchronize(); });
      if (mesh.world_rank() == 0)
        log_info("communicators: MPI, device tensors staged through host memory (parallel.device_comm = ", dc,
                 why.empty() ? std::string() : cat("; NCCL not used: ", why), ")");
    }
  } else {
    const auto sh = mesh.shape();
    if (kernels_->device() == Device::KOKKOS && (sh.sp > 1 || sh.dp_shard > 1 || sh.dp_replicate > 1)) {
      Kernels* k = kernels_.get();
      mesh.use_staged([k](Tensor& dst, const Tensor& src) { k->copy(dst, src); });
    }
    TEMPER_CHECK(dc != "nccl", "parallel.device_comm = nccl needs run.backend = cuda (this run uses '",
                 kernels_->name(), "')");
  }
}

bool RunContext::stop_requested() {
  if (++stop_checks_ == 2) commit_resolved_deck();  // the first step is done: set-up succeeded
  // 1: a signal on some rank; 2: the walltime margin, counted from process start (the job
  // script passes what its allocation has left when it launches the ranks)
  double flag = 0;
  if (signal_received()) flag = 1;
  double walltime = double(deck_.get_int("run.walltime"));
  if (walltime > 0 && process_seconds() >= walltime - double(deck_.get_int("run.walltime_margin")))
    flag = std::max(flag, 2.0);
  flag = mesh_.world().allreduce_max(flag);
  char text[96];
  if (flag == 1 && signal_received())
    std::snprintf(text, sizeof text, "signal received (%s, %.1f s ago)", signal_name(last_signal()), signal_age_seconds());
  else if (flag == 1)
    std::snprintf(text, sizeof text, "signal received (on another rank)");
  else
    std::snprintf(text, sizeof text, "walltime margin reached (%.0f s of run.walltime %.0f s)", process_seconds(), walltime);
  if (flag > 0) stop_reason_ = text;
  // The margin reached before this process made a step: a requeue would do the same again, forever
  TEMPER_CHECK(!(flag == 2 && stop_checks_ == 1), "run.walltime ", deck_.get_int("run.walltime"),
               " s less run.walltime_margin ", deck_.get_int("run.walltime_margin"), " s leaves no time for a step (",
               text, " before the first step); give the job more time or a smaller margin");
  return flag > 0;
}

std::optional<CheckpointState> RunContext::resume_state() {
  std::string mode = deck_.get_string("checkpoint.resume");
  if (mode == "never") return std::nullopt;
  // auto: the newest checkpoint whose slices all verify (each rank checks 1/size of them)
  std::string path = mode == "auto" ? store_->latest_valid_collective(io_comm_) : mode;
  if (path.empty()) return std::nullopt;
  if (is_root()) log_info("resuming from ", path);
  return CheckpointStore::open(path);  // each rank reads only the slices it holds
}

std::string RunContext::write_checkpoint(CheckpointState& state) {
  commit_resolved_deck();
  state.deck_text = deck_.resolved_text();
  auto sh = mesh_.shape();
  state.mesh = {sh.sp, sh.dp_shard, sh.dp_replicate};
  // Periodic saves go to the background writer (which first waits for the previous
  // one); a save because of a signal or the walltime margin is written before returning.
  if (writer_ && stop_reason_.empty()) {
    const std::string path = writer_->submit(state);
    if (is_root()) log_info("checkpoint step ", state.step, ": snapshot taken, writing ", path, " in the background");
    return path;
  }
  if (writer_) writer_->wait();
  const auto t0 = std::chrono::steady_clock::now();
  const std::string path = store_->write(state, io_comm_);  // collective: every rank writes its slices
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (is_root()) {
    std::error_code ec;
    const double gb = double(fs::file_size(path, ec)) / 1e9;
    char buf[96];
    std::snprintf(buf, sizeof buf, " (%.3f GB in %.2f s, %.2f GB/s)", ec ? 0.0 : gb, sec, sec > 0 && !ec ? gb / sec : 0.0);
    log_info("checkpoint written: ", path, buf);
  }
  return path;
}

void RunContext::finish_checkpoints() {
  if (writer_) writer_->wait();
}

double RunContext::wait_for_checkpoint_write() {
  const auto t0 = std::chrono::steady_clock::now();
  finish_checkpoints();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void RunContext::commit_resolved_deck() {
  if (deck_committed_) return;
  deck_committed_ = true;
  if (is_root()) write_file_atomic((fs::path(output_dir_) / "deck.resolved.ini").string(), deck_.resolved_text());
}

std::string RunContext::metrics_path() const {
  if (!deck_.get_bool("log.metrics")) return "";
  return (fs::path(output_dir_) / ("metrics.rank" + std::to_string(mesh_.world_rank()) + ".jsonl")).string();
}

}  // namespace temper
