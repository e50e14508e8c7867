// Collective checkpoint writes (io/checkpoint, format 2) under mpirun -np 2 / 4:
//  - every rank writes arbitrary pieces (uneven, empty, scalar, zero-sized, bf16)
//    and a share of replicated whole tensors, through MPI-IO and rank after rank; the file holds whole tensors with one checksum
//    per non-empty piece; whole reads and range reads return the bytes written;
//    a flipped byte is caught by exactly the reads that touch its slice;
//  - pieces that overlap or leave a gap, and ranks that disagree on a tensor, are
//    one clear error on every rank, and leave no file;
//  - the training engine's state written collectively by 4 ranks (dp_shard 2 x
//    dp_replicate 2, and dp_shard 4; 2 ranks: dp_shard 2) loads bit for bit on
//    1, 2 and 4 ranks (each rank reading only its slices) and writes back the
//    same tensors.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "core/error.h"
#include "core/rng.h"
#include "io/checkpoint.h"
#include "io/h5util.h"
#include "parallel/mesh.h"
#include "train/engine.h"
#include "mpi/mpi_util.h"
#include "unit/model_util.h"

using namespace temper;
namespace fs = std::filesystem;
using temper_mpi_test::world_rank;
using temper_mpi_test::world_size;

namespace {

// A directory shared by the ranks (rank 0 creates it, fresh).
std::string shared_dir(const std::string& name) {
  fs::path d = fs::current_path() / ("ckpt_coll_" + name + "_np" + std::to_string(world_size()));
  if (world_rank() == 0) {
    fs::remove_all(d);
    fs::create_directories(d);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return d.string();
}

// The whole tensor `name` of a test: deterministic bytes.
Tensor expected(const Shape& shape, DType dt, int seed) {
  Tensor t = Tensor::empty(shape, dt);
  auto* b = static_cast<unsigned char*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); ++i) b[i] = static_cast<unsigned char>((i * 131 + size_t(seed) * 17 + 3) & 0xff);
  return t;
}

struct Spec {
  std::string name;
  Shape shape;
  DType dtype;
};

const std::vector<Spec>& specs() {
  static const std::vector<Spec> s = {{"model/a", {7, 5, 3}, DType::F32},  {"model/b", {13, 11}, DType::BF16},
                                      {"optim/m/a", {7, 5, 3}, DType::F32}, {"scalar", {}, DType::F64},
                                      {"zero", {0, 4}, DType::F32},          {"ids", {5}, DType::I64},
                                      {"long/row", {1, 97}, DType::F32}};
  return s;
}

// Uneven cut points of [0, n) into `parts` pieces (some empty), the same on every rank.
std::vector<int64_t> cuts(int64_t n, int parts, int seed) {
  Rng rng(mix64(uint64_t(seed), uint64_t(n)));
  std::vector<int64_t> c = {0};
  for (int i = 1; i < parts; ++i) c.push_back(n ? int64_t(rng.below(uint64_t(n + 1))) : 0);
  c.push_back(n);
  std::sort(c.begin(), c.end());
  return c;
}

CheckpointState piece_state(int64_t step) {
  const int W = world_size(), r = world_rank();
  CheckpointState s;
  s.step = step;
  s.phase = "sft";
  s.deck_text = "[run]\n# collective\n";
  s.mesh = {1, W, 1};
  int seed = 0;
  for (const auto& sp : specs()) {
    Tensor whole = expected(sp.shape, sp.dtype, ++seed);
    auto c = cuts(whole.numel(), W, seed);
    TensorPiece p;
    p.shape = sp.shape;
    p.dtype = sp.dtype;
    p.offset = c[size_t(r)];
    p.data = whole.reshape({whole.numel()}).rows(c[size_t(r)], c[size_t(r) + 1]);
    s.pieces[sp.name] = p;
  }
  s.tensors["replicated/w"] = expected({9, 4}, DType::F32, 99);  // each rank writes 1/W of it
  s.strings["data_position"] = "{\"doc\": 3}";
  s.u64["optim/steps"] = {uint64_t(step)};
  return s;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

void check_file(const std::string& path) {
  CheckpointState st = CheckpointStore::load(path);
  int seed = 0;
  for (const auto& sp : specs()) {
    Tensor want = expected(sp.shape, sp.dtype, ++seed);
    ASSERT_TRUE(st.tensors.count(sp.name)) << sp.name;
    EXPECT_TRUE(same_bytes(st.tensors.at(sp.name), want)) << sp.name;
  }
  EXPECT_TRUE(same_bytes(st.tensors.at("replicated/w"), expected({9, 4}, DType::F32, 99)));
  EXPECT_EQ(st.strings.at("data_position"), "{\"doc\": 3}");
  EXPECT_EQ(st.mesh, (std::vector<int>{1, world_size(), 1}));

  // range reads, on a file opened for reading on demand
  CheckpointState lazy = CheckpointStore::open(path);
  EXPECT_TRUE(lazy.tensors.empty());
  Rng rng(mix64(5, uint64_t(world_rank())));
  seed = 0;
  for (const auto& sp : specs()) {
    Tensor want = expected(sp.shape, sp.dtype, ++seed);
    const int64_t n = want.numel();
    const size_t es = dtype_size(sp.dtype);
    for (int k = 0; k < 6; ++k) {
      int64_t b = int64_t(rng.below(uint64_t(n + 1))), e = int64_t(rng.below(uint64_t(n + 1)));
      if (b > e) std::swap(b, e);
      Tensor got = lazy.read_range(sp.name, b, e);
      ASSERT_EQ(got.numel(), e - b);
      EXPECT_EQ(0, std::memcmp(got.raw(), static_cast<const char*>(want.raw()) + size_t(b) * es, size_t(e - b) * es))
          << sp.name << " [" << b << ", " << e << ")";
    }
  }
}

}  // namespace

TEST(CheckpointCollective, PiecesRoundTripThroughMpiioAndRankAfterRank) {
  for (bool mpiio : {true, false}) {
    SCOPED_TRACE(mpiio ? "MPI-IO" : "rank after rank");
    CheckpointStore store(shared_dir(mpiio ? "mpiio" : "turns"), 0);
    store.set_mpiio(mpiio);
    const std::string path = store.write(piece_state(5), MPI_COMM_WORLD);
    EXPECT_EQ(path, store.path_for(5));
    check_file(path);
    EXPECT_EQ(store.latest_valid_collective(MPI_COMM_WORLD), path);
    MPI_Barrier(MPI_COMM_WORLD);

    // one checksum per non-empty piece
    if (world_rank() == 0) {
      h5::Silence quiet;
      h5::Hid f = h5::open_file(path);
      EXPECT_EQ(h5::read_attr_i64(f, "format_version", path), 2);
      h5::Hid d = h5::open_dataset(f, "tensors/replicated/w", path);
      auto bounds = h5::read_attr_i64s(d, "slices", path);
      EXPECT_EQ(bounds.size(), size_t(world_size()) + 1);  // 36 elements, one slice per rank
      EXPECT_EQ(h5::read_attr_u32s(d, "slice_crc32", path).size(), size_t(world_size()));
    }
  }
}

TEST(CheckpointCollective, FlippedByteFailsOnlyTheReadsOfItsSlice) {
  CheckpointStore store(shared_dir("flip"), 0);
  const std::string good = store.write(piece_state(1), MPI_COMM_WORLD);
  const std::string bad = store.write(piece_state(2), MPI_COMM_WORLD);
  // flip the last byte of "long/row" (1 x 97 f32): its last slice is damaged
  if (world_rank() == 0) {
    hsize_t off = 0;
    {
      h5::Silence quiet;
      h5::Hid f = h5::open_file(bad);
      h5::Hid d = h5::open_dataset(f, "tensors/long/row", bad);
      off = H5Dget_offset(d);
    }
    std::fstream io(bad, std::ios::in | std::ios::out | std::ios::binary);
    io.seekg(std::streamoff(off + 97 * 4 - 1));
    char c = 0;
    io.read(&c, 1);
    c = char(c ^ 0x40);
    io.seekp(std::streamoff(off + 97 * 4 - 1));
    io.write(&c, 1);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  CheckpointState lazy = CheckpointStore::open(bad);
  auto row_cuts = cuts(97, world_size(), 7);  // "long/row" is the 7th spec
  int64_t last_start = 0;
  for (size_t i = 0; i + 1 < row_cuts.size(); ++i)
    if (row_cuts[i + 1] > row_cuts[i]) last_start = row_cuts[i];
  if (last_start > 0) EXPECT_NO_THROW(lazy.read_range("long/row", 0, last_start));
  try {
    lazy.read_range("long/row", 96, 97);
    ADD_FAILURE() << "a damaged slice was read without error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("checksum mismatch"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("long/row"), std::string::npos) << e.what();
  }
  // every rank verifies its share; the newest is skipped for the older one
  EXPECT_EQ(store.latest_valid_collective(MPI_COMM_WORLD), good);
}

TEST(CheckpointCollective, BadPiecesAreOneErrorOnEveryRankAndLeaveNoFile) {
  CheckpointStore store(shared_dir("bad"), 0);
  store.write(piece_state(1), MPI_COMM_WORLD);
  const int W = world_size(), r = world_rank();

  CheckpointState s = piece_state(2);  // rank 0's piece of "ids" also covers rank 1's first element
  if (r == 0) {
    auto& p = s.pieces["ids"];
    Tensor whole = expected({5}, DType::I64, 6);
    p.offset = 0;
    p.data = whole;  // everything, while others still write theirs
  }
  bool overlap_reported = true;
  try {
    store.write(s, MPI_COMM_WORLD);
  } catch (const Error& e) {
    overlap_reported = std::string(e.what()).find("'ids'") != std::string::npos;
  }
  // with W ranks some other rank holds a non-empty piece of "ids" unless the cuts gave everything to rank 0
  auto c = cuts(5, W, 6);
  if (c[1] < 5) EXPECT_TRUE(overlap_reported);

  s = piece_state(2);  // ranks disagree on a shape
  if (r == W - 1) s.pieces["model/a"].shape = {7, 15};
  bool threw = false;
  try {
    store.write(s, MPI_COMM_WORLD);
  } catch (const Error& e) {
    threw = true;
    EXPECT_NE(std::string(e.what()).find("disagree"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(threw);
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_FALSE(fs::exists(store.partial_path_for(2)));
  EXPECT_EQ(store.list(), std::vector<std::string>{store.path_for(1)});
}

namespace {

ModelConfig engine_config() { return temper_test::small_model({61, 21, 2, 4, 2, 6, 30}, true, true, false, 0.2f); }

// A mesh over the first n world ranks (nullptr on the others).
struct SubMesh {
  MPI_Comm comm = MPI_COMM_NULL;
  std::unique_ptr<Mesh> mesh;
  SubMesh(int n, MeshShape shape) {
    const int color = world_rank() < n ? 0 : MPI_UNDEFINED;
    MPI_Comm_split(MPI_COMM_WORLD, color, world_rank(), &comm);
    if (comm != MPI_COMM_NULL) mesh = std::make_unique<Mesh>(Mesh::build(comm, shape));
  }
  ~SubMesh() {
    mesh.reset();
    if (comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
  }
};

std::unique_ptr<Engine> make_engine(Kernels& k, Mesh& mesh) {
  EngineOptions opt;
  opt.grad_clip = 1.0;
  InitialWeights init;
  init.kind = "random";
  return std::make_unique<Engine>(engine_config(), k, mesh, opt, init, 11);
}

// Two optimizer steps on per-rank random documents.
void train(Engine& e) {
  Rng rng(mix64(3, uint64_t(e.dp_rank())));
  for (int step = 0; step < 2; ++step) {
    e.zero_grad();
    TokenBatch b;
    const int n = 9;
    for (int i = 0; i < n; ++i) b.tokens.push_back(int32_t(rng.below(61)));
    for (int i = 0; i < n; ++i) b.targets.push_back(i + 1 < n ? b.tokens[size_t(i) + 1] : -1);
    for (int i = 0; i < n; ++i) b.positions.push_back(i);
    b.cu_seqlens = {0, n};
    std::vector<double> coef(size_t(n), -1.0 / 64);
    e.forward_backward(b, coef);
    e.step(1e-2);
  }
}

}  // namespace

TEST(CheckpointCollective, EngineStateWrittenOnOneMeshLoadsBitForBitOnOthers) {
  const int W = world_size();
  auto k = make_cpu_kernels();
  std::vector<MeshShape> writers = {{1, 2, 1}};
  if (W >= 4) writers = {{1, 2, 2}, {1, 4, 1}};
  std::vector<std::pair<int, MeshShape>> readers = {{1, {1, 1, 1}}, {2, {1, 2, 1}}, {2, {1, 1, 2}}};
  if (W >= 4) readers.push_back({4, {1, 4, 1}}), readers.push_back({4, {1, 2, 2}});
  int idx = 0;
  for (const MeshShape& w : writers) {
    const int nw = w.sp * w.dp_shard * w.dp_replicate;
    SCOPED_TRACE("written by " + std::to_string(w.dp_shard) + " x " + std::to_string(w.dp_replicate));
    CheckpointStore store(shared_dir("engine" + std::to_string(idx++)), 0);
    std::string written;
    {
      SubMesh sm(nw, w);
      if (sm.mesh) {
        auto e = make_engine(*k, *sm.mesh);
        train(*e);
        CheckpointState s;
        s.step = 2;
        s.phase = "sft";
        e->save(s);
        written = store.write(s, sm.comm);
      }
    }
    std::string path = store.path_for(2);
    CheckpointState orig;
    if (world_rank() == 0) orig = CheckpointStore::load(path);
    for (const auto& [n, shape] : readers) {
      SCOPED_TRACE("read by " + std::to_string(shape.dp_shard) + " x " + std::to_string(shape.dp_replicate));
      CheckpointStore again(store.dir() + "_again", 0);
      {
        SubMesh sm(n, shape);
        if (sm.mesh) {
          auto e = make_engine(*k, *sm.mesh);
          e->load(CheckpointStore::open(path));
          EXPECT_EQ(e->optimizer_steps(), 2);
          CheckpointState s;
          s.step = 3;
          s.phase = "sft";
          e->save(s);
          again.write(s, sm.comm);
        }
      }
      MPI_Barrier(MPI_COMM_WORLD);
      if (world_rank() == 0) {
        CheckpointState back = CheckpointStore::load(again.path_for(3));
        size_t compared = 0;
        for (const auto& [name, t] : orig.tensors) {
          if (name.rfind("model/", 0) && name.rfind("optim/", 0)) continue;
          ASSERT_TRUE(back.tensors.count(name)) << name;
          EXPECT_TRUE(same_bytes(t, back.tensors.at(name))) << name;
          ++compared;
        }
        EXPECT_EQ(back.tensors.size(), orig.tensors.size());
        EXPECT_GT(compared, 20u);
        fs::remove_all(again.dir());
      }
      MPI_Barrier(MPI_COMM_WORLD);
    }
  }
}
