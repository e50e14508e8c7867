// Mesh: the sp × dp_shard × dp_replicate layout of the ranks, built from the
// node topology, and one communicator per axis.
//
// Ranks are ordered by (node, local rank) into a mesh index g, and
//   sp_rank = g % sp,  shard_rank = (g / sp) % dp_shard,  replicate_rank = g / (sp * dp_shard).
// SP groups (consecutive g) and DP-shard groups (stride sp) therefore lie inside
// one node whenever sp * dp_shard divides the ranks per node, which build()
// requires unless allow_cross_node. With ranks_per_node set, the node of a rank
// is g / ranks_per_node, so one machine can emulate several nodes in tests.
#pragma once
#include <mpi.h>

#include <functional>
#include <memory>
#include <string>

#include "parallel/comm.h"

namespace temper {

struct MeshShape {
  int sp = 1, dp_shard = 1, dp_replicate = 1;  // dp_replicate 0 = fill: world / (sp * dp_shard)
};

struct MeshOptions {
  int ranks_per_node = 0;         // 0 = detect (MPI_Comm_split_type with MPI_COMM_TYPE_SHARED)
  bool allow_cross_node = false;  // let SP / DP-shard groups span nodes (warn instead of fail)
  double comm_timeout_s = 0;      // deadline of every MPI collective (parallel.comm_timeout); 0 = none
};

class Mesh {
 public:
  // Collective over `world`. Every validation error is thrown on every rank with
  // the same message, before any sub-communicator is created.
  static Mesh build(MPI_Comm world, MeshShape shape, MeshOptions opt = {});

  Mesh(Mesh&&) noexcept;
  Mesh& operator=(Mesh&&) noexcept;
  ~Mesh();

  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }
  int mesh_index() const { return g_; }  // position in (node, local rank) order
  int node() const { return node_; }
  int local_rank() const { return local_rank_; }
  int n_nodes() const { return n_nodes_; }
  int ranks_per_node() const { return ranks_per_node_; }
  bool emulated_nodes() const { return emulated_; }  // ranks_per_node came from MeshOptions
  int sp_rank() const { return g_ % shape_.sp; }
  int shard_rank() const { return (g_ / shape_.sp) % shape_.dp_shard; }
  int replicate_rank() const { return g_ / (shape_.sp * shape_.dp_shard); }
  MeshShape shape() const { return shape_; }  // dp_replicate resolved (never 0)

  // world() keeps MPI's world order (its rank() is world_rank(), not mesh_index());
  // each axis communicator is ordered by that axis' coordinate.
  Comm& world() { return *world_; }
  Comm& sp() { return *sp_; }
  Comm& shard() { return *shard_; }
  Comm& replicate() { return *replicate_; }

  // Replaces the sp / dp_shard / dp_replicate communicators by NCCL ones on the
  // same ranks (collective over world), so that collectives on device tensors run
  // on the GPU; host tensors and the host conveniences keep going through MPI.
  // `all` = false converts only the axes with more than one rank. `stream` is
  // the compute backend's stream (collectives queue behind the kernels that
  // produced their inputs), `timeout_s` bounds every collective. Throws (on
  // every rank) when this build or machine has no NCCL / GPU.
  void use_nccl(void* stream, double timeout_s, bool all);
  // Wraps the sp / dp_shard / dp_replicate communicators of more than one rank
  // in StagedComm (parallel/staged_comm.h): device tensors are copied through
  // host memory with `copy` around the MPI collectives (several ranks may share
  // one GPU; no NCCL needed). Local, no communication.
  // `alloc` and `sync` as in StagedComm.
  void use_staged(const std::function<void(Tensor& dst, const Tensor& src)>& copy,
                  const std::function<Tensor(const Shape& shape, DType dtype)>& alloc = nullptr,
                  const std::function<void()>& sync = nullptr);
  // One line of what the staged collectives cost this rank so far, per axis ("dp_shard: 1,204
  // collectives, 61.2 GB in 17.9 s; ..."); empty when no axis is staged.
  std::string staged_summary() const;

  // Collective over world: every rank reports its host, node, local rank and
  // the ranks it actually holds in each communicator; the full table is
  // returned on every rank.
  std::string rank_map();

 private:
  Mesh();
  int world_rank_ = 0, world_size_ = 1, g_ = 0, node_ = 0, local_rank_ = 0, n_nodes_ = 1, ranks_per_node_ = 1;
  bool emulated_ = false;
  MeshShape shape_;
  std::unique_ptr<Comm> world_, sp_, shard_, replicate_;
};

}  // namespace temper
