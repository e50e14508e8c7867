// DpShard: ZeRO-3 style sharding of a Decoder over the mesh's dp_shard
// communicator (hybrid-sharded data parallelism when dp_replicate > 1).
//
// Every parameter of S = shard.size() ranks is viewed as a flat vector of numel
// elements padded with zeros to a multiple of S; rank r owns the slice
// [r * len, (r + 1) * len), len = padded / S. DpShard keeps, per parameter, only
//   master shard  [len] (the Decoder's parameter dtype: f32, f64 in tests)
//   grad shard    [len] (the Decoder's gradient dtype), accumulated over micro-batches
// and the optimizer (train/adamw) is built on these shards (param_refs()), so its
// moments are sharded too. The Decoder's full `value`, `compute` and `grad`
// tensors are released (undefined) except while a layer runs:
//   before_forward(l)   all-gather layer l's compute parameters (master shard,
//                       converted to the compute dtype, then all_gather)
//   after_forward(l)    release them
//   before_backward(l)  all-gather again; allocate zeroed full gradients
//   after_backward(l)   [all-reduce the full gradients over sp, when given: SP
//                       ranks hold partial sums over their sequence pieces], then
//                       reduce-scatter them over dp_shard and add the local piece
//                       to the grad shard; release parameters and full gradients
// The embedding (LayerParamHooks::kEmbed) and the final norm + head (kHead) are
// groups of their own. A tied embedding belongs to both: it is gathered for the
// embedding and again for the head, and its gradient is reduce-scattered after
// the head's backward and again after the embedding's (the shard accumulates
// both; reduce-scatter is linear). The embedding's backward gathers no weights.
//
// After the last micro-batch of a step, reduce_over(replicate) sums the grad
// shards over dp_replicate (the last reduction of hybrid-sharded DP); the global
// gradient norm is then grad_norm(k, param_refs(), &shard) (squares summed over
// dp_shard only: sp and replicate ranks hold identical shards by then).
//
// The collectives run in order, where they are needed (blocking on the host
// with MPI; queued on the compute stream with NCCL): there is no prefetch of
// the next layer's parameters and no overlap of a reduce-scatter with the next
// layer's backward yet.
//
// Checkpoints stay mesh-independent: they hold the logical full tensors
// ("model/<name>", "optim/<kind>/<name>", the shapes of an unsharded run).
// save_pieces() hands each rank's shard (split further among the ranks holding
// the same shard) to a collective checkpoint write without any communication;
// save_state() all-gathers whole tensors instead. load_model() and
// slice_moments() read only each rank's piece, so any mesh loads any other's.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "kernels/kernels.h"
#include "model/decoder.h"
#include "parallel/comm.h"
#include "model/param_ref.h"

namespace temper {

class DpShard : public LayerParamHooks {
 public:
  // Takes the model's current (identical on every rank) full values as the
  // initial master, keeps this rank's shards and releases the full tensors; then
  // installs itself as the model's hooks. `sp` (optional) is the sequence-parallel
  // communicator whose ranks' gradients are summed before the reduce-scatter.
  DpShard(Decoder& model, Kernels& k, Comm& shard, Comm* sp = nullptr);
  ~DpShard() override;
  DpShard(const DpShard&) = delete;
  DpShard& operator=(const DpShard&) = delete;

  void before_forward(int layer) override;
  void after_forward(int layer) override;
  void before_backward(int layer) override;
  void after_backward(int layer) override;

  // The shards as optimizer parameters (name, master shard, grad shard, decay).
  std::vector<ParamRef> param_refs();
  void zero_grad();             // zeroes the grad shards
  void reduce_over(Comm& comm);  // all-reduce (sum) the grad shards over comm (dp_replicate)

  // Gathers every parameter and keeps them resident (hooks do nothing) until
  // release_all(): for generation and evaluation, which read compute directly.
  void gather_all();
  void release_all();

  // Collective over dp_shard. Full logical host tensors of this rank's shards:
  // model/<name> from the master shards, and optim/<kind>/<name> of every entry of
  // `moments` (host shards as AdamW::save writes them for param_refs()). With keep
  // false the gathered tensors are dropped after the collective (ranks that do
  // not write the checkpoint).
  void save_state(const std::map<std::string, Tensor>& moments, std::map<std::string, Tensor>& out,
                  bool keep = true) const;
  // No communication. This rank's pieces of model/<name> (master shards) and of
  // every entry of `moments` (shards, on any device), for a collective checkpoint
  // write: the shard's real elements split into `copies` parts (the ranks holding
  // the same shard: sp x dp_replicate), this rank writing part `copy`. `to_host`
  // copies a piece (a view of a shard) to host memory, under the piece's name.
  using HostCopy = std::function<Tensor(const std::string& key, const Tensor& src)>;
  void save_pieces(const std::map<std::string, Tensor>& moments, std::map<std::string, TensorPiece>& out,
                   int copy, int copies, const HostCopy& to_host) const;
  // Master shards from full logical host values model/<name> (as save_state writes
  // them, on any mesh). Throws naming the first missing or mis-shaped tensor.
  void load_model(const std::map<std::string, Tensor>& in);
  // The same from a checkpoint, reading only this rank's element ranges.
  void load_model(const CheckpointState& in);
  // This rank's shards of the full logical tensors named by `keys`
  // (optim/<kind>/<name>, any kinds, e.g. Muon's muon_m next to AdamW's m, v).
  std::map<std::string, Tensor> slice_moments(const std::map<std::string, Tensor>& in,
                                              const std::vector<std::string>& keys) const;
  std::map<std::string, Tensor> slice_moments(const CheckpointState& in, const std::vector<std::string>& keys) const;

  int shard_count() const { return S_; }
  // Bytes of the sharded state on this rank (master + grad shards), for checks.
  int64_t resident_shard_bytes() const;

 private:
  struct Piece {
    NamedParam* p = nullptr;
    Shape shape;
    int64_t numel = 0, padded = 0, len = 0;
    int group = kHead;  // block index, kEmbed or kHead
    Tensor master, grad;  // [len]
    Tensor full_grad;     // [padded] while the layer's backward runs
  };
  const Piece& piece_of_moment(const std::string& key) const;
  void gather(Piece& x);            // full compute (and value alias) from the shards
  void release(Piece& x);           // full tensors undefined
  void scatter_grad(Piece& x);      // full grad -> grad shard, full grad released
  Tensor full_host(const Piece& x, const Tensor& shard_host) const;  // collective
  Tensor slice_host(const Piece& x, const CheckpointState& in, const std::string& key) const;
  std::vector<Piece*>& group(int layer);

  Decoder& model_;
  Kernels& k_;
  Comm& shard_;
  Comm* sp_;
  int S_ = 1, r_ = 0;
  bool pinned_ = false;  // gather_all: everything resident
  std::vector<Piece> pieces_;
  std::vector<std::vector<Piece*>> groups_;  // [0] = kHead, [1] = kEmbed, [l + 2] = block l
};

}  // namespace temper
