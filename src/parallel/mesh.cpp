// Mesh::build: detect the node topology, gather every rank's view (topology and
// requested shape) to every rank, validate on that shared table (so every rank
// throws the same error or none does), then split the axis communicators.
#include "parallel/mesh.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <sstream>
#include <vector>

#include "core/log.h"
#include "parallel/mpi_comm.h"
#include "parallel/nccl_comm.h"
#include "parallel/staged_comm.h"

namespace temper {

namespace {

// What every rank contributes to the shared table in build().
struct RankInfo {
  int node_key;     // lowest world rank on this rank's physical node
  int local;        // rank within the physical node
  int local_size;   // ranks on the physical node
  int sp, dp_shard, dp_replicate, ranks_per_node, allow_cross_node;  // the request, as this rank saw it
};
constexpr int kInfoInts = sizeof(RankInfo) / sizeof(int);

std::string shape_text(int sp, int shard, int rep) {
  return cat("sp ", sp, " × dp_shard ", shard, " × dp_replicate ", rep);
}

void check_mpi(int rc, const char* call) {
  TEMPER_CHECK(rc == MPI_SUCCESS, "mesh: ", call, " failed (MPI error code ", rc, ")");
}

// All validation of the shared table; identical inputs give identical throws.
void validate_request(const std::vector<RankInfo>& t, int world) {
  const RankInfo& a = t[0];
  for (size_t r = 1; r < t.size(); ++r) {
    const RankInfo& b = t[r];
    if (b.sp != a.sp || b.dp_shard != a.dp_shard || b.dp_replicate != a.dp_replicate ||
        b.ranks_per_node != a.ranks_per_node || b.allow_cross_node != a.allow_cross_node)
      fail("mesh: ranks disagree on the request: rank 0 asks for ", shape_text(a.sp, a.dp_shard, a.dp_replicate),
           " (ranks_per_node ", a.ranks_per_node, ", allow_cross_node ", a.allow_cross_node, ") but rank ", r,
           " asks for ", shape_text(b.sp, b.dp_shard, b.dp_replicate), " (ranks_per_node ", b.ranks_per_node,
           ", allow_cross_node ", b.allow_cross_node, ")");
  }
  TEMPER_CHECK(a.sp >= 1, "mesh: sp must be a positive rank count, got ", a.sp);
  TEMPER_CHECK(a.dp_shard >= 1, "mesh: dp_shard must be a positive rank count, got ", a.dp_shard);
  TEMPER_CHECK(a.dp_replicate >= 0, "mesh: dp_replicate must be a positive rank count (or 0 to fill), got ",
               a.dp_replicate);
  TEMPER_CHECK(a.ranks_per_node >= 0, "mesh: ranks_per_node must be positive (or 0 to detect), got ",
               a.ranks_per_node);
  const long inner = long(a.sp) * a.dp_shard;
  if (a.dp_replicate == 0)
    TEMPER_CHECK(world % inner == 0, "mesh: world size ", world, " is not a multiple of sp ", a.sp, " × dp_shard ",
                 a.dp_shard, " = ", inner, " (dp_replicate 0 fills the remaining ranks)");
  const long rep = a.dp_replicate == 0 ? world / inner : a.dp_replicate;
  TEMPER_CHECK(inner * rep == world, "mesh: world size ", world, " is not ", shape_text(a.sp, a.dp_shard, int(rep)),
               " = ", inner * rep);
  if (a.ranks_per_node > 0)
    TEMPER_CHECK(world % a.ranks_per_node == 0, "mesh: ranks_per_node ", a.ranks_per_node,
                 " does not divide the world size ", world);
}

}  // namespace

Mesh::Mesh() = default;
Mesh::Mesh(Mesh&&) noexcept = default;
Mesh& Mesh::operator=(Mesh&&) noexcept = default;
Mesh::~Mesh() = default;

Mesh Mesh::build(MPI_Comm world, MeshShape shape, MeshOptions opt) {
  Mesh m;
  check_mpi(MPI_Comm_rank(world, &m.world_rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(world, &m.world_size_), "MPI_Comm_size");
  const int W = m.world_size_;

  // Physical topology: one communicator per shared-memory node.
  RankInfo mine{};
  MPI_Comm node_comm = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, m.world_rank_, MPI_INFO_NULL, &node_comm),
            "MPI_Comm_split_type");
  MPI_Comm_rank(node_comm, &mine.local);
  MPI_Comm_size(node_comm, &mine.local_size);
  MPI_Allreduce(&m.world_rank_, &mine.node_key, 1, MPI_INT, MPI_MIN, node_comm);
  MPI_Comm_free(&node_comm);
  mine.sp = shape.sp;
  mine.dp_shard = shape.dp_shard;
  mine.dp_replicate = shape.dp_replicate;
  mine.ranks_per_node = opt.ranks_per_node;
  mine.allow_cross_node = opt.allow_cross_node ? 1 : 0;

  std::vector<RankInfo> table(W);
  check_mpi(MPI_Allgather(&mine, kInfoInts, MPI_INT, table.data(), kInfoInts, MPI_INT, world), "MPI_Allgather");

  // ---- from here on every rank works on the same table ---------------------
  validate_request(table, W);
  shape = {table[0].sp, table[0].dp_shard, table[0].dp_replicate};
  if (shape.dp_replicate == 0) shape.dp_replicate = W / (shape.sp * shape.dp_shard);

  // Physical nodes in order of their lowest world rank; ranks by (node, local rank).
  std::map<int, int> node_index;  // node_key -> physical node index
  for (const RankInfo& r : table) node_index.emplace(r.node_key, 0);
  int k = 0;
  for (auto& kv : node_index) kv.second = k++;
  std::vector<int> order(W);  // order[g] = world rank
  for (int r = 0; r < W; ++r) order[r] = r;
  std::sort(order.begin(), order.end(), [&](int x, int y) {
    int nx = node_index[table[x].node_key], ny = node_index[table[y].node_key];
    return nx != ny ? nx < ny : table[x].local < table[y].local;
  });

  int rpn = opt.ranks_per_node;
  if (rpn == 0) {
    std::ostringstream counts;
    bool equal = true;
    for (const auto& kv : node_index) {
      int n = table[kv.first].local_size;  // the node's lowest rank is a member of it
      counts << (kv.second ? ", " : "") << "node " << kv.second << ": " << n;
      equal = equal && n == table[0].local_size;
    }
    TEMPER_CHECK(equal, "mesh: the nodes hold unequal numbers of ranks (", counts.str(),
                 "); launch the same number of ranks on every node or set ranks_per_node");
    rpn = table[0].local_size;
  }
  const int inner = shape.sp * shape.dp_shard;
  if (rpn % inner != 0) {
    std::string what = cat("sp ", shape.sp, " × dp_shard ", shape.dp_shard, " = ", inner,
                           " ranks per group do not tile a node of ", rpn, " ranks",
                           opt.ranks_per_node ? " (ranks_per_node as set)" : " (as detected)",
                           "; SP and DP-shard groups must lie inside one node, so sp × dp_shard must divide ", rpn);
    TEMPER_CHECK(opt.allow_cross_node, "mesh: ", what, " (or allow cross-node groups)");
    if (m.world_rank_ == 0) log_warn("mesh: ", what, "; continuing because cross-node groups are allowed");
  }

  m.shape_ = shape;
  m.ranks_per_node_ = rpn;
  m.emulated_ = opt.ranks_per_node > 0;
  m.n_nodes_ = W / rpn;
  for (int g = 0; g < W; ++g)
    if (order[g] == m.world_rank_) m.g_ = g;
  m.node_ = m.g_ / rpn;
  m.local_rank_ = m.g_ % rpn;

  if (m.emulated_ && m.world_rank_ == 0) {
    for (int g = 0; g < W; ++g)
      if (g % rpn != 0 && table[order[g]].node_key != table[order[g - 1]].node_key) {
        log_warn("mesh: emulated node ", g / rpn, " (ranks_per_node ", rpn, ") spans physical nodes");
        break;
      }
  }

  // ---- communicators ---------------------------------------------------------
  const int s = m.sp_rank(), d = m.shard_rank(), r = m.replicate_rank();
  auto split = [&](int color, int key, const char* name) -> std::unique_ptr<Comm> {
    MPI_Comm c = MPI_COMM_NULL;
    check_mpi(MPI_Comm_split(world, color, key, &c), "MPI_Comm_split");
    return std::make_unique<MpiComm>(c, name, true);
  };
  m.world_ = MpiComm::dup(world, "world");
  m.sp_ = split(r * shape.dp_shard + d, s, "sp");
  m.shard_ = split(r * shape.sp + s, d, "dp_shard");
  m.replicate_ = split(d * shape.sp + s, r, "dp_replicate");
  for (auto* c : {&m.world_, &m.sp_, &m.shard_, &m.replicate_})
    if (auto* mc = dynamic_cast<MpiComm*>(c->get())) mc->set_timeout(opt.comm_timeout_s);
  return m;
}

void Mesh::use_nccl(void* stream, double timeout_s, bool all) {
  NcclOptions o;
  o.device = local_rank_;
  o.stream = stream;
  o.timeout_s = timeout_s;
  auto convert = [&](std::unique_ptr<Comm>& c) {
    auto* m = dynamic_cast<MpiComm*>(c.get());
    if (!m || (!all && m->size() == 1)) return;
    std::unique_ptr<Comm> n = NcclComm::create(m->handle(), m->name(), o);
    c = std::move(n);  // the MPI communicator is freed here; NcclComm holds its own duplicate
  };
  // Every rank converts the axes in the same order (each creation is collective over its axis).
  convert(sp_);
  convert(shard_);
  convert(replicate_);
}

void Mesh::use_staged(const std::function<void(Tensor& dst, const Tensor& src)>& copy,
                      const std::function<Tensor(const Shape& shape, DType dtype)>& alloc,
                      const std::function<void()>& sync) {
  for (std::unique_ptr<Comm>* c : {&sp_, &shard_, &replicate_})
    if ((*c)->size() > 1 && !dynamic_cast<StagedComm*>(c->get()))
      *c = std::make_unique<StagedComm>(std::move(*c), copy, alloc, sync);
}

std::string Mesh::staged_summary() const {
  std::string out;
  for (const std::unique_ptr<Comm>* c : {&sp_, &shard_, &replicate_}) {
    const auto* s = dynamic_cast<const StagedComm*>(c->get());
    if (!s) continue;
    const StagedComm::Totals& t = s->totals();
    char line[160];
    std::snprintf(line, sizeof line, "%s%s: %lld collectives, %.2f GB in %.2f s (%.2f GB/s)", out.empty() ? "" : "; ",
                  s->name().c_str(), (long long)t.calls, t.bytes / 1e9, t.seconds,
                  t.seconds > 0 ? t.bytes / 1e9 / t.seconds : 0.0);
    out += line;
  }
  return out;
}

std::string Mesh::rank_map() {
  // Per rank: the coordinates as the communicators see them, and the host.
  constexpr int kInts = 7, kHost = 64;
  int mine[kInts] = {world_rank_, g_, node_, local_rank_, sp_->rank(), shard_->rank(), replicate_->rank()};
  char host[MPI_MAX_PROCESSOR_NAME] = {0};
  int host_len = 0;
  MPI_Get_processor_name(host, &host_len);
  char host_fixed[kHost] = {0};
  std::memcpy(host_fixed, host, std::min(host_len, kHost - 1));

  Tensor ints_in = Tensor::wrap(mine, {kInts}, DType::I32);
  Tensor ints_out = Tensor::empty({int64_t(world_size_) * kInts}, DType::I32);
  world_->all_gather(ints_out, ints_in);
  Tensor host_in = Tensor::wrap(host_fixed, {kHost}, DType::U8);
  Tensor host_out = Tensor::empty({int64_t(world_size_) * kHost}, DType::U8);
  world_->all_gather(host_out, host_in);

  std::ostringstream os;
  os << "mesh: " << shape_text(shape_.sp, shape_.dp_shard, shape_.dp_replicate) << " = " << world_size_
     << " ranks on " << n_nodes_ << " node(s) × " << ranks_per_node_ << " ranks ("
     << (emulated_ ? "ranks_per_node set" : "detected") << ")\n";
  char line[160];
  std::snprintf(line, sizeof line, "%6s %6s %5s %6s %4s %6s %10s  %s\n", "rank", "index", "node", "local", "sp",
                "shard", "replicate", "host");
  os << line;
  const int* v = ints_out.data<int>();
  for (int r = 0; r < world_size_; ++r) {
    const int* e = v + r * kInts;
    std::string h(host_out.data<char>() + r * kHost);
    std::snprintf(line, sizeof line, "%6d %6d %5d %6d %4d %6d %10d  %s\n", e[0], e[1], e[2], e[3], e[4], e[5], e[6],
                  h.c_str());
    os << line;
  }
  return os.str();
}

}  // namespace temper
