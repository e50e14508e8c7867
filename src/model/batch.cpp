// Batch construction from host vectors, SFT coefficients and host<->device helpers.
#include "model/batch.h"

#include <algorithm>

#include "core/bf16.h"
#include "core/error.h"

namespace temper {

Tensor to_device(Kernels& k, const std::vector<int32_t>& v) {
  Tensor dst = k.alloc({int64_t(v.size())}, DType::I32);
  if (!v.empty()) k.copy(dst, Tensor::wrap(const_cast<int32_t*>(v.data()), {int64_t(v.size())}, DType::I32));
  return dst;
}

Tensor to_device(Kernels& k, const std::vector<double>& v, DType dtype) {
  // Converted on the host, so the backend only needs a same-dtype transfer.
  const int64_t n = int64_t(v.size());
  Tensor host = Tensor::empty({n}, dtype);
  switch (dtype) {
    case DType::F64: std::copy(v.begin(), v.end(), host.data<double>()); break;
    case DType::F32:
      for (int64_t i = 0; i < n; ++i) host.data<float>()[i] = float(v[size_t(i)]);
      break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) host.data<uint16_t>()[i] = float_to_bf16(float(v[size_t(i)]));
      break;
    default: fail("to_device: unsupported dtype ", dtype_name(dtype), " (expected f32, f64 or bf16)");
  }
  Tensor dst = k.alloc({n}, dtype);
  if (n) k.copy(dst, host);
  return dst;
}

std::vector<double> to_host_f64(Kernels& k, const Tensor& t) {
  const int64_t n = t.numel();
  std::vector<double> out(static_cast<size_t>(n));
  if (!n) return out;
  Tensor host = Tensor::empty(t.shape(), t.dtype());
  k.copy(host, t);
  switch (t.dtype()) {
    case DType::F64: std::copy(host.data<double>(), host.data<double>() + n, out.begin()); break;
    case DType::F32: std::copy(host.data<float>(), host.data<float>() + n, out.begin()); break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) out[size_t(i)] = bf16_to_float(host.data<uint16_t>()[i]);
      break;
    case DType::I32: std::copy(host.data<int32_t>(), host.data<int32_t>() + n, out.begin()); break;
    default: fail("to_host_f64: unsupported dtype ", dtype_name(t.dtype()));
  }
  return out;
}

Batch make_batch(Kernels& k, const std::vector<int32_t>& tokens, const std::vector<int32_t>& targets,
                 const std::vector<int32_t>& positions, const std::vector<int32_t>& cu_seqlens, int vocab_size) {
  const int64_t n = int64_t(tokens.size());
  TEMPER_CHECK(n > 0, "batch: no tokens");
  TEMPER_CHECK(int64_t(targets.size()) == n && int64_t(positions.size()) == n, "batch: ", n, " tokens but ",
               targets.size(), " targets and ", positions.size(), " positions (all must match)");
  TEMPER_CHECK(cu_seqlens.size() >= 2, "batch: cu_seqlens needs at least 2 entries (0 and N), got ",
               cu_seqlens.size());
  TEMPER_CHECK(cu_seqlens.front() == 0 && cu_seqlens.back() == n, "batch: cu_seqlens must run from 0 to N=", n,
               ", got ", cu_seqlens.front(), " .. ", cu_seqlens.back());
  int max_len = 0;
  for (size_t s = 0; s + 1 < cu_seqlens.size(); ++s) {
    int len = cu_seqlens[s + 1] - cu_seqlens[s];
    TEMPER_CHECK(len >= 0, "batch: cu_seqlens decreases at entry ", s + 1, " (", cu_seqlens[s], " -> ",
                 cu_seqlens[s + 1], ")");
    max_len = std::max(max_len, len);
  }
  for (int64_t i = 0; i < n; ++i) {
    TEMPER_CHECK(positions[i] >= 0, "batch: negative position ", positions[i], " at token ", i);
    if (vocab_size > 0) {
      TEMPER_CHECK(tokens[i] >= 0 && tokens[i] < vocab_size, "batch: token id ", tokens[i], " at index ", i,
                   " is outside the vocabulary [0, ", vocab_size, ")");
      TEMPER_CHECK(targets[i] < vocab_size, "batch: target id ", targets[i], " at index ", i,
                   " is outside the vocabulary [0, ", vocab_size, ")");
    }
  }
  Batch b;
  b.tokens = to_device(k, tokens);
  b.targets = to_device(k, targets);
  b.positions = to_device(k, positions);
  b.cu_seqlens = to_device(k, cu_seqlens);
  b.max_seqlen = max_len;
  b.n_tokens = n;
  return b;
}

std::vector<int32_t> lm_targets(const std::vector<std::vector<int32_t>>& documents) {
  std::vector<int32_t> targets;
  for (const auto& doc : documents)
    for (size_t i = 0; i < doc.size(); ++i) targets.push_back(i + 1 < doc.size() ? doc[i + 1] : -1);
  return targets;
}

Batch make_lm_batch(Kernels& k, const std::vector<std::vector<int32_t>>& documents, int vocab_size) {
  std::vector<int32_t> tokens, positions, cu{0};
  for (const auto& doc : documents) {
    for (size_t i = 0; i < doc.size(); ++i) {
      tokens.push_back(doc[i]);
      positions.push_back(int32_t(i));
    }
    cu.push_back(int32_t(tokens.size()));
  }
  return make_batch(k, tokens, lm_targets(documents), positions, cu, vocab_size);
}

int64_t count_loss_tokens(const std::vector<int32_t>& targets) {
  return std::count_if(targets.begin(), targets.end(), [](int32_t t) { return t >= 0; });
}

Tensor sft_dlogp(Kernels& k, const std::vector<int32_t>& targets, double denominator, DType dtype) {
  TEMPER_CHECK(denominator > 0, "sft_dlogp: the loss-token count must be positive, got ", denominator);
  std::vector<double> d(targets.size());
  for (size_t i = 0; i < targets.size(); ++i) d[i] = targets[i] >= 0 ? -1.0 / denominator : 0.0;
  return to_device(k, d, dtype);
}

}  // namespace temper
