// NcclComm: collectives on device tensors with NCCL (see the header). The
// whole NCCL body compiles only with TEMPER_HAVE_NCCL; without it the factory
// and every method throw "built without NCCL".
#include "parallel/nccl_comm.h"

#include "parallel/mpi_comm.h"

#ifdef TEMPER_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <thread>
#endif

namespace temper {

#ifndef TEMPER_HAVE_NCCL

struct NcclComm::Impl {};

bool nccl_comm_supported(MPI_Comm, std::string* why) {
  if (why) *why = "temper was built without NCCL (configure with CUDA and NCCL available)";
  return false;
}

[[noreturn]] static void no_nccl() {
  fail("NcclComm: temper was built without NCCL; use the MPI communicator (cpu backend) or rebuild with CUDA and "
       "NCCL");
}

std::unique_ptr<NcclComm> NcclComm::create(MPI_Comm, std::string, NcclOptions) { no_nccl(); }
NcclComm::NcclComm(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NcclComm::~NcclComm() = default;
int NcclComm::rank() const { no_nccl(); }
int NcclComm::size() const { no_nccl(); }
std::string NcclComm::name() const { no_nccl(); }
int NcclComm::device() const { no_nccl(); }
double NcclComm::timeout_s() const { no_nccl(); }
void NcclComm::set_timeout_s(double) { no_nccl(); }
bool NcclComm::aborted() const { no_nccl(); }
void NcclComm::abort() { no_nccl(); }
void NcclComm::allreduce(Tensor&, ReduceOp) { no_nccl(); }
void NcclComm::reduce_scatter(Tensor&, const Tensor&, ReduceOp) { no_nccl(); }
void NcclComm::all_gather(Tensor&, const Tensor&) { no_nccl(); }
void NcclComm::all_to_all(Tensor&, const Tensor&) { no_nccl(); }
void NcclComm::broadcast(Tensor&, int) { no_nccl(); }
void NcclComm::barrier() { no_nccl(); }

#else  // TEMPER_HAVE_NCCL

namespace {

// The index of this rank among the ranks of its node, and their number.
void node_local(MPI_Comm comm, int& local_rank, int& local_size) {
  MPI_Comm node = MPI_COMM_NULL;
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  TEMPER_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node) == MPI_SUCCESS,
               "NcclComm: MPI_Comm_split_type failed while finding the ranks of this node");
  MPI_Comm_rank(node, &local_rank);
  MPI_Comm_size(node, &local_size);
  MPI_Comm_free(&node);
}

}  // namespace

namespace {

using Clock = std::chrono::steady_clock;

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::F32: return ncclFloat32;
    case DType::F64: return ncclFloat64;
    case DType::BF16: return ncclBfloat16;
    case DType::F16: return ncclFloat16;
    case DType::I32: return ncclInt32;
    case DType::I64: return ncclInt64;
    case DType::U8: return ncclUint8;
  }
  fail("NcclComm: unknown dtype code ", int(t));
}

ncclRedOp_t nccl_op(ReduceOp op) {
  return op == ReduceOp::Sum ? ncclSum : op == ReduceOp::Max ? ncclMax : ncclMin;
}

void check_cuda(cudaError_t e, const char* what, const std::string& where) {
  if (e != cudaSuccess) fail(where, ": ", what, " failed: ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
}

}  // namespace

struct NcclComm::Impl {
  std::unique_ptr<MpiComm> host;  // duplicate of the setup communicator: host tensors and conveniences
  std::string name;
  int rank = 0, size = 1, device = 0;
  double timeout_s = 600;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  bool own_stream = false;
  bool aborted = false;

  std::string where(const char* coll) const {
    return cat("NCCL ", coll, " on comm '", name, "' (rank ", rank, " of ", size, ", cuda device ", device, ")");
  }

  void abort_comm() {
    if (comm) (void)ncclCommAbort(comm);
    comm = nullptr;
    aborted = true;
  }

  // Waits until the communicator has no operation in progress (non-blocking mode).
  void settle(const char* coll, Clock::time_point deadline) {
    ncclResult_t st = ncclInProgress;
    while (true) {
      TEMPER_CHECK(ncclCommGetAsyncError(comm, &st) == ncclSuccess, where(coll), ": ncclCommGetAsyncError failed");
      if (st != ncclInProgress) break;
      if (Clock::now() > deadline) timeout(coll);
      std::this_thread::yield();
    }
    if (st != ncclSuccess) failed(coll, st);
  }

  [[noreturn]] void timeout(const char* coll) {
    abort_comm();
    fail(where(coll), " did not complete within the timeout of ", timeout_s,
         " s; the communicator was aborted. A rank may have died, skipped this collective or called another "
         "one (check every rank's log), or the timeout is too short for this size");
  }

  [[noreturn]] void failed(const char* coll, ncclResult_t st) {
    const char* detail = comm ? ncclGetLastError(comm) : "";
    abort_comm();
    fail(where(coll), " failed: ", ncclGetErrorString(st), (detail && *detail) ? cat(" (", detail, ")") : "",
         "; the communicator was aborted");
  }

  // An NCCL call's immediate result: in-progress is settled, errors thrown.
  void call(ncclResult_t r, const char* coll, Clock::time_point deadline) {
    if (r == ncclInProgress) {
      settle(coll, deadline);
      return;
    }
    if (r != ncclSuccess) failed(coll, r);
  }

  Clock::time_point deadline() const {
    return Clock::now() + std::chrono::microseconds(static_cast<int64_t>(timeout_s * 1e6));
  }

  void ready(const char* coll) {
    TEMPER_CHECK(!aborted, where(coll), ": the communicator was aborted after an earlier error or timeout");
    check_cuda(cudaSetDevice(device), "cudaSetDevice", where(coll));
    if (own_stream) check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize before the collective", where(coll));
  }

  // The watchdog: polls the stream and NCCL's asynchronous error until done or the deadline.
  void wait(const char* coll, Clock::time_point deadline) {
    int spins = 0;
    while (true) {
      const cudaError_t q = cudaStreamQuery(stream);
      ncclResult_t st = ncclSuccess;
      TEMPER_CHECK(ncclCommGetAsyncError(comm, &st) == ncclSuccess, where(coll), ": ncclCommGetAsyncError failed");
      if (st != ncclSuccess && st != ncclInProgress) failed(coll, st);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) {
        abort_comm();
        check_cuda(q, "the stream", where(coll));
      }
      if (Clock::now() > deadline) timeout(coll);
      if (++spins < 2000)
        std::this_thread::yield();
      else
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  void check_device_tensor(const char* coll, const Tensor& t, const char* role) const {
    TEMPER_CHECK(t.defined() || t.numel() == 0, where(coll), ": the ", role, " tensor is undefined");
    TEMPER_CHECK(t.device() == Device::CUDA, where(coll), ": the ", role, " tensor (", dtype_name(t.dtype()), " ",
                 shape_str(t.shape()), ") is on ", device_name(t.device()), ", expected a cuda tensor");
  }
};

bool nccl_comm_supported(MPI_Comm comm, std::string* why) {
  int local_rank = 0, local_size = 1;
  node_local(comm, local_rank, local_size);
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    count = 0;
  }
  int ok = local_rank < count ? 1 : 0, all_ok = 0;
  MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm);
  if (!all_ok && why) {
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    *why = cat("not every rank has a GPU of its own (this rank, ", rank, ", is local rank ", local_rank, " of ",
               local_size, " on its node and sees ", count, " CUDA device(s))");
  }
  return all_ok != 0;
}

std::unique_ptr<NcclComm> NcclComm::create(MPI_Comm comm, std::string name, NcclOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->host = MpiComm::dup(comm, name + "/host");
  impl->name = std::move(name);
  impl->rank = impl->host->rank();
  impl->size = impl->host->size();
  TEMPER_CHECK(options.timeout_s > 0, "NcclComm '", impl->name, "': timeout must be > 0 s, got ", options.timeout_s);
  impl->timeout_s = options.timeout_s;
  int local_rank = 0, local_size = 1;
  node_local(comm, local_rank, local_size);
  impl->device = options.device >= 0 ? options.device : local_rank;

  // Every rank learns whether every rank can take part before anyone calls NCCL.
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    count = 0;
  }
  int ok = impl->device < count ? 1 : 0, all_ok = 0;
  MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm);
  TEMPER_CHECK(ok, "NcclComm '", impl->name, "': rank ", impl->rank, " wants cuda device ", impl->device,
               " but sees ", count, " device(s) (one GPU per rank: start at most as many ranks per node as GPUs)");
  TEMPER_CHECK(all_ok, "NcclComm '", impl->name, "': another rank has no GPU of its own (see its message)");

  check_cuda(cudaSetDevice(impl->device), "cudaSetDevice", impl->where("init"));
  if (options.stream) {
    impl->stream = static_cast<cudaStream_t>(options.stream);
  } else {
    check_cuda(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking), "cudaStreamCreate",
               impl->where("init"));
    impl->own_stream = true;
  }

  ncclUniqueId id;
  if (impl->rank == 0) {
    const ncclResult_t r = ncclGetUniqueId(&id);
    TEMPER_CHECK(r == ncclSuccess, impl->where("init"), ": ncclGetUniqueId failed: ", ncclGetErrorString(r));
  }
  TEMPER_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, impl->host->handle()) == MPI_SUCCESS, impl->where("init"),
               ": broadcasting the NCCL unique id over MPI failed");
  ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
  cfg.blocking = 0;  // returns at once; the watchdog bounds the wait
  const auto deadline = impl->deadline();
  const ncclResult_t r = ncclCommInitRankConfig(&impl->comm, impl->size, id, impl->rank, &cfg);
  if (r != ncclSuccess && r != ncclInProgress) {
    impl->comm = nullptr;
    fail(impl->where("init"), ": ncclCommInitRankConfig failed: ", ncclGetErrorString(r));
  }
  impl->settle("init", deadline);
  return std::unique_ptr<NcclComm>(new NcclComm(std::move(impl)));
}

NcclComm::NcclComm(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

NcclComm::~NcclComm() {
  if (!impl_) return;
  Impl& m = *impl_;
  if (m.comm) {
    (void)cudaSetDevice(m.device);
    // Graceful: flush, bounded by the timeout; abort when it does not finish.
    bool clean = false;
    ncclResult_t r = ncclCommFinalize(m.comm);
    if (r == ncclSuccess || r == ncclInProgress) {
      const auto deadline = m.deadline();
      ncclResult_t st = ncclInProgress;
      while (ncclCommGetAsyncError(m.comm, &st) == ncclSuccess && st == ncclInProgress && Clock::now() < deadline)
        std::this_thread::yield();
      clean = st == ncclSuccess;
    }
    if (clean)
      (void)ncclCommDestroy(m.comm);
    else
      (void)ncclCommAbort(m.comm);
    m.comm = nullptr;
  }
  if (m.own_stream && m.stream) (void)cudaStreamDestroy(m.stream);
}

int NcclComm::rank() const { return impl_->rank; }
int NcclComm::size() const { return impl_->size; }
std::string NcclComm::name() const { return impl_->name; }
int NcclComm::device() const { return impl_->device; }
double NcclComm::timeout_s() const { return impl_->timeout_s; }
void NcclComm::set_timeout_s(double seconds) {
  TEMPER_CHECK(seconds > 0, "NcclComm '", impl_->name, "': timeout must be > 0 s, got ", seconds);
  impl_->timeout_s = seconds;
}
bool NcclComm::aborted() const { return impl_->aborted; }
void NcclComm::abort() { impl_->abort_comm(); }

void NcclComm::allreduce(Tensor& x, ReduceOp op) {
  if (x.device() == Device::CPU) return impl_->host->allreduce(x, op);
  Impl& m = *impl_;
  const char* coll = "allreduce";
  m.check_device_tensor(coll, x, "in/out");
  if (x.numel() == 0) return;
  m.ready(coll);
  const auto dl = m.deadline();
  m.call(ncclAllReduce(x.raw(), x.raw(), size_t(x.numel()), nccl_type(x.dtype()), nccl_op(op), m.comm, m.stream), coll,
         dl);
  m.wait(coll, dl);
}

void NcclComm::broadcast(Tensor& x, int root) {
  if (x.device() == Device::CPU) return impl_->host->broadcast(x, root);
  Impl& m = *impl_;
  const char* coll = "broadcast";
  m.check_device_tensor(coll, x, "in/out");
  TEMPER_CHECK(root >= 0 && root < m.size, m.where(coll), ": root ", root, " is not a rank of this communicator");
  if (x.numel() == 0) return;
  m.ready(coll);
  const auto dl = m.deadline();
  m.call(ncclBroadcast(x.raw(), x.raw(), size_t(x.numel()), nccl_type(x.dtype()), root, m.comm, m.stream), coll, dl);
  m.wait(coll, dl);
}

void NcclComm::reduce_scatter(Tensor& out, const Tensor& in, ReduceOp op) {
  if (out.device() == Device::CPU && in.device() == Device::CPU) return impl_->host->reduce_scatter(out, in, op);
  Impl& m = *impl_;
  const char* coll = "reduce_scatter";
  m.check_device_tensor(coll, out, "output");
  m.check_device_tensor(coll, in, "input");
  TEMPER_CHECK(in.dtype() == out.dtype(), m.where(coll), ": input is ", dtype_name(in.dtype()), " but output is ",
               dtype_name(out.dtype()));
  const int64_t n = out.numel();
  TEMPER_CHECK(in.numel() == n * m.size, m.where(coll), ": input has ", in.numel(),
               " elements but must have size × output = ", m.size, " × ", n);
  if (n == 0) return;
  m.ready(coll);
  const auto dl = m.deadline();
  m.call(ncclReduceScatter(in.raw(), out.raw(), size_t(n), nccl_type(in.dtype()), nccl_op(op), m.comm, m.stream), coll,
         dl);
  m.wait(coll, dl);
}

void NcclComm::all_gather(Tensor& out, const Tensor& in) {
  if (out.device() == Device::CPU && in.device() == Device::CPU) return impl_->host->all_gather(out, in);
  Impl& m = *impl_;
  const char* coll = "all_gather";
  m.check_device_tensor(coll, out, "output");
  m.check_device_tensor(coll, in, "input");
  TEMPER_CHECK(in.dtype() == out.dtype(), m.where(coll), ": input is ", dtype_name(in.dtype()), " but output is ",
               dtype_name(out.dtype()));
  const int64_t n = in.numel();
  TEMPER_CHECK(out.numel() == n * m.size, m.where(coll), ": output has ", out.numel(),
               " elements but must have size × input = ", m.size, " × ", n);
  if (n == 0) return;
  m.ready(coll);
  const auto dl = m.deadline();
  m.call(ncclAllGather(in.raw(), out.raw(), size_t(n), nccl_type(in.dtype()), m.comm, m.stream), coll, dl);
  m.wait(coll, dl);
}

void NcclComm::all_to_all(Tensor& out, const Tensor& in) {
  if (out.device() == Device::CPU && in.device() == Device::CPU) return impl_->host->all_to_all(out, in);
  Impl& m = *impl_;
  const char* coll = "all_to_all";
  m.check_device_tensor(coll, out, "output");
  m.check_device_tensor(coll, in, "input");
  TEMPER_CHECK(in.dtype() == out.dtype() && in.numel() == out.numel(), m.where(coll), ": input (",
               dtype_name(in.dtype()), ", ", in.numel(), " elements) and output (", dtype_name(out.dtype()), ", ",
               out.numel(), ") must match");
  TEMPER_CHECK(in.numel() % m.size == 0, m.where(coll), ": ", in.numel(), " elements do not split into ", m.size,
               " equal chunks");
  TEMPER_CHECK(in.raw() != out.raw() || in.numel() == 0, m.where(coll), ": in-place all_to_all is not supported");
  const int64_t chunk = in.numel() / m.size;
  if (chunk == 0) return;
  m.ready(coll);
  const auto dl = m.deadline();
  const size_t es = dtype_size(in.dtype());
  const ncclDataType_t dt = nccl_type(in.dtype());
  m.call(ncclGroupStart(), coll, dl);
  for (int r = 0; r < m.size; ++r) {
    const char* src = static_cast<const char*>(in.raw()) + size_t(r) * size_t(chunk) * es;
    char* dst = static_cast<char*>(out.raw()) + size_t(r) * size_t(chunk) * es;
    m.call(ncclSend(src, size_t(chunk), dt, r, m.comm, m.stream), coll, dl);
    m.call(ncclRecv(dst, size_t(chunk), dt, r, m.comm, m.stream), coll, dl);
  }
  m.call(ncclGroupEnd(), coll, dl);
  m.wait(coll, dl);
}

void NcclComm::barrier() {
  Impl& m = *impl_;
  m.ready("barrier");
  m.wait("barrier", m.deadline());  // this rank's queued work first
  m.host->barrier();
}

#endif  // TEMPER_HAVE_NCCL

std::unique_ptr<Comm> make_nccl_comm(MPI_Comm comm, const std::string& name, const NcclOptions& options) {
  return NcclComm::create(comm, name, options);
}

}  // namespace temper
