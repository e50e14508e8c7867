// MpiComm collectives on known, rank-dependent values: every collective, every
// reduce op, several dtypes (bf16 included), the piecewise (chunked) paths,
// aliased buffers, sub-communicators, host conveniences and error messages.
// Runs under mpirun -np 2 and -np 4.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "parallel/mpi_comm.h"

using namespace temper;

namespace {

// Host tensor values as doubles, whatever the dtype (test values are exact in every dtype used).
void set_value(Tensor& t, int64_t i, double v) {
  switch (t.dtype()) {
    case DType::F32: t.data<float>()[i] = float(v); break;
    case DType::F64: t.data<double>()[i] = v; break;
    case DType::BF16: t.data<uint16_t>()[i] = float_to_bf16(float(v)); break;
    case DType::I32: t.data<int32_t>()[i] = int32_t(v); break;
    case DType::I64: t.data<int64_t>()[i] = int64_t(v); break;
    case DType::U8: t.data<uint8_t>()[i] = uint8_t(v); break;
    default: FAIL() << "dtype not used in tests";
  }
}
double get_value(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::F32: return t.data<float>()[i];
    case DType::F64: return t.data<double>()[i];
    case DType::BF16: return bf16_to_float(t.data<uint16_t>()[i]);
    case DType::I32: return t.data<int32_t>()[i];
    case DType::I64: return double(t.data<int64_t>()[i]);
    case DType::U8: return t.data<uint8_t>()[i];
    default: return NAN;
  }
}

const std::vector<DType> kDtypes = {DType::F32, DType::F64, DType::BF16, DType::I32, DType::I64, DType::U8};
const std::vector<DType> kSigned = {DType::F32, DType::F64, DType::BF16, DType::I32, DType::I64};

std::unique_ptr<MpiComm> world() { return MpiComm::dup(MPI_COMM_WORLD, "world"); }

// Values small enough to stay exact in bf16 and u8 after a 4-rank sum.
double val(int rank, int64_t i) { return rank * 10 + i; }

}  // namespace

TEST(Comm, RankAndSize) {
  auto c = world();
  int r, s;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  EXPECT_EQ(c->rank(), r);
  EXPECT_EQ(c->size(), s);
  EXPECT_EQ(c->name(), "world");
}

TEST(Comm, AllreduceSumMaxMinAllDtypes) {
  auto c = world();
  const int R = c->rank(), S = c->size();
  const int64_t n = 5;
  for (DType dt : kDtypes) {
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min}) {
      Tensor x = Tensor::empty({n}, dt);
      for (int64_t i = 0; i < n; ++i) set_value(x, i, val(R, i));
      c->allreduce(x, op);
      for (int64_t i = 0; i < n; ++i) {
        double want = op == ReduceOp::Sum ? 10.0 * S * (S - 1) / 2 + S * i
                      : op == ReduceOp::Max ? val(S - 1, i)
                                            : val(0, i);
        EXPECT_EQ(get_value(x, i), want) << dtype_name(dt) << " " << reduce_op_name(op) << " element " << i;
      }
    }
  }
}

TEST(Comm, AllreduceNegativeValuesMaxMin) {
  auto c = world();
  const int R = c->rank(), S = c->size();
  for (DType dt : kSigned) {
    Tensor mx = Tensor::empty({3}, dt), mn = Tensor::empty({3}, dt);
    for (int i = 0; i < 3; ++i) {  // rank 0 is the most negative, the last rank the largest
      set_value(mx, i, -8.0 + 3 * R - i);
      set_value(mn, i, -8.0 + 3 * R - i);
    }
    c->allreduce(mx, ReduceOp::Max);
    c->allreduce(mn, ReduceOp::Min);
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(get_value(mx, i), -8.0 + 3 * (S - 1) - i) << dtype_name(dt);
      EXPECT_EQ(get_value(mn, i), -8.0 - i) << dtype_name(dt);
    }
  }
}

TEST(Comm, Bf16SumOfFractions) {
  // Multiples of 2^-7 with few significant bits: every partial sum is exact in bf16 (8 significant
  // bits), so the result does not depend on the reduction order. Summing the raw uint16 patterns
  // (a missing bf16 op) would give garbage here.
  auto c = world();
  const int R = c->rank(), S = c->size();
  Tensor x = Tensor::empty({3}, DType::BF16);
  set_value(x, 0, (R + 1) / 128.0);
  set_value(x, 1, -0.5);
  set_value(x, 2, 1536.0);
  c->allreduce(x);
  EXPECT_EQ(get_value(x, 0), S * (S + 1) / 2 / 128.0);
  EXPECT_EQ(get_value(x, 1), -0.5 * S);
  EXPECT_EQ(get_value(x, 2), 1536.0 * S);
}

TEST(Comm, ReduceScatter) {
  auto c = world();
  const int R = c->rank(), S = c->size();
  const int64_t n = 3;
  for (DType dt : kDtypes) {
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min}) {
      Tensor in = Tensor::empty({S * n}, dt), out = Tensor::empty({n}, dt);
      for (int64_t j = 0; j < S * n; ++j) set_value(in, j, val(R, j));
      c->reduce_scatter(out, in, op);
      for (int64_t k = 0; k < n; ++k) {
        const int64_t j = R * n + k;  // this rank's chunk
        double want = op == ReduceOp::Sum ? 10.0 * S * (S - 1) / 2 + S * j
                      : op == ReduceOp::Max ? val(S - 1, j)
                                            : val(0, j);
        EXPECT_EQ(get_value(out, k), want) << dtype_name(dt) << " " << reduce_op_name(op) << " element " << k;
      }
    }
  }
}

TEST(Comm, AllGather) {
  auto c = world();
  const int R = c->rank(), S = c->size();
  const int64_t n = 4;
  for (DType dt : kDtypes) {
    Tensor in = Tensor::empty({n}, dt), out = Tensor::empty({S, n}, dt);
    for (int64_t k = 0; k < n; ++k) set_value(in, k, val(R, k));
    c->all_gather(out, in);
    for (int q = 0; q < S; ++q)
      for (int64_t k = 0; k < n; ++k) EXPECT_EQ(get_value(out, q * n + k), val(q, k)) << dtype_name(dt);
  }
}

TEST(Comm, AllToAll) {
  auto c = world();
  const int R = c->rank(), S = c->size();
  const int64_t n = 2;
  for (DType dt : kDtypes) {
    Tensor in = Tensor::empty({S * n}, dt), out = Tensor::empty({S * n}, dt);
    for (int j = 0; j < S; ++j)  // chunk j is addressed to rank j
      for (int64_t k = 0; k < n; ++k) set_value(in, j * n + k, R * 40 + j * 10 + k);
    c->all_to_all(out, in);
    for (int i = 0; i < S; ++i)  // chunk i came from rank i
      for (int64_t k = 0; k < n; ++k) EXPECT_EQ(get_value(out, i * n + k), i * 40 + R * 10 + k) << dtype_name(dt);
  }
}

TEST(Comm, BroadcastFromLastRank) {
  auto c = world();
  const int R = c->rank(), S = c->size();
  for (DType dt : kDtypes) {
    Tensor x = Tensor::empty({6}, dt);
    for (int i = 0; i < 6; ++i) set_value(x, i, R == S - 1 ? 3 * i + 1 : 0);
    c->broadcast(x, S - 1);
    for (int i = 0; i < 6; ++i) EXPECT_EQ(get_value(x, i), 3 * i + 1) << dtype_name(dt);
  }
}

TEST(Comm, ChunkedPathsMatchDirect) {
  // A tiny max chunk forces every collective through its piecewise path (7 = 3 + 3 + 1).
  auto c = world();
  c->set_max_chunk_elems(3);
  const int R = c->rank(), S = c->size();
  const int64_t n = 7;
  for (DType dt : {DType::F32, DType::BF16, DType::I64}) {
    Tensor x = Tensor::empty({n}, dt);
    for (int64_t i = 0; i < n; ++i) set_value(x, i, val(R, i));
    c->allreduce(x);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(get_value(x, i), 10.0 * S * (S - 1) / 2 + S * i);

    Tensor rin = Tensor::empty({S * n}, dt), rout = Tensor::empty({n}, dt);
    for (int64_t j = 0; j < S * n; ++j) set_value(rin, j, val(R, j));
    c->reduce_scatter(rout, rin, ReduceOp::Max);
    for (int64_t k = 0; k < n; ++k) EXPECT_EQ(get_value(rout, k), val(S - 1, R * n + k));

    Tensor gin = Tensor::empty({n}, dt), gout = Tensor::empty({S * n}, dt);
    for (int64_t k = 0; k < n; ++k) set_value(gin, k, val(R, k));
    c->all_gather(gout, gin);
    for (int q = 0; q < S; ++q)
      for (int64_t k = 0; k < n; ++k) EXPECT_EQ(get_value(gout, q * n + k), val(q, k));

    Tensor ain = Tensor::empty({S * n}, dt), aout = Tensor::empty({S * n}, dt);
    for (int j = 0; j < S; ++j)
      for (int64_t k = 0; k < n; ++k) set_value(ain, j * n + k, R * 40 + j * 10 + k);
    c->all_to_all(aout, ain);
    for (int i = 0; i < S; ++i)
      for (int64_t k = 0; k < n; ++k) EXPECT_EQ(get_value(aout, i * n + k), i * 40 + R * 10 + k);

    Tensor b = Tensor::empty({n}, dt);
    for (int64_t i = 0; i < n; ++i) set_value(b, i, R == 0 ? i + 2 : 0);
    c->broadcast(b, 0);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(get_value(b, i), i + 2);
  }
}

TEST(Comm, AliasedBuffers) {
  auto c = world();
  const int R = c->rank(), S = c->size();
  const int64_t n = 4;
  for (int64_t chunk : {int64_t(1) << 30, int64_t(3)}) {
    c->set_max_chunk_elems(chunk);
    // all_gather with the input being this rank's own slot of the output (MPI_IN_PLACE form)
    Tensor out = Tensor::empty({S, n}, DType::F32);
    for (int64_t k = 0; k < n; ++k) out.data<float>()[R * n + k] = float(val(R, k));
    Tensor mine = out.rows(R, R + 1);
    c->all_gather(out, mine);
    for (int q = 0; q < S; ++q)
      for (int64_t k = 0; k < n; ++k) EXPECT_EQ(out.data<float>()[q * n + k], val(q, k)) << "chunk " << chunk;
    // reduce_scatter whose output is the first chunk of its own input
    Tensor in = Tensor::empty({S, n}, DType::F64);
    for (int64_t j = 0; j < S * n; ++j) in.data<double>()[j] = val(R, j);
    Tensor first = in.rows(0, 1);
    c->reduce_scatter(first, in);
    for (int64_t k = 0; k < n; ++k)
      EXPECT_EQ(first.data<double>()[k], 10.0 * S * (S - 1) / 2 + S * double(R * n + k)) << "chunk " << chunk;
    // all_to_all in place
    Tensor a = Tensor::empty({S}, DType::I32);
    for (int j = 0; j < S; ++j) a.data<int32_t>()[j] = R * 10 + j;
    c->all_to_all(a, a);
    for (int i = 0; i < S; ++i) EXPECT_EQ(a.data<int32_t>()[i], i * 10 + R) << "chunk " << chunk;
  }
}

TEST(Comm, SubCommunicatorsEvenOdd) {
  int R, S;
  MPI_Comm_rank(MPI_COMM_WORLD, &R);
  MPI_Comm_size(MPI_COMM_WORLD, &S);
  MPI_Comm half;
  MPI_Comm_split(MPI_COMM_WORLD, R % 2, R, &half);
  MpiComm c(half, "parity", true);
  EXPECT_EQ(c.rank(), R / 2);
  EXPECT_EQ(c.size(), (S - R % 2 + 1) / 2);
  int64_t want = 0;
  for (int q = R % 2; q < S; q += 2) want += int64_t(1) << q;  // bitmask of the members
  EXPECT_EQ(c.allreduce_sum_i64(int64_t(1) << R), want);
  Tensor g = Tensor::empty({c.size()}, DType::I32);
  int32_t me = R;
  c.all_gather(g, Tensor::wrap(&me, {1}, DType::I32));
  for (int i = 0; i < c.size(); ++i) EXPECT_EQ(g.data<int32_t>()[i], R % 2 + 2 * i);
}

TEST(Comm, HostConveniences) {
  auto c = world();
  const int R = c->rank(), S = c->size();
  EXPECT_DOUBLE_EQ(c->allreduce_sum(R + 0.25), S * (S - 1) / 2.0 + 0.25 * S);
  EXPECT_EQ(c->allreduce_max(-1.5 * R), 0.0);
  EXPECT_EQ(c->allreduce_min(-1.5 * R), -1.5 * (S - 1));
  const int64_t big = int64_t(1) << 40;  // beyond int32 and exact only as an integer sum
  EXPECT_EQ(c->allreduce_sum_i64(big + R), S * big + S * (S - 1) / 2);
  EXPECT_EQ(c->allreduce_max_i64(big * R), big * (S - 1));

  std::string s = R == 1 ? std::string("root\0with nul \xe2\x9c\x93", 17) : std::string(R + 3, 'x');
  c->broadcast_string(s, 1);
  EXPECT_EQ(s, std::string("root\0with nul \xe2\x9c\x93", 17));
  std::string e = R == 0 ? "" : "not empty";
  c->broadcast_string(e, 0);
  EXPECT_EQ(e, "");
}

TEST(Comm, ZeroElementCollectivesAreNoOps) {
  auto c = world();
  Tensor z = Tensor::empty({0}, DType::F32);
  c->allreduce(z);
  c->all_gather(z, z);
  c->reduce_scatter(z, z);
  c->all_to_all(z, z);
  c->broadcast(z, 0);
  EXPECT_EQ(c->allreduce_sum_i64(1), c->size());  // the communicator is still in step
}

namespace {
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(Comm, ErrorsNameCollectiveAndSizes) {
  auto c = world();
  const int S = c->size();
  Tensor in = Tensor::empty({S * 4 + 1}, DType::F32), out = Tensor::empty({4}, DType::F32);
  std::string m = error_of([&] { c->reduce_scatter(out, in); });
  EXPECT_NE(m.find("reduce_scatter on comm 'world'"), std::string::npos) << m;
  EXPECT_NE(m.find("input has " + std::to_string(S * 4 + 1) + " elements"), std::string::npos) << m;
  EXPECT_NE(m.find(std::to_string(S) + " × 4 = " + std::to_string(S * 4)), std::string::npos) << m;

  Tensor gout = Tensor::empty({S * 3 + 2}, DType::F32), gin = Tensor::empty({3}, DType::F32);
  m = error_of([&] { c->all_gather(gout, gin); });
  EXPECT_NE(m.find("all_gather"), std::string::npos) << m;
  EXPECT_NE(m.find("output has " + std::to_string(S * 3 + 2)), std::string::npos) << m;

  Tensor odd = Tensor::empty({S * 2 + 1}, DType::F32);
  m = error_of([&] { c->all_to_all(odd, odd); });
  EXPECT_NE(m.find("all_to_all"), std::string::npos) << m;
  EXPECT_NE(m.find("divisible"), std::string::npos) << m;

  float dummy[8];
  Tensor dev = Tensor::wrap(dummy, {8}, DType::F32, Device::CUDA);  // never dereferenced: rejected first
  m = error_of([&] { c->allreduce(dev); });
  EXPECT_NE(m.find("allreduce"), std::string::npos) << m;
  EXPECT_NE(m.find("cuda"), std::string::npos) << m;

  Tensor half = Tensor::empty({4}, DType::F16);
  m = error_of([&] { c->allreduce(half); });
  EXPECT_NE(m.find("f16"), std::string::npos) << m;

  Tensor i32 = Tensor::empty({4}, DType::I32), f32 = Tensor::empty({S * 4}, DType::F32);
  m = error_of([&] { c->all_gather(f32, i32); });
  EXPECT_NE(m.find("input is i32 but output is f32"), std::string::npos) << m;

  m = error_of([&] { c->broadcast(f32, S); });
  EXPECT_NE(m.find("root " + std::to_string(S) + " is not a rank"), std::string::npos) << m;

  // every rank threw locally, before any MPI call: the communicator is still in step
  EXPECT_EQ(c->allreduce_sum_i64(1), S);
}
