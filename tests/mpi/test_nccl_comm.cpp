// NcclComm vs MpiComm: every collective on device tensors (several dtypes and
// reduce ops) gives exactly the MPI result on the same rank-dependent values;
// the backend-stream option orders collectives after the kernels that produce
// their input; host tensors and host conveniences go through MPI; bad
// arguments throw; a collective that only one rank enters times out, aborts
// and names itself. Runs under mpirun -np 2 and -np 4; without a GPU per rank
// (or without NCCL in the build) every test skips, saying why.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "kernels/kernels.h"
#include "parallel/mpi_comm.h"
#include "parallel/nccl_comm.h"
#ifdef TEMPER_HAVE_CUDA
#include "kernels/cuda/cuda_kernels.h"
#endif

using namespace temper;

namespace {

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// The CUDA backend of this rank (its node-local GPU), or null with the reason
// printed once by rank 0. Decided collectively, so all ranks skip together.
Kernels* backend() {
  static std::unique_ptr<Kernels> k;
  static bool tried = false;
  if (!tried) {
    tried = true;
    std::string why;
    if (!nccl_comm_supported(MPI_COMM_WORLD, &why)) {
      if (world_rank() == 0) std::printf("NCCL tests skipped: %s\n", why.c_str());
      return nullptr;
    }
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank(), MPI_INFO_NULL, &node);
    int local = 0;
    MPI_Comm_rank(node, &local);
    MPI_Comm_free(&node);
    k = make_cuda_kernels(local);
  }
  return k.get();
}

void set_value(Tensor& t, int64_t i, double v) {
  switch (t.dtype()) {
    case DType::F32: t.data<float>()[i] = float(v); break;
    case DType::F64: t.data<double>()[i] = v; break;
    case DType::BF16: t.data<uint16_t>()[i] = float_to_bf16(float(v)); break;
    case DType::I32: t.data<int32_t>()[i] = int32_t(v); break;
    case DType::I64: t.data<int64_t>()[i] = int64_t(v); break;
    case DType::U8: t.data<uint8_t>()[i] = uint8_t(v); break;
    default: FAIL() << "dtype not used here";
  }
}

// Values exact in every dtype used (u8 included) after a 4-rank sum.
double val(int rank, int64_t i) { return double((rank * 7 + i * 3) % 60); }

Tensor host_values(const Shape& s, DType dt, int rank, int64_t offset = 0) {
  Tensor t = Tensor::empty(s, dt);
  for (int64_t i = 0; i < t.numel(); ++i) set_value(t, i, val(rank, i + offset));
  return t;
}

const std::vector<DType> kDtypes = {DType::F32, DType::F64, DType::BF16, DType::I32, DType::I64, DType::U8};

class NcclCommTest : public ::testing::Test {
 protected:
  void SetUp() override {
    k = backend();
    if (!k) GTEST_SKIP() << "no GPU per rank or no NCCL (see the first line of output)";
    mpi = MpiComm::dup(MPI_COMM_WORLD, "mpi");
    NcclOptions opt;
    opt.timeout_s = 120;
    nccl = NcclComm::create(MPI_COMM_WORLD, "nccl", opt);
    R = nccl->rank();
    S = nccl->size();
  }
  Tensor dev(const Tensor& h) {
    Tensor d = k->alloc(h.shape(), h.dtype());
    k->copy(d, h);
    return d;
  }
  Tensor back(const Tensor& d) {
    Tensor h = Tensor::empty(d.shape(), d.dtype());
    k->copy(h, d);
    k->synchronize();
    return h;
  }
  void expect_same_bytes(const Tensor& got, const Tensor& want, const std::string& what) {
    ASSERT_EQ(got.nbytes(), want.nbytes()) << what;
    EXPECT_EQ(std::memcmp(got.raw(), want.raw(), got.nbytes()), 0) << what << " differs from the MPI result";
  }

  Kernels* k = nullptr;
  std::unique_ptr<MpiComm> mpi;
  std::unique_ptr<NcclComm> nccl;
  int R = 0, S = 1;
};

TEST_F(NcclCommTest, Identity) {
  EXPECT_EQ(nccl->rank(), world_rank());
  EXPECT_EQ(nccl->name(), "nccl");
  EXPECT_FALSE(nccl->aborted());
  EXPECT_GE(nccl->device(), 0);
}

TEST_F(NcclCommTest, AllreduceMatchesMpi) {
  for (DType dt : kDtypes)
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min})
      for (int64_t n : {1, 1000, 65537}) {
        Tensor h = host_values({n}, dt, R), ref = host_values({n}, dt, R);
        mpi->allreduce(ref, op);
        Tensor d = dev(h);
        nccl->allreduce(d, op);
        expect_same_bytes(back(d), ref,
                          cat("allreduce ", dtype_name(dt), " ", reduce_op_name(op), " n=", n));
      }
}

TEST_F(NcclCommTest, BroadcastGatherScatterAllToAllMatchMpi) {
  for (DType dt : {DType::F32, DType::BF16, DType::I64}) {
    const int64_t chunk = 513;
    const std::string tag = dtype_name(dt);
    {  // broadcast from the last rank
      Tensor h = host_values({chunk}, dt, R), ref = host_values({chunk}, dt, R);
      mpi->broadcast(ref, S - 1);
      Tensor d = dev(h);
      nccl->broadcast(d, S - 1);
      expect_same_bytes(back(d), ref, "broadcast " + tag);
    }
    {
      Tensor in = host_values({chunk}, dt, R), ref = Tensor::empty({S * chunk}, dt);
      mpi->all_gather(ref, in);
      Tensor out = k->alloc({S * chunk}, dt);
      nccl->all_gather(out, dev(in));
      expect_same_bytes(back(out), ref, "all_gather " + tag);
    }
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max}) {
      Tensor in = host_values({S * chunk}, dt, R), ref = Tensor::empty({chunk}, dt);
      mpi->reduce_scatter(ref, in, op);
      Tensor out = k->alloc({chunk}, dt);
      nccl->reduce_scatter(out, dev(in), op);
      expect_same_bytes(back(out), ref, cat("reduce_scatter ", tag, " ", reduce_op_name(op)));
    }
    {
      Tensor in = host_values({S * chunk}, dt, R, 11), ref = Tensor::empty({S * chunk}, dt);
      mpi->all_to_all(ref, in);
      Tensor out = k->alloc({S * chunk}, dt);
      nccl->all_to_all(out, dev(in));
      expect_same_bytes(back(out), ref, "all_to_all " + tag);
    }
  }
}

TEST_F(NcclCommTest, LargeAllreduce) {
  const int64_t n = int64_t(1) << 23;  // 32 MiB of f32
  Tensor h = Tensor::empty({n}, DType::F32);
  for (int64_t i = 0; i < n; ++i) h.data<float>()[i] = float((i % 1000) + R);
  Tensor d = dev(h);
  nccl->allreduce(d);
  Tensor g = back(d);
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i)
    if (g.data<float>()[i] != float(S * (i % 1000) + S * (S - 1) / 2)) ++bad;
  EXPECT_EQ(bad, 0);
}

#ifdef TEMPER_HAVE_CUDA
TEST_F(NcclCommTest, BackendStreamOrdersAfterKernels) {
  auto* cuda = dynamic_cast<CudaKernels*>(k);
  ASSERT_NE(cuda, nullptr);
  NcclOptions opt;
  opt.stream = cuda->stream();
  opt.timeout_s = 120;
  auto c = NcclComm::create(MPI_COMM_WORLD, "nccl-stream", opt);
  const int64_t n = 1 << 20;
  Tensor h = Tensor::empty({n}, DType::F32);
  for (int64_t i = 0; i < n; ++i) h.data<float>()[i] = float(i % 17);
  Tensor d = dev(h);
  for (int it = 0; it < 3; ++it) {
    k->scale_inplace(d, 2.0f);  // queued on the backend stream, no host sync before the collective
    c->allreduce(d);
  }
  // x -> S * 2x, three times: x * (2S)^3
  Tensor g = back(d);
  const float f = float(8 * S * S * S);
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i)
    if (g.data<float>()[i] != float(i % 17) * f) ++bad;
  EXPECT_EQ(bad, 0);
}
#endif

TEST_F(NcclCommTest, HostPathAndConveniences) {
  EXPECT_EQ(nccl->allreduce_sum(double(R + 1)), double(S * (S + 1) / 2));
  EXPECT_EQ(nccl->allreduce_max_i64(R), S - 1);
  std::string s = R == 0 ? "from rank zero" : "";
  nccl->broadcast_string(s, 0);
  EXPECT_EQ(s, "from rank zero");
  Tensor h = host_values({10}, DType::F32, R), ref = host_values({10}, DType::F32, R);
  nccl->allreduce(h);
  mpi->allreduce(ref);
  expect_same_bytes(h, ref, "host allreduce");
  nccl->barrier();
}

TEST_F(NcclCommTest, ArgumentErrors) {
  Tensor d = k->alloc({10}, DType::F32), h = Tensor::empty({10 * S}, DType::F32);
  EXPECT_THROW(nccl->all_gather(h, d), Error);  // mixed host/device
  Tensor out = k->alloc({10 * S + 1}, DType::F32);
  EXPECT_THROW(nccl->all_gather(out, d), Error);  // wrong count
  Tensor in = k->alloc({10 * S}, DType::BF16);
  EXPECT_THROW(nccl->reduce_scatter(d, in), Error);  // dtype mismatch
  EXPECT_THROW(nccl->broadcast(d, S), Error);        // root out of range
  EXPECT_FALSE(nccl->aborted());
  // still usable afterwards
  Tensor x = dev(host_values({4}, DType::I32, R)), ref = host_values({4}, DType::I32, R);
  nccl->allreduce(x);
  mpi->allreduce(ref);
  expect_same_bytes(back(x), ref, "allreduce after argument errors");
}

// Last: leaves an aborted communicator behind on every rank.
TEST_F(NcclCommTest, TimeoutAbortsAndNamesTheCollective) {
  if (S < 2) GTEST_SKIP() << "needs two ranks";
  NcclOptions opt;
  opt.timeout_s = 2.0;
  auto c = NcclComm::create(MPI_COMM_WORLD, "lonely", opt);
  if (R == 0) {
    Tensor d = dev(host_values({1000}, DType::F32, R));
    try {
      c->allreduce(d);  // no other rank joins
      ADD_FAILURE() << "allreduce entered by one rank returned";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("allreduce"), std::string::npos) << msg;
      EXPECT_NE(msg.find("'lonely'"), std::string::npos) << msg;
      EXPECT_NE(msg.find("timeout of 2 s"), std::string::npos) << msg;
    }
    EXPECT_TRUE(c->aborted());
    EXPECT_THROW(c->allreduce(d), Error);  // the aborted communicator refuses further work
  }
  MPI_Barrier(MPI_COMM_WORLD);  // the others wait here, so rank 0 sees a timeout, not a peer's exit
  if (R != 0) c->abort();
  // a fresh communicator works after the abort
  Tensor x = dev(host_values({8}, DType::F32, R)), ref = host_values({8}, DType::F32, R);
  nccl->allreduce(x);
  mpi->allreduce(ref);
  expect_same_bytes(back(x), ref, "allreduce on another communicator after an abort");
}

}  // namespace
