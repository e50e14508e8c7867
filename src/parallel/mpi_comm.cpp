// MpiComm: collectives on host tensors with MPI. Each collective validates its
// tensors (host, same dtype, consistent counts), then issues one MPI call, or
// a sequence of calls on pieces when the count exceeds max_chunk_elems. Every
// call is non-blocking and waited for with the communicator's deadline
// (mpi_deadline.h): a rank that never arrives ends the job instead of hanging it.
#include "parallel/mpi_comm.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <vector>

#include "core/bf16.h"

namespace temper {

namespace {

// bf16 reductions: MPI knows no bf16, so the data travel as uint16 and these
// user ops combine them in float (one rounding per combination).
void bf16_sum_fn(void* in, void* inout, int* len, MPI_Datatype*) {
  const uint16_t* a = static_cast<const uint16_t*>(in);
  uint16_t* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = float_to_bf16(bf16_to_float(a[i]) + bf16_to_float(b[i]));
}
void bf16_max_fn(void* in, void* inout, int* len, MPI_Datatype*) {
  const uint16_t* a = static_cast<const uint16_t*>(in);
  uint16_t* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i)
    if (bf16_to_float(a[i]) > bf16_to_float(b[i])) b[i] = a[i];
}
void bf16_min_fn(void* in, void* inout, int* len, MPI_Datatype*) {
  const uint16_t* a = static_cast<const uint16_t*>(in);
  uint16_t* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i)
    if (bf16_to_float(a[i]) < bf16_to_float(b[i])) b[i] = a[i];
}

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::F32: return MPI_FLOAT;
    case DType::F64: return MPI_DOUBLE;
    case DType::BF16: return MPI_UINT16_T;
    case DType::F16: return MPI_UINT16_T;
    case DType::I32: return MPI_INT32_T;
    case DType::I64: return MPI_INT64_T;
    case DType::U8: return MPI_UINT8_T;
  }
  fail("MpiComm: unknown dtype code ", int(t));
}

bool mpi_finalized() {
  int done = 0;
  MPI_Finalized(&done);
  return done != 0;
}

char* at(const Tensor& t, int64_t elems) {
  return static_cast<char*>(t.raw()) + elems * static_cast<int64_t>(dtype_size(t.dtype()));
}

bool overlaps(const Tensor& a, const Tensor& b) {
  const char* a0 = static_cast<const char*>(a.raw());
  const char* b0 = static_cast<const char*>(b.raw());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

// Staging buffer as a host tensor of `elems` elements of dtype dt.
Tensor staging(int64_t elems, DType dt) { return Tensor::empty({elems}, dt); }

}  // namespace

MpiComm::MpiComm(MPI_Comm comm, std::string name, bool take_ownership)
    : comm_(comm), name_(std::move(name)), owned_(take_ownership), deadline_(comm, name_) {
  TEMPER_CHECK(comm != MPI_COMM_NULL, "MpiComm '", name_, "': null MPI communicator");
  if (owned_) MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  check_mpi(MPI_Op_create(&bf16_sum_fn, 1, &bf16_sum_), "MPI_Op_create");
  check_mpi(MPI_Op_create(&bf16_max_fn, 1, &bf16_max_), "MPI_Op_create");
  check_mpi(MPI_Op_create(&bf16_min_fn, 1, &bf16_min_), "MPI_Op_create");
}

std::unique_ptr<MpiComm> MpiComm::dup(MPI_Comm comm, std::string name) {
  MPI_Comm copy = MPI_COMM_NULL;
  int rc = MPI_Comm_dup(comm, &copy);
  TEMPER_CHECK(rc == MPI_SUCCESS, "MpiComm '", name, "': MPI_Comm_dup failed (code ", rc, ")");
  return std::make_unique<MpiComm>(copy, std::move(name), true);
}

MpiComm::~MpiComm() {
  if (mpi_finalized()) return;  // MPI already released everything
  for (MPI_Op* op : {&bf16_sum_, &bf16_max_, &bf16_min_})
    if (*op != MPI_OP_NULL) MPI_Op_free(op);
  if (owned_ && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void MpiComm::set_max_chunk_elems(int64_t n) {
  TEMPER_CHECK(n >= 1 && n <= (int64_t(1) << 30), "MpiComm '", name_, "': max_chunk_elems must be in [1, 2^30], got ",
               n);
  max_chunk_ = n;
}

void MpiComm::check_mpi(int rc, const char* call) const {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  fail(call, " on comm '", name_, "' (rank ", rank_, " of ", size_, ") failed: ", std::string(msg, len),
       " (do all ranks call the same collectives with the same element counts and dtypes?)");
}

void MpiComm::check_host(const char* coll, const Tensor& t, const char* role) const {
  TEMPER_CHECK(t.defined() || t.numel() == 0, coll, " on comm '", name_, "': the ", role, " tensor is undefined");
  TEMPER_CHECK(t.device() == Device::CPU, coll, " on comm '", name_, "': the ", role, " tensor (",
               dtype_name(t.dtype()), " ", shape_str(t.shape()), ") is on ", device_name(t.device()),
               "; MpiComm moves host (cpu) tensors only");
}

MPI_Op MpiComm::resolve_op(const char* coll, DType dt, ReduceOp op) const {
  if (dt == DType::F16)
    fail(coll, " on comm '", name_, "': f16 tensors cannot be reduced (", reduce_op_name(op),
         "); use f32 or bf16");
  if (dt == DType::BF16) return op == ReduceOp::Sum ? bf16_sum_ : op == ReduceOp::Max ? bf16_max_ : bf16_min_;
  return op == ReduceOp::Sum ? MPI_SUM : op == ReduceOp::Max ? MPI_MAX : MPI_MIN;
}

int64_t MpiComm::staged_piece(size_t elem_bytes) const {
  const int64_t cap_bytes = int64_t(256) << 20;  // staging buffers stay below 256 MiB
  int64_t piece = cap_bytes / static_cast<int64_t>(elem_bytes * static_cast<size_t>(size_));
  return std::max<int64_t>(1, std::min(piece, max_chunk_));
}

void MpiComm::allreduce(Tensor& x, ReduceOp op) {
  check_host("allreduce", x, "in/out");
  MPI_Op mop = resolve_op("allreduce", x.dtype(), op);
  const int64_t n = x.numel();
  for (int64_t off = 0; off < n; off += max_chunk_) {
    int len = static_cast<int>(std::min(max_chunk_, n - off));
    MPI_Request req;
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, at(x, off), len, mpi_type(x.dtype()), mop, comm_, &req), "MPI_Iallreduce");
    check_mpi(deadline_.wait(&req, "allreduce"), "MPI_Iallreduce");
  }
}

void MpiComm::broadcast(Tensor& x, int root) {
  check_host("broadcast", x, "in/out");
  TEMPER_CHECK(root >= 0 && root < size_, "broadcast on comm '", name_, "': root ", root,
               " is not a rank of this communicator of size ", size_);
  const int64_t n = x.numel();
  for (int64_t off = 0; off < n; off += max_chunk_) {
    int len = static_cast<int>(std::min(max_chunk_, n - off));
    MPI_Request req;
    check_mpi(MPI_Ibcast(at(x, off), len, mpi_type(x.dtype()), root, comm_, &req), "MPI_Ibcast");
    check_mpi(deadline_.wait(&req, "broadcast"), "MPI_Ibcast");
  }
}

void MpiComm::barrier() {
  MPI_Request req;
  check_mpi(MPI_Ibarrier(comm_, &req), "MPI_Ibarrier");
  check_mpi(deadline_.wait(&req, "barrier"), "MPI_Ibarrier");
}

void MpiComm::reduce_scatter(Tensor& out, const Tensor& in, ReduceOp op) {
  check_host("reduce_scatter", out, "output");
  check_host("reduce_scatter", in, "input");
  TEMPER_CHECK(in.dtype() == out.dtype(), "reduce_scatter on comm '", name_, "': input is ", dtype_name(in.dtype()),
               " but output is ", dtype_name(out.dtype()));
  const int64_t n = out.numel();
  TEMPER_CHECK(in.numel() == n * size_, "reduce_scatter on comm '", name_, "' (size ", size_, "): input has ",
               in.numel(), " elements but must have size × output = ", size_, " × ", n, " = ", n * size_);
  MPI_Op mop = resolve_op("reduce_scatter", in.dtype(), op);
  if (n == 0) return;
  const DType dt = in.dtype();
  const size_t es = dtype_size(dt);
  Tensor src = in;
  if (overlaps(in, out)) {  // MPI forbids aliased buffers here: reduce from a copy
    src = staging(in.numel(), dt);
    std::memcpy(src.raw(), in.raw(), in.nbytes());
  }
  auto reduce_scatter_block = [&](const void* send, void* recv, int count) {
    MPI_Request req;
    check_mpi(MPI_Ireduce_scatter_block(send, recv, count, mpi_type(dt), mop, comm_, &req), "MPI_Ireduce_scatter_block");
    check_mpi(deadline_.wait(&req, "reduce_scatter"), "MPI_Ireduce_scatter_block");
  };
  if (n <= max_chunk_) {
    reduce_scatter_block(src.raw(), out.raw(), static_cast<int>(n));
    return;
  }
  const int64_t piece = staged_piece(es);
  Tensor pack = staging(piece * size_, dt);
  for (int64_t p0 = 0; p0 < n; p0 += piece) {
    const int64_t len = std::min(piece, n - p0);
    for (int r = 0; r < size_; ++r) std::memcpy(at(pack, r * len), at(src, r * n + p0), len * es);
    reduce_scatter_block(pack.raw(), at(out, p0), static_cast<int>(len));
  }
}

void MpiComm::all_gather(Tensor& out, const Tensor& in) {
  check_host("all_gather", out, "output");
  check_host("all_gather", in, "input");
  TEMPER_CHECK(in.dtype() == out.dtype(), "all_gather on comm '", name_, "': input is ", dtype_name(in.dtype()),
               " but output is ", dtype_name(out.dtype()));
  const int64_t n = in.numel();
  TEMPER_CHECK(out.numel() == n * size_, "all_gather on comm '", name_, "' (size ", size_, "): output has ",
               out.numel(), " elements but must have size × input = ", size_, " × ", n, " = ", n * size_);
  if (n == 0) return;
  const DType dt = in.dtype();
  const size_t es = dtype_size(dt);
  const bool in_place = in.raw() == at(out, rank_ * n);  // input is this rank's own chunk of the output
  Tensor src = in;
  if (!in_place && overlaps(in, out)) {
    src = staging(n, dt);
    std::memcpy(src.raw(), in.raw(), in.nbytes());
  }
  auto allgather = [&](const void* send, void* recv, int count) {
    MPI_Request req;
    check_mpi(MPI_Iallgather(send, count, mpi_type(dt), recv, count, mpi_type(dt), comm_, &req), "MPI_Iallgather");
    check_mpi(deadline_.wait(&req, "all_gather"), "MPI_Iallgather");
  };
  if (n <= max_chunk_) {
    allgather(in_place ? MPI_IN_PLACE : src.raw(), out.raw(), static_cast<int>(n));
    return;
  }
  const int64_t piece = staged_piece(es);
  Tensor pack = staging(piece * size_, dt);
  for (int64_t p0 = 0; p0 < n; p0 += piece) {
    const int64_t len = std::min(piece, n - p0);
    allgather(at(src, p0), pack.raw(), static_cast<int>(len));
    for (int r = 0; r < size_; ++r) std::memmove(at(out, r * n + p0), at(pack, r * len), len * es);
  }
}

void MpiComm::all_to_all(Tensor& out, const Tensor& in) {
  check_host("all_to_all", out, "output");
  check_host("all_to_all", in, "input");
  TEMPER_CHECK(in.dtype() == out.dtype(), "all_to_all on comm '", name_, "': input is ", dtype_name(in.dtype()),
               " but output is ", dtype_name(out.dtype()));
  TEMPER_CHECK(in.numel() == out.numel() && in.numel() % size_ == 0, "all_to_all on comm '", name_, "' (size ",
               size_, "): input has ", in.numel(), " and output ", out.numel(),
               " elements; both must be equal and divisible by the communicator size");
  const int64_t n = in.numel() / size_;
  if (n == 0) return;
  const DType dt = in.dtype();
  const size_t es = dtype_size(dt);
  Tensor src = in;
  if (overlaps(in, out)) {
    src = staging(in.numel(), dt);
    std::memcpy(src.raw(), in.raw(), in.nbytes());
  }
  auto alltoall = [&](const void* send, void* recv, int count) {
    MPI_Request req;
    check_mpi(MPI_Ialltoall(send, count, mpi_type(dt), recv, count, mpi_type(dt), comm_, &req), "MPI_Ialltoall");
    check_mpi(deadline_.wait(&req, "all_to_all"), "MPI_Ialltoall");
  };
  if (n <= max_chunk_) {
    alltoall(src.raw(), out.raw(), static_cast<int>(n));
    return;
  }
  const int64_t piece = staged_piece(es);
  Tensor send = staging(piece * size_, dt), recv = staging(piece * size_, dt);
  for (int64_t p0 = 0; p0 < n; p0 += piece) {
    const int64_t len = std::min(piece, n - p0);
    for (int j = 0; j < size_; ++j) std::memcpy(at(send, j * len), at(src, j * n + p0), len * es);
    alltoall(send.raw(), recv.raw(), static_cast<int>(len));
    for (int i = 0; i < size_; ++i) std::memcpy(at(out, i * n + p0), at(recv, i * len), len * es);
  }
}

}  // namespace temper
