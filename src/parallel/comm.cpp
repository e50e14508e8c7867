// Comm: the host conveniences, written once on top of the tensor collectives
// (host tensors wrapping the caller's scalars and strings).
#include "parallel/comm.h"

#include <vector>

namespace temper {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Max: return "max";
    case ReduceOp::Min: return "min";
  }
  return "?";
}

namespace {
template <typename T>
T reduce_scalar(Comm& c, T v, DType dt, ReduceOp op) {
  Tensor t = Tensor::wrap(&v, {1}, dt);
  c.allreduce(t, op);
  return v;
}
}  // namespace

double Comm::allreduce_sum(double v) { return reduce_scalar(*this, v, DType::F64, ReduceOp::Sum); }
double Comm::allreduce_max(double v) { return reduce_scalar(*this, v, DType::F64, ReduceOp::Max); }
double Comm::allreduce_min(double v) { return reduce_scalar(*this, v, DType::F64, ReduceOp::Min); }
int64_t Comm::allreduce_sum_i64(int64_t v) { return reduce_scalar(*this, v, DType::I64, ReduceOp::Sum); }
int64_t Comm::allreduce_max_i64(int64_t v) { return reduce_scalar(*this, v, DType::I64, ReduceOp::Max); }

void Comm::broadcast_string(std::string& s, int root) {
  int64_t len = static_cast<int64_t>(s.size());
  Tensor tl = Tensor::wrap(&len, {1}, DType::I64);
  broadcast(tl, root);
  TEMPER_CHECK(len >= 0, "broadcast_string on comm '", name(), "': received a negative length ", len);
  std::vector<char> buf(static_cast<size_t>(len));
  if (rank() == root && len > 0) s.copy(buf.data(), static_cast<size_t>(len));
  if (len > 0) {
    Tensor tb = Tensor::wrap(buf.data(), {len}, DType::U8);
    broadcast(tb, root);
  }
  s.assign(buf.data(), buf.size());
}

}  // namespace temper
