// The glue between a Decoder and the training machinery: its parameters as
// optimizer references, gradient averaging over a communicator, and the
// parameters' place in checkpoints ("model/<name>").
#pragma once
#include <map>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "kernels/kernels.h"
#include "model/decoder.h"
#include "parallel/comm.h"
#include "train/adamw.h"

namespace temper {

std::vector<ParamRef> param_refs(Decoder& model);
// Sums every gradient over `comm` (the caller's loss is already normalised by the global token count).
void allreduce_grads(Decoder& model, Comm& comm);
void save_model_state(Decoder& model, Kernels& k, std::map<std::string, Tensor>& out);
// Throws naming the first missing or mis-shaped tensor (e.g. a checkpoint of another model shape).
void load_model_state(Decoder& model, Kernels& k, const std::map<std::string, Tensor>& in);
// The same from a checkpoint (held or opened), one tensor at a time in host memory.
void load_model_state(Decoder& model, Kernels& k, const CheckpointState& in);

}  // namespace temper
