// Hugging Face model directories <-> temper Decoders: config.json of a Llama, Qwen2,
// Qwen3 or Motif (MotifForCausalLM: grouped differential attention + PolyNorm, the
// released layout of model/differential_attention.h) causal LM to a ModelConfig,
// safetensors weights (one file or shards) into a Decoder with every name and shape
// checked, and export of weights as a directory transformers and vLLM load
// (config.json, generation_config.json, shards + index, tokenizer files).
//
// Name mapping (temper name <- HF name), per layer i:
//   embed                        <- model.embed_tokens.weight
//   layers.i.attn_norm.weight    <- model.layers.i.input_layernorm.weight
//   layers.i.attn.{q,k,v}.weight <- model.layers.i.self_attn.{q,k,v}_proj.weight (+ .bias)
//   layers.i.attn.{q,k}_norm.weight <- model.layers.i.self_attn.{q,k}_norm.weight
//   layers.i.attn.o.weight       <- model.layers.i.self_attn.o_proj.weight
//   layers.i.mlp_norm.weight     <- model.layers.i.post_attention_layernorm.weight
//   layers.i.mlp.gate_up.weight  <- rows of model.layers.i.mlp.gate_proj.weight, then mlp.up_proj.weight
//   layers.i.mlp.down.weight     <- model.layers.i.mlp.down_proj.weight
//   final_norm.weight            <- model.norm.weight
//   lm_head.weight               <- lm_head.weight (absent when tie_word_embeddings)
// Motif, per layer i (same q/k/v/o/norm/gate|up/down names; shapes of the released layout):
//   layers.i.attn.lambda         <- model.layers.i.self_attn.lambda_{q1,k1,q2,k2} (rows, [D] each)
//   layers.i.attn.head_norm.weight <- model.layers.i.self_attn.subln.weight [2D]
//   layers.i.mlp.polynorm        <- model.layers.i.mlp.act_fn.weight [3], then mlp.act_fn.bias [1]
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/kernels.h"
#include "model/config.h"

namespace temper {

class Decoder;

struct HfModelInfo {
  std::string architecture;  // "LlamaForCausalLM" | "Qwen2ForCausalLM" | "Qwen3ForCausalLM" | "MotifForCausalLM"
  ModelConfig config;
  // Llama / Qwen3 with attention_bias = true also carry an o_proj bias, which temper
  // has not: it is accepted on import only when all zero (what temper's export writes).
  bool o_proj_bias = false;
};

// <dir>/config.json: the architecture (unknown ones are an error naming the file and
// the "architectures" key) and the shape (transformers 5's "rope_parameters" read
// like the older top-level rope_theta; rope types other than "default" refused).
HfModelInfo read_hf_model_info(const std::string& dir);

// The architecture temper exports a config as: Motif with differential attention
// (which needs the PolyNorm MLP), Qwen3 when qk_norm, else Qwen2 when qkv_bias, else
// Llama (which needs SwiGLU). Throws for the combinations no released model has.
std::string hf_architecture_for(const ModelConfig& cfg);

// One temper parameter and the HF tensor(s) it comes from: the temper tensor is the
// HF tensors' elements one after the other (gate_up: the gate rows, then the up rows;
// Motif's lambda: four [D] vectors; polynorm: act_fn.weight [3], then act_fn.bias [1]).
struct HfParamMap {
  std::string name;                  // temper name
  Shape shape;                       // temper shape
  std::vector<std::string> hf_names;
  std::vector<Shape> hf_shapes;      // one per HF tensor
};
// Every temper parameter of a config, in the Decoder's order.
std::vector<HfParamMap> hf_param_maps(const ModelConfig& cfg);

// "hf:DIR" -> DIR; anything else -> "" (the value of [model] init).
std::string hf_init_dir(const std::string& init_value);

// Loads the weights of an HF directory into `model`, whose config must have the
// directory's shape. Throws naming the file, tensor and both shapes on a shape
// mismatch, and every missing and every unexpected tensor. The compute copies are
// refreshed.
void load_hf_weights(Decoder& model, Kernels& k, const std::string& dir);

struct HfExportOptions {
  DType dtype = DType::BF16;                 // stored dtype: BF16 or F32
  uint64_t max_shard_bytes = 5ull << 30;     // data bytes per safetensors shard
  std::string tokenizer_dir;                 // tokenizer files copied from here ("" = none)
  int64_t max_position_embeddings = 32768;  // written to config.json (not a property of the weights)
  int64_t bos_token_id = -1, eos_token_id = -1;  // written when >= 0
};

// Writes `out_dir` (created if needed): config.json, generation_config.json,
// model.safetensors or shards + model.safetensors.index.json, and the tokenizer
// files found in options.tokenizer_dir (for Motif also its configuration_motif.py and
// modeling_motif.py when there: config.json's auto_map names them for transformers'
// trust_remote_code). `params` maps temper names to CPU tensors
// (f32, f64 or bf16), exactly those of hf_param_maps(cfg) with their shapes.
// Returns the files written (relative to out_dir).
std::vector<std::string> export_hf(const ModelConfig& cfg, const std::map<std::string, Tensor>& params,
                                   const std::string& out_dir, const HfExportOptions& options);
// The same from a live Decoder (its master weights, copied to the host).
std::vector<std::string> export_hf(const Decoder& model, Kernels& k, const std::string& out_dir,
                                   const HfExportOptions& options);

// config.json text temper writes for cfg (exposed for tests).
std::string hf_config_json(const ModelConfig& cfg, const HfExportOptions& options);

}  // namespace temper
