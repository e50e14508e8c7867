// StagedComm (parallel.device_comm = mpi): every collective on backend tensors
// (f32, bf16; sum and max) gives exactly MpiComm's result on host copies of the
// same rank-dependent values. With a GPU the tensors live on the device, the
// ranks share the GPUs round-robin (several ranks on one GPU, which NCCL
// refuses) and the staging copies are exercised; without one the CPU backend
// checks the host pass-through. Runs under mpirun -np 2 and -np 4.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "core/bf16.h"
#include "kernels/kernels.h"
#include "parallel/mpi_comm.h"
#include "parallel/staged_comm.h"

using namespace temper;

namespace {

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// The CUDA backend (device rank % devices) when this build and machine have one, else the Kokkos
// backend when built with it (its tensors are not CPU tensors, so the staging copies run), else the
// CPU backend (host pass-through).
Kernels& backend() {
  static std::unique_ptr<Kernels> k = [] {
    std::unique_ptr<Kernels> b;
    for (const char* name : {"cuda", "kokkos"}) {
      int ok = 1;
      try {
        b = make_kernels(name, world_rank());
      } catch (const std::exception& e) {
        ok = 0;
        if (world_rank() == 0) std::printf("StagedComm: no %s backend (%s)\n", name, e.what());
      }
      int all = 0;
      MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
      if (all) return b;
      b.reset();
    }
    if (world_rank() == 0) std::printf("StagedComm on the CPU backend (host pass-through)\n");
    return make_cpu_kernels();
  }();
  return *k;
}

// Host values of rank r: distinct per rank and element, exact in bf16.
Tensor host_values(int64_t n, DType dt, int r) {
  Tensor h = Tensor::empty({n}, dt, Device::CPU);
  for (int64_t i = 0; i < n; ++i) {
    const float v = float((r + 1) * 16 + (i % 13)) * (i % 2 ? -0.5f : 1.0f);
    if (dt == DType::F32) h.data<float>()[i] = v;
    else h.data<uint16_t>()[i] = float_to_bf16(v);
  }
  return h;
}

Tensor on_backend(Kernels& k, const Tensor& h) {
  Tensor d = k.alloc(h.shape(), h.dtype());
  k.copy(d, h);
  return d;
}

Tensor to_host(Kernels& k, const Tensor& d) {
  Tensor h = Tensor::empty(d.shape(), d.dtype(), Device::CPU);
  k.copy(h, d);
  return h;
}

void expect_same(const Tensor& a, const Tensor& b, const char* what) {
  ASSERT_EQ(a.numel(), b.numel()) << what;
  EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0) << what;
}

class Staged : public ::testing::Test {
 protected:
  void SetUp() override {
    host = MpiComm::dup(MPI_COMM_WORLD, "reference");
    Kernels* k = &backend();
    staged = std::make_unique<StagedComm>(
        MpiComm::dup(MPI_COMM_WORLD, "staged"), [k](Tensor& dst, const Tensor& src) { k->copy(dst, src); },
        [k](const Shape& sh, DType dt) { return k->alloc_host(sh, dt); });
  }
  std::unique_ptr<MpiComm> host;
  std::unique_ptr<StagedComm> staged;
};

}  // namespace

TEST_F(Staged, EveryCollectiveEqualsMpiOnHostCopies) {
  Kernels& k = backend();
  const int r = staged->rank(), P = staged->size();
  EXPECT_EQ(r, world_rank());
  EXPECT_EQ(P, host->size());
  for (DType dt : {DType::F32, DType::BF16}) {
    const int64_t n = 6 * P;  // divisible by the rank count
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max}) {
      Tensor want = host_values(n, dt, r), x = on_backend(k, want);
      host->allreduce(want, op);
      staged->allreduce(x, op);
      EXPECT_EQ(x.device(), k.device());
      expect_same(to_host(k, x), want, "allreduce");

      Tensor in_h = host_values(n, dt, r), out_h = Tensor::empty({n / P}, dt, Device::CPU);
      host->reduce_scatter(out_h, in_h, op);
      Tensor out = k.alloc({n / P}, dt);
      staged->reduce_scatter(out, on_backend(k, host_values(n, dt, r)), op);
      expect_same(to_host(k, out), out_h, "reduce_scatter");
    }
    Tensor g_h = Tensor::empty({n * P}, dt, Device::CPU), g = k.alloc({n * P}, dt);
    host->all_gather(g_h, host_values(n, dt, r));
    staged->all_gather(g, on_backend(k, host_values(n, dt, r)));
    expect_same(to_host(k, g), g_h, "all_gather");

    Tensor a_h = Tensor::empty({n}, dt, Device::CPU), a = k.alloc({n}, dt);
    host->all_to_all(a_h, host_values(n, dt, r));
    staged->all_to_all(a, on_backend(k, host_values(n, dt, r)));
    expect_same(to_host(k, a), a_h, "all_to_all");

    Tensor b_h = host_values(n, dt, r), b = on_backend(k, b_h);
    host->broadcast(b_h, P - 1);
    staged->broadcast(b, P - 1);
    expect_same(to_host(k, b), b_h, "broadcast");
  }
  // host conveniences and host tensors pass through
  EXPECT_EQ(staged->allreduce_sum(double(r + 1)), double(P * (P + 1) / 2));
  Tensor h = host_values(4, DType::F32, r), want = host_values(4, DType::F32, r);
  staged->allreduce(h);
  host->allreduce(want);
  expect_same(h, want, "host allreduce");
}

// The staging buffers are kept between collectives: sizes that grow, shrink and grow again, two
// dtypes interleaved and 2-D shapes all give MpiComm's result (a stale or too small buffer, or a
// view of the wrong shape, would not).
TEST_F(Staged, ReusedBuffersGrowAndShrink) {
  Kernels& k = backend();
  const int r = staged->rank(), P = staged->size();
  for (int64_t rows : {1, 300, 2, 1000, 7}) {
    for (DType dt : {DType::BF16, DType::F32}) {
      const int64_t n = rows * 4 * P;
      Tensor want = host_values(n, dt, r).reshape({rows * P, 4}), x = on_backend(k, want);
      host->allreduce(want, ReduceOp::Sum);
      staged->allreduce(x, ReduceOp::Sum);
      ASSERT_EQ(x.shape(), want.shape());
      expect_same(to_host(k, x), want, "allreduce after reuse");

      Tensor out_h = Tensor::empty({rows, 4}, dt, Device::CPU), out = k.alloc({rows, 4}, dt);
      host->reduce_scatter(out_h, host_values(n, dt, r).reshape({rows * P, 4}), ReduceOp::Sum);
      staged->reduce_scatter(out, on_backend(k, host_values(n, dt, r).reshape({rows * P, 4})), ReduceOp::Sum);
      expect_same(to_host(k, out), out_h, "reduce_scatter after reuse");

      Tensor g_h = Tensor::empty({n * P}, dt, Device::CPU), g = k.alloc({n * P}, dt);
      host->all_gather(g_h, host_values(n, dt, r));
      staged->all_gather(g, on_backend(k, host_values(n, dt, r)));
      expect_same(to_host(k, g), g_h, "all_gather after reuse");
    }
  }
}
