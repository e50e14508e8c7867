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
};

}  // namespace temper
