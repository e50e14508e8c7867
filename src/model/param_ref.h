// ParamRef: what an optimizer steps — a parameter's master values and their
// gradient (a Decoder's whole tensors, or the slices parallel/dp_shard keeps).
#pragma once
#include <string>

#include "core/tensor.h"

namespace temper {

struct ParamRef {
  std::string name;
  Tensor value;  // master weights (f32, or f64 in tests)
  Tensor grad;   // same shape and dtype
  bool decay = true;
  // Optional: the compute copy (bf16 on cuda) of value, which an optimizer that
  // writes it (AdamW) refreshes in the same pass as the update. Undefined: none
  // (DP-shard slices, or value is itself the compute copy).
  Tensor compute;
};

}  // namespace temper
