// The multi-tensor AdamW (Kernels::adamw_step_many) on the cpu reference: the
// same update as adamw_step per tensor with each tensor's own weight decay, the
// compute copy written as copy() would (bf16 rounded to nearest even); the
// AdamW optimizer through it (weight decay only where `decay`, compute copies
// current after step()); and the Decoder's one gradient buffer (contiguous,
// aligned views, zero_grad clears all of it).
#include <gtest/gtest.h>

#include <cmath>

#include "core/bf16.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "model/decoder.h"
#include "train/adamw.h"
#include "train/model_state.h"

namespace temper {
namespace {

Tensor rand_tensor(const Shape& s, DType dt, Rng& rng, double lo, double hi) {
  Tensor t = Tensor::empty(s, dt, Device::CPU);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const double x = lo + (hi - lo) * rng.uniform();
    if (dt == DType::F32) t.data<float>()[i] = float(x);
    else t.data<double>()[i] = x;
  }
  return t;
}

Tensor clone(const Tensor& t) {
  Tensor c = Tensor::empty(t.shape(), t.dtype(), Device::CPU);
  if (t.nbytes()) std::memcpy(c.raw(), t.raw(), t.nbytes());
  return c;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(AdamWMany, EqualsPerTensorStepsWithOwnDecayAndWritesComputeCopies) {
  auto K = make_cpu_kernels();
  Rng rng(11);
  const std::vector<Shape> shapes = {{1}, {7}, {33, 5}, {4096}, {0}};
  const float decays[] = {0.1f, 0.0f, 0.3f, 0.05f, 0.2f};
  std::vector<Kernels::AdamWTensor> many;
  std::vector<Tensor> ref_p, ref_m, ref_v, grads;
  for (size_t i = 0; i < shapes.size(); ++i) {
    Kernels::AdamWTensor t;
    t.param = rand_tensor(shapes[i], DType::F32, rng, -1, 1);
    t.grad = rand_tensor(shapes[i], DType::F32, rng, -1, 1);
    t.m = rand_tensor(shapes[i], DType::F32, rng, -0.01, 0.01);
    t.v = rand_tensor(shapes[i], DType::F32, rng, 1e-6, 1e-4);
    if (i != 1) t.compute = Tensor::empty(shapes[i], i == 2 ? DType::F32 : DType::BF16, Device::CPU);
    t.weight_decay = decays[i];
    ref_p.push_back(clone(t.param));
    ref_m.push_back(clone(t.m));
    ref_v.push_back(clone(t.v));
    many.push_back(t);
  }
  AdamWParams ap;
  ap.lr = 1e-2f;
  ap.weight_decay = 7.0f;  // not used: each tensor's own applies
  ap.grad_scale = 0.5f;
  for (int64_t step = 1; step <= 3; ++step) {
    ap.step = step;
    K->adamw_step_many(many, ap);
    for (size_t i = 0; i < shapes.size(); ++i) {
      AdamWParams one = ap;
      one.weight_decay = decays[i];
      K->adamw_step(ref_p[i], many[i].grad, ref_m[i], ref_v[i], one);
    }
  }
  for (size_t i = 0; i < shapes.size(); ++i) {
    EXPECT_TRUE(same_bytes(many[i].param, ref_p[i])) << "param " << i;
    EXPECT_TRUE(same_bytes(many[i].m, ref_m[i])) << "m " << i;
    EXPECT_TRUE(same_bytes(many[i].v, ref_v[i])) << "v " << i;
    if (!many[i].compute.defined()) continue;
    const Tensor& c = many[i].compute;
    for (int64_t j = 0; j < c.numel(); ++j) {
      const float p = ref_p[i].data<float>()[j];
      if (c.dtype() == DType::BF16) ASSERT_EQ(c.data<uint16_t>()[j], float_to_bf16(p)) << i << " " << j;
      else ASSERT_EQ(c.data<float>()[j], p) << i << " " << j;
    }
  }
  // The decay differs between tensors: the tensor without decay moved less toward 0
  // than it would have with the (unused) shared 7.0.
  Tensor p0 = rand_tensor({3}, DType::F32, rng, 1, 2), g0 = Tensor::zeros({3}, DType::F32);
  Tensor m0 = Tensor::zeros({3}, DType::F32), v0 = Tensor::zeros({3}, DType::F32);
  Tensor before = clone(p0);
  ap.step = 1;
  K->adamw_step_many({{p0, g0, m0, v0, Tensor(), 0.0f}}, ap);
  EXPECT_TRUE(same_bytes(p0, before)) << "zero gradient and zero decay leave the weights";
}

TEST(AdamWMany, OptimizerRefreshesComputeCopiesAndDecaysOnlyMatrices) {
  auto K = make_cpu_kernels();
  Rng rng(5);
  std::vector<ParamRef> refs;
  for (int i = 0; i < 3; ++i) {
    ParamRef r;
    r.name = "p" + std::to_string(i);
    r.value = rand_tensor({40}, DType::F32, rng, -1, 1);
    r.grad = Tensor::zeros({40}, DType::F32);
    r.decay = i != 1;
    r.compute = Tensor::empty({40}, DType::BF16, Device::CPU);
    refs.push_back(r);
  }
  std::vector<Tensor> before;
  for (auto& r : refs) before.push_back(clone(r.value));
  AdamWConfig cfg;
  cfg.weight_decay = 0.5;
  AdamW opt(*K, refs, cfg);
  EXPECT_TRUE(opt.refreshes_compute());
  opt.step(0.1, 1.0);  // zero gradients: only weight decay moves the weights
  for (int i = 0; i < 3; ++i) {
    for (int64_t j = 0; j < 40; ++j) {
      const float b = before[size_t(i)].data<float>()[j], a = refs[size_t(i)].value.data<float>()[j];
      if (i == 1) EXPECT_EQ(a, b) << "no decay on p1";
      else EXPECT_NEAR(a, b * (1.0 - 0.1 * 0.5), 1e-6) << "decay on p" << i;
      EXPECT_EQ(refs[size_t(i)].compute.data<uint16_t>()[j], float_to_bf16(a)) << "compute copy of p" << i;
    }
  }
  refs[0].compute = Tensor();
  AdamW partial(*K, refs, cfg);
  EXPECT_FALSE(partial.refreshes_compute()) << "a parameter without a compute copy";
}

TEST(AdamWMany, DecoderGradientsAreOneZeroedBuffer) {
  auto K = make_cpu_kernels();
  ModelConfig c;
  c.vocab_size = 50, c.d_model = 24, c.n_layers = 2, c.n_heads = 2, c.n_kv_heads = 1, c.head_dim = 12;
  c.ffn_dim = 40;
  c.qkv_bias = true;
  c.tie_embeddings = true;
  Decoder model(c, *K, DType::F32);
  const auto& ps = model.params();
  ASSERT_GT(ps.size(), 3u);
  const char* base = static_cast<const char*>(ps[0].grad.raw());
  int64_t at = 0;
  for (const auto& p : ps) {
    ASSERT_TRUE(p.grad.defined()) << p.name;
    const int64_t off = (static_cast<const char*>(p.grad.raw()) - base) / 4;
    EXPECT_EQ(off % 64, 0) << p.name << " starts 256-byte aligned";
    EXPECT_GE(off, at) << p.name << " follows the previous gradient";
    EXPECT_EQ(p.grad.shape(), p.value.shape()) << p.name;
    at = off + p.grad.numel();
  }
  for (auto& p : model.params())
    for (int64_t j = 0; j < p.grad.numel(); ++j) p.grad.data<float>()[j] = 1.0f + float(j);
  model.zero_grad();
  for (const auto& p : model.params())
    for (int64_t j = 0; j < p.grad.numel(); ++j) ASSERT_EQ(p.grad.data<float>()[j], 0.0f) << p.name << " " << j;
  // param_refs: no compute copy where value is it (cpu computes in f32).
  for (const auto& r : param_refs(model)) EXPECT_FALSE(r.compute.defined()) << r.name;
}

}  // namespace
}  // namespace temper
