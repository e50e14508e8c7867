// RunContext: the PhaseContext (train/phase_context.h) main builds from the deck
// and the mesh: the backend (and the device communicators it needs), the output
// directory, the checkpoint store, signals and walltime.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "deck/deck.h"
#include "io/checkpoint_async.h"
#include "train/phase_context.h"

namespace temper {

class RunContext final : public PhaseContext {
 public:
  RunContext(const Deck& deck, Mesh& mesh);
  const Deck& deck() const { return deck_; }
  Mesh& mesh() override { return mesh_; }
  Kernels& kernels() override { return *kernels_; }
  const std::string& output_dir() const override { return output_dir_; }

  bool stop_requested() override;
  std::string stop_reason() const override { return stop_reason_; }
  std::optional<CheckpointState> resume_state() override;
  std::string write_checkpoint(CheckpointState& state) override;
  // Waits for a checkpoint still being written in the background (throws its error).
  void finish_checkpoints();
  double wait_for_checkpoint_write() override;
  std::string metrics_path() const override;
  // Rank 0 writes <output_dir>/deck.resolved.ini (atomically, once). Only a run that got
  // past its set-up does: it is called after the first step (from stop_requested), with
  // the first checkpoint and when the phase returns, so a run that fails while checking
  // its inputs leaves the previous run's file alone.
  void commit_resolved_deck();

 private:
  const Deck& deck_;
  Mesh& mesh_;
  std::unique_ptr<Kernels> kernels_;
  std::string output_dir_;
  std::unique_ptr<CheckpointStore> store_;
  MPI_Comm io_comm_ = MPI_COMM_NULL;  // a duplicate of MPI_COMM_WORLD for checkpoint I/O
  std::unique_ptr<AsyncCheckpointWriter> writer_;  // checkpoint.async: on io_comm_, one write in flight
  std::string stop_reason_;
  int stop_checks_ = 0;
  bool deck_committed_ = false;
};

}  // namespace temper
