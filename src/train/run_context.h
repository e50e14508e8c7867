// What every phase gets from main: the deck, the mesh, the backend, the output
// directory, the checkpoint store, and the step-boundary stop decision
// (signals and walltime, agreed on by all ranks).
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "deck/deck.h"
#include "io/checkpoint.h"
#include "kernels/kernels.h"
#include "parallel/mesh.h"

namespace temper {

class Progress;

class RunContext {
 public:
  RunContext(const Deck& deck, Mesh& mesh);
  const Deck& deck() const { return deck_; }
  Mesh& mesh() { return mesh_; }
  Kernels& kernels() { return *kernels_; }
  const std::string& output_dir() const { return output_dir_; }
  bool is_root() const { return mesh_.world_rank() == 0; }

  // Collective: true when any rank received SIGUSR1/SIGTERM or the walltime margin was reached.
  bool stop_requested(double elapsed_seconds);
  std::string stop_reason() const { return stop_reason_; }

  // Collective. Resume per checkpoint.resume (auto | never | <path>): rank 0 chooses the file,
  // every rank loads it. nullopt when starting fresh.
  std::optional<CheckpointState> resume_state();
  // Collective. Rank 0 writes `state` (which must be the same on every rank); returns the path.
  std::string write_checkpoint(CheckpointState& state);
  // Path of the JSONL metrics file for this rank ("" when log.metrics is off).
  std::string metrics_path() const;
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
  std::string stop_reason_;
  int stop_checks_ = 0;
  bool deck_committed_ = false;
};

}  // namespace temper
