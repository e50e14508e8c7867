// CUDA attention_cached (kernels/cuda/attention_cached.cu) against the f32 CPU
// oracle, aimed at the tensor-core path (D = 64 and 128, 16-byte aligned rows):
// GQA groups of 1, 6, 8 and 10 query heads (10: two head chunks per kv head),
// ragged positions per slot (contexts 1 .. past several tiles), the split count
// chosen automatically or forced (TEMPER_ATTN_CACHED_SPLITS: one, a few, more
// than a short context has positions), blocks of 2, 3 and 4 warps
// (TEMPER_ATTN_CACHED_WARPS), prefill (many tokens of one slot at positions 0 .. L-1), large
// scores (peaked softmax), a bad slot and a position past the cache (NaN for
// that token only), the same bits on a second call, and the generic path on the
// same data (TEMPER_ATTN_CACHED=generic), replays of a CUDA graph recorded once
// while the positions on the device change. Cache positions at or past a slot's
// length hold large keys and values, so any read past pos[n] shows. Outputs are
// NaN-poisoned; without a GPU every test skips.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "gpu_test_util.h"

namespace temper::gpu_test {
namespace {

constexpr DType BF16 = DType::BF16, F32 = DType::F32;

struct Shape4 {
  int64_t S, T, H, KVH, D;
  std::string tag() const {
    return "S=" + std::to_string(S) + " T=" + std::to_string(T) + " H=" + std::to_string(H) +
           " KVH=" + std::to_string(KVH) + " D=" + std::to_string(D);
  }
};

// Sets an environment variable for the scope (restores the previous value).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    const char* was = std::getenv(name);
    had_ = was != nullptr;
    if (had_) old_ = was;
    if (value.empty())
      unsetenv(name);
    else
      setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (had_)
      setenv(name_, old_.c_str(), 1);
    else
      unsetenv(name_);
  }

 private:
  const char* name_;
  bool had_ = false;
  std::string old_;
};

class CudaAttentionCachedTest : public CudaVsCpuTest {
 protected:
  CudaAttentionCachedTest() : CudaVsCpuTest(4242) {}

  // Random cache; positions at or past lens[s] get keys 8 and values 100.
  void fill(Tensor& kc, Tensor& vc, const std::vector<int32_t>& lens, const Shape4& c) {
    kc = rand({c.S, c.T, c.KVH, c.D});
    vc = rand({c.S, c.T, c.KVH, c.D});
    for (int64_t s = 0; s < c.S; ++s)
      for (int64_t p = lens[size_t(s)]; p < c.T; ++p)
        for (int64_t x = 0; x < c.KVH * c.D; ++x) {
          kc.data<float>()[(s * c.T + p) * c.KVH * c.D + x] = 8.0f;
          vc.data<float>()[(s * c.T + p) * c.KVH * c.D + x] = 100.0f;
        }
  }

  // q scaled by a power of two (exact in bf16): larger scores, a peaked softmax.
  Tensor query(int64_t N, const Shape4& c, float scale) {
    Tensor q = rand({N, c.H, c.D});
    for (int64_t i = 0; i < q.numel(); ++i) q.data<float>()[i] *= scale;
    return q;
  }

  // GPU vs CPU for the given tokens; returns the GPU output (host f32).
  Tensor check(const Tensor& q, const Tensor& kc, const Tensor& vc, const Tensor& kc_d, const Tensor& vc_d,
               const std::vector<int32_t>& slot, const std::vector<int32_t>& pos, const std::string& what) {
    const int64_t N = q.dim(0);
    Tensor out = poisoned(*g, q.shape(), BF16), ref = Tensor::empty(q.shape(), F32);
    g->attention_cached(out, bf(q), kc_d, vc_d, i32(slot), i32(pos));
    cpu->attention_cached(ref, q, kc, vc, host_i32(slot), host_i32(pos));
    Tensor got = host(out);
    expect_close(got, ref, 1e-2, 2e-2, what + " N=" + std::to_string(N));
    return got;
  }
};

// Decode: one token per slot at ragged positions, every split setting.
TEST_F(CudaAttentionCachedTest, DecodeGroupsAndSplitsMatchCpu) {
  const std::vector<Shape4> shapes = {
      {12, 320, 12, 2, 128},  // Qwen2-1.5B heads: group 6
      {12, 320, 16, 2, 64},   // group 8
      {12, 200, 8, 1, 128},   // group 8, one kv head
      {12, 200, 6, 1, 64},    // group 6
      {12, 150, 20, 2, 128},  // group 10: two head chunks (8 + 2)
      {12, 130, 4, 4, 64},    // no GQA
  };
  for (const Shape4& c : shapes) {
    // contexts (pos + 1): 1, 2, 15, 16, 17, 63, 64, 65, 100, 128, 129, T
    std::vector<int32_t> lens = {1, 2, 15, 16, 17, 63, 64, 65, 100, 128, 129, int32_t(c.T)};
    for (auto& l : lens) l = std::min<int32_t>(l, int32_t(c.T));
    Tensor kc, vc;
    fill(kc, vc, lens, c);
    Tensor kc_d = bf(kc), vc_d = bf(vc);
    std::vector<int32_t> slot, pos;
    for (int64_t s = c.S - 1; s >= 0; --s) {  // not in slot order
      slot.push_back(int32_t(s));
      pos.push_back(lens[size_t(s)] - 1);
    }
    const int64_t N = int64_t(slot.size());
    for (const float scale : {1.0f, 8.0f}) {
      const Tensor q = query(N, c, scale);
      // automatic, one split, splits shorter than a tile for most tokens, more splits than
      // a short context has positions (empty splits)
      for (const char* splits : {"", "1", "3", "40"}) {
        for (const char* warps : {"", "2", "4"}) {
          ScopedEnv env("TEMPER_ATTN_CACHED_SPLITS", splits);
          ScopedEnv env2("TEMPER_ATTN_CACHED_WARPS", warps);
          check(q, kc, vc, kc_d, vc_d, slot, pos,
                "decode " + c.tag() + " q x" + std::to_string(int(scale)) + " splits=" + (*splits ? splits : "auto") +
                    " warps=" + (*warps ? warps : "3"));
        }
      }
      {
        ScopedEnv env("TEMPER_ATTN_CACHED", "generic");
        check(q, kc, vc, kc_d, vc_d, slot, pos, "generic decode " + c.tag());
      }
      if (HasFailure()) return;
    }
  }
}

// Prefill: every position of several slots at once (automatic splits: one split
// when the tokens fill the GPU), and a batch large enough for one split.
TEST_F(CudaAttentionCachedTest, PrefillMatchesCpu) {
  for (const Shape4& c : {Shape4{3, 260, 12, 2, 128}, Shape4{3, 200, 16, 2, 64}}) {
    const std::vector<int32_t> lens = {int32_t(c.T), 77, int32_t(c.T) - 5};
    Tensor kc, vc;
    fill(kc, vc, lens, c);
    Tensor kc_d = bf(kc), vc_d = bf(vc);
    std::vector<int32_t> slot, pos;
    for (int64_t s = 0; s < c.S; ++s)
      for (int32_t p = 0; p < lens[size_t(s)]; ++p) {
        slot.push_back(int32_t(s));
        pos.push_back(p);
      }
    const Tensor q = query(int64_t(slot.size()), c, 2.0f);
    check(q, kc, vc, kc_d, vc_d, slot, pos, "prefill " + c.tag());
    {
      ScopedEnv env("TEMPER_ATTN_CACHED_SPLITS", "5");
      check(q, kc, vc, kc_d, vc_d, slot, pos, "prefill splits=5 " + c.tag());
    }
    for (const char* warps : {"2", "4"}) {
      ScopedEnv env("TEMPER_ATTN_CACHED_WARPS", warps);
      check(q, kc, vc, kc_d, vc_d, slot, pos, std::string("prefill warps=") + warps + " " + c.tag());
    }
    if (HasFailure()) return;
  }
}

// A bad slot and a position past the cache give NaN for their token only; the
// other tokens match the CPU; a second call gives the same bits.
TEST_F(CudaAttentionCachedTest, BadTokensAndRepeatability) {
  const Shape4 c{4, 300, 12, 2, 128};
  const std::vector<int32_t> lens = {300, 5, 170, 64};
  Tensor kc, vc;
  fill(kc, vc, lens, c);
  Tensor kc_d = bf(kc), vc_d = bf(vc);
  for (const char* splits : {"", "1", "6"}) {
    ScopedEnv env("TEMPER_ATTN_CACHED_SPLITS", splits);
    const std::string what = std::string("splits=") + (*splits ? splits : "auto");
    // tokens 0..5: good, bad slot 9, good, pos = T, slot -1, good
    const std::vector<int32_t> slot = {0, 9, 2, 1, -1, 3}, pos = {299, 3, 169, 300, 0, 63};
    const std::vector<bool> bad = {false, true, false, true, true, false};
    const int64_t N = int64_t(slot.size());
    const Tensor q = query(N, c, 1.0f);
    Tensor out = poisoned(*g, {N, c.H, c.D}, BF16), again = poisoned(*g, {N, c.H, c.D}, BF16);
    g->attention_cached(out, bf(q), kc_d, vc_d, i32(slot), i32(pos));
    g->attention_cached(again, bf(q), kc_d, vc_d, i32(slot), i32(pos));
    const Tensor o = host(out), o2 = host(again);
    // CPU on the good tokens only (it rejects bad ones)
    std::vector<int32_t> gs, gp;
    std::vector<int64_t> rows;
    for (int64_t n = 0; n < N; ++n)
      if (!bad[size_t(n)]) {
        gs.push_back(slot[size_t(n)]);
        gp.push_back(pos[size_t(n)]);
        rows.push_back(n);
      }
    const int64_t M = int64_t(rows.size()), E = c.H * c.D;
    Tensor qg = Tensor::empty({M, c.H, c.D}, F32), ref = Tensor::empty({M, c.H, c.D}, F32);
    Tensor got = Tensor::empty({M, c.H, c.D}, F32);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t x = 0; x < E; ++x) {
        qg.data<float>()[i * E + x] = q.data<float>()[rows[size_t(i)] * E + x];
        got.data<float>()[i * E + x] = o.data<float>()[rows[size_t(i)] * E + x];
      }
    cpu->attention_cached(ref, qg, kc, vc, host_i32(gs), host_i32(gp));
    expect_close(got, ref, 1e-2, 2e-2, "good tokens next to bad ones, " + what);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t x = 0; x < E; ++x)
        ASSERT_EQ(std::isnan(o.data<float>()[n * E + x]), bool(bad[size_t(n)]))
            << what << ": token " << n << " element " << x;
    EXPECT_EQ(0, std::memcmp(o.data<float>(), o2.data<float>(), size_t(o.numel()) * sizeof(float)))
        << what << ": a second call gave other bits";
  }
}

// Recorded into a CUDA graph once, the op follows the positions it finds on the
// device at each replay (its launch never depends on them): the replays equal
// eager calls bit for bit and match the CPU.
TEST_F(CudaAttentionCachedTest, GraphReplayFollowsDevicePositions) {
  const Shape4 c{6, 384, 12, 2, 128};
  const std::vector<int32_t> lens(size_t(c.S), int32_t(c.T));
  Tensor kc, vc;
  fill(kc, vc, lens, c);
  Tensor kc_d = bf(kc), vc_d = bf(vc);
  const std::vector<int32_t> slot = {5, 0, 3, 1, 4, 2};
  const int64_t N = int64_t(slot.size());
  const Tensor q = query(N, c, 1.0f);
  Tensor q_d = bf(q), slot_d = i32(slot), pos_d = i32(std::vector<int32_t>(size_t(N), 0));
  Tensor out = poisoned(*g, q.shape(), BF16), eager = poisoned(*g, q.shape(), BF16);
  ASSERT_TRUE(g->graph_begin());
  g->attention_cached(out, q_d, kc_d, vc_d, slot_d, pos_d);
  const int id = g->graph_end();
  const std::vector<std::vector<int32_t>> steps = {
      {0, 1, 2, 3, 4, 5}, {63, 64, 65, 127, 128, 129}, {383, 200, 17, 255, 256, 320}};
  for (const auto& pos : steps) {
    g->copy(pos_d, host_i32(pos));
    g->graph_launch(id);
    g->attention_cached(eager, q_d, kc_d, vc_d, slot_d, pos_d);
    const Tensor a = host(out), b = host(eager);
    EXPECT_EQ(0, std::memcmp(a.data<float>(), b.data<float>(), size_t(a.numel()) * sizeof(float)))
        << "graph replay vs eager at pos[1] = " << pos[1];
    Tensor ref = Tensor::empty(q.shape(), F32);
    cpu->attention_cached(ref, q, kc, vc, host_i32(slot), host_i32(pos));
    expect_close(a, ref, 1e-2, 2e-2, "graph replay at pos[1] = " + std::to_string(pos[1]));
  }
  g->graph_release(id);
}

}  // namespace
}  // namespace temper::gpu_test
