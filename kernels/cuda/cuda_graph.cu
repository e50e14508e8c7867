// CUDA backend: recorded call sequences (kernels.h graph_begin / graph_end /
// graph_launch / graph_release) as CUDA graphs captured on the backend's stream.
// Capture runs in relaxed mode, so a first-time cudaMalloc of the caching
// allocator or of persistent scratch is allowed while recording; ops that need
// temporary device memory take scratch_f32() instead of alloc() when recording()
// (attention_cached's split partials), because a caching-allocator block freed
// after the recording would be reused by other tensors while the graph still
// writes it. A failed capture throws and leaves the stream out of capture mode.
#include <algorithm>

#include "core/error.h"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace temper {

bool CudaKernels::graph_begin() {
  TEMPER_CHECK(!recording_, "graph_begin: a recording is already in progress");
  TEMPER_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed));
  recording_ = true;
  return true;
}

int CudaKernels::graph_end() {
  TEMPER_CHECK(recording_, "graph_end: no recording in progress");
  recording_ = false;
  cudaGraph_t g = nullptr;
  const cudaError_t e = cudaStreamEndCapture(stream_, &g);
  if (e != cudaSuccess || !g) {
    (void)cudaGetLastError();
    if (g) (void)cudaGraphDestroy(g);
    fail("graph_end: the capture failed: ", cudaGetErrorString(e));
  }
  cudaGraphExec_t x = nullptr;
  const cudaError_t ei = cudaGraphInstantiate(&x, g, 0);
  (void)cudaGraphDestroy(g);
  TEMPER_CHECK(ei == cudaSuccess, "graph_end: cudaGraphInstantiate failed: ", cudaGetErrorString(ei));
  graphs_.push_back(x);
  return int(graphs_.size()) - 1;
}

void CudaKernels::graph_launch(int id) {
  TEMPER_CHECK(id >= 0 && id < int(graphs_.size()) && graphs_[size_t(id)], "graph_launch: no graph ", id);
  TEMPER_CUDA_CHECK(cudaGraphLaunch(graphs_[size_t(id)], stream_));
}

void CudaKernels::graph_release(int id) {
  if (id < 0 || id >= int(graphs_.size()) || !graphs_[size_t(id)]) return;
  (void)cudaStreamSynchronize(stream_);  // (a launch may still be queued)
  (void)cudaGraphExecDestroy(graphs_[size_t(id)]);
  graphs_[size_t(id)] = nullptr;
}

Tensor CudaKernels::scratch_f32(int which, int64_t elems) {
  TEMPER_CHECK(which >= 0 && which < 16, "scratch_f32: scratch number ", which, " out of range");
  if (scratch_.size() <= size_t(which)) scratch_.resize(size_t(which) + 1);
  Tensor& s = scratch_[size_t(which)];
  if (!s.defined() || s.numel() < elems) {
    if (s.defined()) scratch_retired_.push_back(s);  // graphs may have recorded it
    s = alloc({std::max<int64_t>(elems, 1)}, DType::F32);
  }
  return s.rows(0, elems);
}

}  // namespace temper
