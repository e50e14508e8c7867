// RunContext: the PhaseContext (train/phase_context.h) main builds from the deck
// and the mesh: the backend (and the device communicators it needs), the output
// directory, the checkpoint store, signals and walltime.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "deck/deck.h"
#include "train/phase_context.h"

namespace temper {

class RunContext final : public PhaseContext {
 public:
  RunContext(const Deck& deck, Mesh& mesh);
  const Deck& deck() const { return deck_; }
  Mesh& mesh() override { return mesh_; }
  Kernels& kernels() override { return *kernels_; }
  const std::string& output_dir() const override { return output_dir_; }

  bool stop_requested(double elapsed_seconds) override;
  std::string stop_reason() const override { return stop_reason_; }
  std::optional<CheckpointState> resume_state() override;
  std::string write_checkpoint(CheckpointState& state) override;
  std::string metrics_path() const override;

 private:
  const Deck& deck_;
  Mesh& mesh_;
  std::unique_ptr<Kernels> kernels_;
  std::string output_dir_;
  std::unique_ptr<CheckpointStore> store_;
  std::string stop_reason_;
};

}  // namespace temper
