// The MLP activation of a block: SwiGLU or (gated) PolyNorm, see polynorm.h.
#include "model/polynorm.h"

namespace temper {

void mlp_activation_forward(Kernels& k, const ModelConfig& c, const BlockWeights& w, BlockActs& a) {
  if (c.mlp_activation == MlpActivation::PolyNorm) {
    k.polynorm_forward(a.act, a.act_rstd, a.gu, w.polynorm->compute, c.polynorm_eps);
  } else {
    k.swiglu_forward(a.act, a.gu);
  }
}

void mlp_activation_backward(Kernels& k, const ModelConfig& c, const BlockWeights& w, const BlockActs& a,
                             BlockScratch& s) {
  if (c.mlp_activation == MlpActivation::PolyNorm) {
    k.polynorm_backward(s.dgu, w.polynorm->grad, s.dact, a.gu, w.polynorm->compute, a.act_rstd);
  } else {
    k.swiglu_backward(s.dgu, s.dact, a.gu);
  }
}

}  // namespace temper
