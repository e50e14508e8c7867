// ProfilingKernels: forwards to the inner backend (results identical to direct
// calls), counts calls per op only while enabled, sorts the report by time and
// its percentages add up to 100.
#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "kernels/cpu/profiling_kernels.h"

namespace temper {
namespace {

Tensor filled(const Shape& s, float start) {
  Tensor t = Tensor::empty(s, DType::F32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = start + 0.01f * float(i % 97);
  return t;
}

TEST(ProfilingKernels, ForwardsAndCounts) {
  auto cpu = make_cpu_kernels();
  ProfilingKernels prof(*cpu);
  EXPECT_EQ(prof.name(), "cpu");
  EXPECT_EQ(prof.device(), Device::CPU);
  EXPECT_EQ(prof.act_dtype(), cpu->act_dtype());

  Tensor x = filled({64, 32}, 0.5f), w = filled({48, 32}, -0.2f);
  Tensor out = prof.alloc({64, 48}, DType::F32), ref = Tensor::empty({64, 48}, DType::F32);
  prof.matmul_forward(out, x, w, nullptr);
  prof.matmul_forward(out, x, w, nullptr);
  cpu->matmul_forward(ref, x, w, nullptr);
  EXPECT_EQ(std::memcmp(out.raw(), ref.raw(), ref.nbytes()), 0);
  EXPECT_DOUBLE_EQ(prof.sum_squares(x), cpu->sum_squares(x));
  prof.scale_inplace(out, 2.0f);
  cpu->scale_inplace(ref, 2.0f);
  EXPECT_EQ(std::memcmp(out.raw(), ref.raw(), ref.nbytes()), 0);

  prof.set_enabled(false);
  prof.scale_inplace(out, 1.0f);  // not recorded
  prof.set_enabled(true);

  auto st = prof.stats();
  std::map<std::string, int64_t> calls;
  for (const auto& s : st) calls[s.op] = s.calls;
  EXPECT_EQ(calls["matmul_forward"], 2);
  EXPECT_EQ(calls["sum_squares"], 1);
  EXPECT_EQ(calls["scale_inplace"], 1);
  EXPECT_EQ(calls["alloc"], 1);
  EXPECT_EQ(st.size(), 4u);
  for (size_t i = 1; i < st.size(); ++i) EXPECT_GE(st[i - 1].seconds, st[i].seconds);
  double sum = 0;
  for (const auto& s : st) sum += s.seconds;
  EXPECT_DOUBLE_EQ(sum, prof.total_seconds());

  const std::string rep = prof.report("title");
  EXPECT_EQ(rep.rfind("title\n", 0), 0u);
  EXPECT_NE(rep.find("matmul_forward"), std::string::npos);
  EXPECT_NE(rep.find("total"), std::string::npos);
  prof.reset();
  EXPECT_TRUE(prof.stats().empty());
  EXPECT_EQ(prof.total_seconds(), 0.0);
}

TEST(ProfilingKernels, ErrorsPassThroughUnrecorded) {
  auto cpu = make_cpu_kernels();
  ProfilingKernels prof(*cpu);
  Tensor x = filled({4, 8}, 0.1f), w = filled({3, 7}, 0.1f), out = Tensor::empty({4, 3}, DType::F32);
  EXPECT_THROW(prof.matmul_forward(out, x, w, nullptr), Error);
  EXPECT_TRUE(prof.stats().empty());
}

}  // namespace
}  // namespace temper
