// Mesh: coordinates, node emulation, communicator membership (an allreduce of
// each member's rank bit must give exactly the expected group), shape
// validation errors (identical on every rank, no hang) and the rank map.
// Runs under mpirun -np 2 and -np 4; 4-rank shapes skip on 2 ranks.
#include <gtest/gtest.h>
#include <mpi.h>

#include <functional>
#include <sstream>
#include <string>
#include <tuple>

#include "parallel/mesh.h"
#include "mpi/mpi_util.h"

using namespace temper;

namespace {

using temper_mpi_test::world_rank;
using temper_mpi_test::world_size;

// Same string on every rank? (hash compared through min and max)
bool same_on_all_ranks(const std::string& s) {
  long long h = static_cast<long long>(std::hash<std::string>{}(s) >> 1), lo = 0, hi = 0;
  MPI_Allreduce(&h, &lo, 1, MPI_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(&h, &hi, 1, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
  return lo == hi;
}

std::string build_error(MeshShape shape, MeshOptions opt = {}) {
  try {
    Mesh::build(MPI_COMM_WORLD, shape, opt);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Bitmask of the world ranks q whose coordinates satisfy pred(q), given g == world rank.
int64_t mask_of(int W, const std::function<bool(int)>& pred) {
  int64_t m = 0;
  for (int q = 0; q < W; ++q)
    if (pred(q)) m |= int64_t(1) << q;
  return m;
}

void check_mesh(Mesh& m, MeshShape want, int rpn) {
  const int W = world_size(), R = world_rank();
  const int sp = want.sp, sh = want.dp_shard, rep = want.dp_replicate;
  // On one machine the (node, local rank) order is the world order.
  ASSERT_EQ(m.mesh_index(), R);
  EXPECT_EQ(m.world_rank(), R);
  EXPECT_EQ(m.world_size(), W);
  EXPECT_EQ(m.shape().sp, sp);
  EXPECT_EQ(m.shape().dp_shard, sh);
  EXPECT_EQ(m.shape().dp_replicate, rep);
  EXPECT_EQ(m.ranks_per_node(), rpn);
  EXPECT_EQ(m.n_nodes(), W / rpn);
  EXPECT_EQ(m.node(), R / rpn);
  EXPECT_EQ(m.local_rank(), R % rpn);
  EXPECT_EQ(m.sp_rank(), R % sp);
  EXPECT_EQ(m.shard_rank(), (R / sp) % sh);
  EXPECT_EQ(m.replicate_rank(), R / (sp * sh));

  auto sp_of = [&](int q) { return q % sp; };
  auto sh_of = [&](int q) { return (q / sp) % sh; };
  auto rep_of = [&](int q) { return q / (sp * sh); };
  struct Axis {
    Comm& c;
    const char* name;
    int size, rank;
    int64_t members;
  };
  Axis axes[] = {
      {m.world(), "world", W, R, mask_of(W, [](int) { return true; })},
      {m.sp(), "sp", sp, sp_of(R), mask_of(W, [&](int q) { return sh_of(q) == sh_of(R) && rep_of(q) == rep_of(R); })},
      {m.shard(), "dp_shard", sh, sh_of(R),
       mask_of(W, [&](int q) { return sp_of(q) == sp_of(R) && rep_of(q) == rep_of(R); })},
      {m.replicate(), "dp_replicate", rep, rep_of(R),
       mask_of(W, [&](int q) { return sp_of(q) == sp_of(R) && sh_of(q) == sh_of(R); })},
  };
  for (Axis& a : axes) {
    EXPECT_EQ(a.c.name(), a.name);
    EXPECT_EQ(a.c.size(), a.size) << a.name;
    EXPECT_EQ(a.c.rank(), a.rank) << a.name;
    EXPECT_EQ(a.c.allreduce_sum_i64(int64_t(1) << R), a.members) << a.name;
    // rank order inside the communicator follows the axis coordinate
    Tensor ranks = Tensor::empty({a.c.size()}, DType::I32);
    int32_t me = R;
    a.c.all_gather(ranks, Tensor::wrap(&me, {1}, DType::I32));
    int prev = -1;
    for (int i = 0; i < a.c.size(); ++i) {
      int q = ranks.data<int32_t>()[i];
      EXPECT_TRUE(a.members >> q & 1) << a.name << " gathered rank " << q;
      EXPECT_GT(q, prev) << a.name;
      prev = q;
    }
  }
}

using ShapeCase = std::tuple<int, int, int, int>;  // sp, dp_shard, dp_replicate, ranks_per_node

class MeshShapes : public ::testing::TestWithParam<ShapeCase> {};

TEST_P(MeshShapes, CoordinatesAndMembership) {
  auto [sp, sh, rep, rpn] = GetParam();
  if (world_size() != 4) GTEST_SKIP() << "shape needs 4 ranks";
  MeshShape shape{sp, sh, rep};
  MeshOptions opt;
  opt.ranks_per_node = rpn;
  if (rpn % (sp * sh) != 0) {
    // the SP × DP-shard group would straddle an emulated node
    std::string e = build_error(shape, opt);
    EXPECT_NE(e.find("must lie inside one node"), std::string::npos) << e;
    EXPECT_TRUE(same_on_all_ranks(e));
    opt.allow_cross_node = true;
  }
  Mesh m = Mesh::build(MPI_COMM_WORLD, shape, opt);
  check_mesh(m, shape, rpn);
}

INSTANTIATE_TEST_SUITE_P(FourRanks, MeshShapes,
                         ::testing::Values(ShapeCase{1, 1, 4, 2}, ShapeCase{2, 1, 2, 2}, ShapeCase{1, 2, 2, 2},
                                           ShapeCase{2, 2, 1, 2}, ShapeCase{4, 1, 1, 2}, ShapeCase{1, 4, 1, 2},
                                           ShapeCase{1, 1, 4, 4}, ShapeCase{2, 1, 2, 4}, ShapeCase{1, 2, 2, 4},
                                           ShapeCase{2, 2, 1, 4}, ShapeCase{4, 1, 1, 4}, ShapeCase{1, 4, 1, 4}));

}  // namespace

TEST(Mesh, DetectedSingleNodeAndFill) {
  const int W = world_size();
  Mesh m = Mesh::build(MPI_COMM_WORLD, MeshShape{1, 1, 0}, MeshOptions{});
  EXPECT_FALSE(m.emulated_nodes());
  check_mesh(m, MeshShape{1, 1, W}, W);  // one machine: one node holding every rank
  Mesh s = Mesh::build(MPI_COMM_WORLD, MeshShape{W, 1, 0}, MeshOptions{});
  check_mesh(s, MeshShape{W, 1, 1}, W);
  Mesh d = Mesh::build(MPI_COMM_WORLD, MeshShape{1, 2, 0}, MeshOptions{});
  check_mesh(d, MeshShape{1, 2, W / 2}, W);
}

TEST(Mesh, TwoEmulatedNodes) {
  const int W = world_size();
  MeshOptions opt;
  opt.ranks_per_node = W / 2;
  Mesh m = Mesh::build(MPI_COMM_WORLD, MeshShape{1, W / 2, 2}, opt);
  EXPECT_TRUE(m.emulated_nodes());
  EXPECT_EQ(m.n_nodes(), 2);
  check_mesh(m, MeshShape{1, W / 2, 2}, W / 2);
}

TEST(Mesh, InvalidShapesRejectedIdenticallyOnEveryRank) {
  const int W = world_size();
  struct Case {
    MeshShape shape;
    MeshOptions opt;
    std::string want;  // exact message
  };
  const std::string Ws = std::to_string(W);
  Case cases[] = {
      {{W, 3, 1}, {}, "mesh: world size " + Ws + " is not sp " + Ws + " × dp_shard 3 × dp_replicate 1 = " +
                          std::to_string(3 * W)},
      {{1, 1, 2 * W}, {}, "mesh: world size " + Ws + " is not sp 1 × dp_shard 1 × dp_replicate " +
                              std::to_string(2 * W) + " = " + std::to_string(2 * W)},
      {{0, 1, 1}, {}, "mesh: sp must be a positive rank count, got 0"},
      {{1, -2, 1}, {}, "mesh: dp_shard must be a positive rank count, got -2"},
      {{1, 1, -1}, {}, "mesh: dp_replicate must be a positive rank count (or 0 to fill), got -1"},
      {{3, 1, 0}, {}, "mesh: world size " + Ws + " is not a multiple of sp 3 × dp_shard 1 = 3 (dp_replicate 0 fills "
                      "the remaining ranks)"},
      {{1, 1, 0}, {3, false}, "mesh: ranks_per_node 3 does not divide the world size " + Ws},
      {{1, 1, 0}, {-1, false}, "mesh: ranks_per_node must be positive (or 0 to detect), got -1"},
  };
  for (const Case& c : cases) {
    std::string e = build_error(c.shape, c.opt);
    EXPECT_EQ(e, c.want);
    EXPECT_TRUE(same_on_all_ranks(e)) << e;
  }
  // groups straddling nodes: 2 emulated nodes of W/2 ranks, sp = W
  std::string e = build_error(MeshShape{W, 1, 1}, MeshOptions{W / 2, false});
  EXPECT_NE(e.find("sp " + Ws + " × dp_shard 1 = " + Ws + " ranks per group do not tile a node of " +
                   std::to_string(W / 2) + " ranks"),
            std::string::npos)
      << e;
  EXPECT_TRUE(same_on_all_ranks(e));
  // ranks that disagree on the request are caught instead of deadlocking in a split
  e = build_error(MeshShape{1, world_rank() == 0 ? 1 : 2, 0}, MeshOptions{});
  EXPECT_NE(e.find("mesh: ranks disagree on the request: rank 0 asks for sp 1 × dp_shard 1"), std::string::npos) << e;
  EXPECT_TRUE(same_on_all_ranks(e));
  // after all of that the world is still in step
  int one = 1, sum = 0;
  MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  EXPECT_EQ(sum, W);
}

TEST(Mesh, RankMapListsEveryRank) {
  const int W = world_size();
  MeshOptions opt;
  opt.ranks_per_node = W / 2;
  Mesh m = Mesh::build(MPI_COMM_WORLD, MeshShape{W / 2, 1, 2}, opt);
  std::string map = m.rank_map();
  EXPECT_TRUE(same_on_all_ranks(map));
  std::istringstream in(map);
  std::string header, columns, line;
  std::getline(in, header);
  std::getline(in, columns);
  EXPECT_NE(header.find("sp " + std::to_string(W / 2) + " × dp_shard 1 × dp_replicate 2"), std::string::npos)
      << header;
  EXPECT_NE(columns.find("replicate"), std::string::npos) << columns;
  int rows = 0;
  const int sp = W / 2;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    int rank, index, node, local, s, d, r;
    std::string host;
    ASSERT_TRUE(ls >> rank >> index >> node >> local >> s >> d >> r >> host) << line;
    EXPECT_EQ(rank, rows) << line;
    EXPECT_EQ(index, rank);
    EXPECT_EQ(node, rank / (W / 2));
    EXPECT_EQ(local, rank % (W / 2));
    EXPECT_EQ(s, rank % sp);
    EXPECT_EQ(d, 0);
    EXPECT_EQ(r, rank / sp);
    ++rows;
  }
  EXPECT_EQ(rows, W) << map;
}
