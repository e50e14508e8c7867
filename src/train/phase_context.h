// PhaseContext: what a phase gets from the application around it (app/run_context
// implements it): the mesh, the backend, the output directory, the
// checkpoint store, and the step-boundary stop decision (signals and walltime,
// agreed on by all ranks). Phases depend on this interface, never on app/.
#pragma once
#include <optional>
#include <string>

#include "io/checkpoint.h"
#include "kernels/kernels.h"
#include "parallel/mesh.h"

namespace temper {

class PhaseContext {
 public:
  virtual ~PhaseContext() = default;
  virtual Mesh& mesh() = 0;
  virtual Kernels& kernels() = 0;
  virtual const std::string& output_dir() const = 0;
  bool is_root() { return mesh().world_rank() == 0; }

  // Collective: true when any rank received SIGUSR1/SIGTERM or the walltime margin was reached.
  virtual bool stop_requested() = 0;
  virtual std::string stop_reason() const = 0;

  // Collective. Resume per checkpoint.resume (auto | never | <path>): with auto the newest
  // checkpoint that the ranks verify together; every rank opens it and reads tensors on
  // demand (CheckpointState::reader). nullopt when starting fresh.
  virtual std::optional<CheckpointState> resume_state() = 0;
  // Collective. Every rank writes its pieces and its share of the whole tensors of `state`
  // (the same on every rank), rank 0 its strings and counters; returns the path.
  virtual std::string write_checkpoint(CheckpointState& state) = 0;
  // Returns once the checkpoint being written in the background (if any) is complete;
  // seconds waited. Phases call it before taking the next snapshot: at most one write in
  // flight, and its host staging buffers are free to be reused rather than doubled.
  virtual double wait_for_checkpoint_write() { return 0.0; }
  // Path of the JSONL metrics file for this rank ("" when log.metrics is off).
  virtual std::string metrics_path() const = 0;
};

}  // namespace temper
