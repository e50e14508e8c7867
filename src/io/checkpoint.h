// HDF5 checkpoints: one file per step, <dir>/ckpt_<step, 9 digits>.h5, written
// atomically (.partial + flush/fsync + `complete` attribute + rename by one rank
// + directory fsync), the newest K kept. Layout: docs/checkpoint_format.md.
//
// A checkpoint holds whole logical tensors. It is written either by one process
// (write(s)) or collectively by every rank of an MPI communicator (write(s, comm)):
// rank 0 lays out the HDF5 file (serial HDF5: every dataset contiguous and
// allocated), then every rank writes its own element ranges ("slices") of the
// tensors at their places with one collective MPI-IO write, and rank 0 adds the
// checksums and metadata. Every slice carries its own CRC-32. Readers open a file
// (open()) and read only the element ranges they need (read_range()), verifying
// the slices those ranges touch.
//
// Why not parallel HDF5: after a failed write (a full disk) its closing
// collectives take different paths on different ranks and wait for each other
// forever; here every rank makes the same MPI calls whatever failed.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace temper {

// This rank's part of a logical tensor in a collective write: the elements
// [offset, offset + data.numel()) of its C-order flattening. Every rank names
// every tensor with the same shape and dtype; the ranks' pieces must tile the
// tensor exactly (empty pieces are allowed).
struct TensorPiece {
  Shape shape;  // the logical shape
  DType dtype = DType::F32;
  int64_t offset = 0;
  Tensor data;  // CPU, any shape; undefined or empty: nothing from this rank
};

class CheckpointReader;

struct CheckpointState {
  int64_t step = 0;
  std::string phase;                           // "sft", "rl", "toy"
  std::string deck_text;                       // resolved deck
  std::vector<int> mesh;                       // {sp, dp_shard, dp_replicate} of the writer
  // Whole CPU tensors, any dtype; '/' in a name makes groups. In a collective
  // write every rank holds the same ones and each writes 1/size of every tensor.
  std::map<std::string, Tensor> tensors;
  std::map<std::string, TensorPiece> pieces;   // collective writes: this rank's pieces
  std::map<std::string, std::string> strings;  // small JSON blobs: data position, scheduler, ...
  std::map<std::string, std::vector<uint64_t>> u64;  // RNG states and counters
  // Set by CheckpointStore::open(): tensors are read from the file on demand.
  std::shared_ptr<const CheckpointReader> reader;

  // Tensors by name from `tensors` or, when empty there, from `reader`; each
  // throws "checkpoint has no tensor '<name>'" when neither holds it.
  bool has_tensor(const std::string& name) const;
  std::vector<std::string> tensor_names() const;  // sorted
  Shape tensor_shape(const std::string& name) const;
  Tensor read_tensor(const std::string& name) const;
  // Elements [begin, end) of the C-order flattening, as a 1-d CPU tensor.
  Tensor read_range(const std::string& name, int64_t begin, int64_t end) const;
  // Every tensor whose name starts with `prefix`, whole.
  std::map<std::string, Tensor> read_tensors(const std::string& prefix) const;
};

// The version this code writes (2: per-slice checksums); 1 is still read.
constexpr int kCheckpointFormatVersion = 2;

// An open checkpoint file (complete, version checked); tensors are read on
// demand, each slice that a read touches is checksummed. Thread-compatible.
class CheckpointReader {
 public:
  explicit CheckpointReader(const std::string& path);
  ~CheckpointReader();
  const std::string& path() const;
  std::vector<std::string> names() const;  // sorted
  bool has(const std::string& name) const;
  Shape shape(const std::string& name) const;
  DType dtype(const std::string& name) const;
  Tensor read(const std::string& name) const;
  Tensor read_range(const std::string& name, int64_t begin, int64_t end) const;
  // Reads and checksums every `size`-th slice of the file starting at `rank`
  // (ranks verifying a checkpoint together); throws on the first bad one.
  void verify_share(int rank, int size) const;
  // Metadata, read at open.
  CheckpointState meta() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class CheckpointStore {
 public:
  // keep_last <= 0 keeps every checkpoint.
  CheckpointStore(std::string dir, int keep_last);

  // Writes step s.step atomically (creating `dir` if needed) and returns the
  // final path; then deletes the oldest checkpoints with step <= s.step beyond
  // keep_last, and stale .partial files of earlier steps. An existing file of
  // the same step is replaced atomically (it stays valid until the rename).
  // Throws temper::Error on any failure, leaving existing checkpoints alone.
  // One process: `pieces` must each cover their whole tensor.
  std::string write(const CheckpointState& s) const;
  // The same, collective over `comm`: every rank writes its pieces and its share
  // of `tensors`; rank 0 writes strings, counters and the deck, then completes
  // and renames the file. An error on any rank is thrown on every rank (naming
  // the rank), after the partial file has been removed.
  std::string write(const CheckpointState& s, MPI_Comm comm) const;
  // Collective writes through MPI-IO (default) or one rank after the other
  // through HDF5 (false).
  void set_mpiio(bool on);
  bool mpiio() const { return mpiio_; }

  // Complete (renamed into place) checkpoint files, newest step first.
  std::vector<std::string> list() const;

  // The newest checkpoint that loads and verifies; partial or corrupt ones are
  // skipped with a warning. nullopt if there is none.
  std::optional<CheckpointState> load_latest_valid(std::string* path_out = nullptr) const;
  // The same choice, but the result is opened (metadata and a reader: tensors read on
  // demand) after every slice was checksummed one at a time: no tensor held in memory.
  std::optional<CheckpointState> open_latest_valid(std::string* path_out = nullptr) const;
  // Collective over comm: the newest checkpoint that every rank can open and
  // whose slices verify (each rank checks 1/size of them); "" when there is none.
  std::string latest_valid_collective(MPI_Comm comm) const;

  // Reads everything and checks every checksum; throws temper::Error naming
  // the file and the object on any problem.
  static CheckpointState load(const std::string& path);
  // Metadata (step, phase, mesh, deck, strings, counters) and a reader for the tensors.
  static CheckpointState open(const std::string& path);
  // A full read and checksum check, one slice at a time in memory; throws like load().
  static void verify(const std::string& path);

  // "<dir>/ckpt_000000042.h5" and "<dir>/.ckpt_000000042.h5.partial".
  std::string path_for(int64_t step) const;
  std::string partial_path_for(int64_t step) const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  int keep_last_;
  bool mpiio_;
};


}  // namespace temper
