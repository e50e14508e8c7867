// bench_checkpoint: checkpoint I/O of the training engine for a benchmark shape,
// on any number of ranks (mpirun -np N; dp_shard N by default). Prints one
// markdown row per figure and a JSON line:
//   init         Engine construction: parameters allocated, random initialisation,
//                sharding, optimizer state (the start-up cost before a first step)
//   stall        Engine::save into the host staging buffers: what training waits for
//                per asynchronous save (first save: buffers allocated; later: reused)
//   async write  the background write of that save (every rank writes its slices)
//   sync write   the same state written synchronously: GB/s of the whole file
//   load         CheckpointStore::open + Engine::load on every rank (its slices only)
//   reference    the same number of bytes written by one process with write() + fsync
//                into one plain file in the same folder, measured in the same run
//
//   mpirun -np 4 bench_checkpoint [--backend cpu|cuda] [--shape ckpt-small|tiny|qwen2-0.5b|qwen2-1.5b]
//                                 [--replicate R] [--dir DIR] [--keep 0|1]
#include <fcntl.h>
#include <mpi.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/checkpoint_async.h"
#include "kernels/kernels.h"
#include "parallel/mesh.h"
#include "train/engine.h"
#include "validation/bench/bench_shapes.h"

using namespace temper;
namespace fs = std::filesystem;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Seconds of the slowest rank for f (barriers around it).
template <typename F>
double timed(F&& f) {
  MPI_Barrier(MPI_COMM_WORLD);
  const double t0 = now();
  f();
  double dt = now() - t0, worst = 0;
  MPI_Allreduce(&dt, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return worst;
}

// One process: `bytes` written with write() into a fresh file, then fsync; seconds.
double raw_write(const std::string& path, double bytes) {
  std::vector<char> buf(size_t(64) << 20, 'x');
  const double t0 = now();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) fail("cannot create ", path);
  for (double left = bytes; left > 0;) {
    const size_t n = size_t(std::min<double>(left, double(buf.size())));
    if (::write(fd, buf.data(), n) != ssize_t(n)) fail("write to ", path, " failed");
    left -= double(n);
  }
  if (::fsync(fd) != 0) fail("fsync of ", path, " failed");
  ::close(fd);
  const double dt = now() - t0;
  ::unlink(path.c_str());
  return dt;
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  std::string backend = "cpu", shape = "tiny", dir = "bench_checkpoint_dir";
  int replicate = 1, keep = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--backend") backend = v;
    else if (a == "--shape") shape = v;
    else if (a == "--replicate") replicate = std::atoi(v.c_str());
    else if (a == "--dir") dir = v;
    else if (a == "--keep") keep = std::atoi(v.c_str());
    else {
      if (rank == 0) std::fprintf(stderr, "bench_checkpoint: unknown option %s\n", a.c_str());
      MPI_Finalize();
      return 2;
    }
  }
  int status = 0;
  try {
    TEMPER_CHECK(replicate >= 1 && world % replicate == 0, "--replicate ", replicate, " does not divide ", world,
                 " ranks");
    MPI_Comm io;
    MPI_Comm_dup(MPI_COMM_WORLD, &io);
    Mesh mesh = Mesh::build(MPI_COMM_WORLD, {1, world / replicate, replicate});
    int local = 0;
    {
      MPI_Comm node;
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
      MPI_Comm_rank(node, &local);
      MPI_Comm_free(&node);
    }
    auto k = make_kernels(backend, local);
    ModelConfig cfg;
    if (shape == "ckpt-small") {  // about 67M parameters, a 0.8 GB checkpoint: the 2-core CI machine's size
      cfg = bench_shape_config("tiny");
      cfg.vocab_size = 32000, cfg.d_model = 768, cfg.n_layers = 6, cfg.n_heads = 12, cfg.n_kv_heads = 4;
      cfg.head_dim = 64, cfg.ffn_dim = 2048;
      cfg.validate();
    } else {
      cfg = bench_shape_config(shape);
    }
    EngineOptions opt;
    InitialWeights init;
    init.kind = "random";
    std::unique_ptr<Engine> engine;
    const double t_init = timed([&] {
      engine = std::make_unique<Engine>(cfg, *k, mesh, opt, init, 1);
      k->synchronize();
    });
    if (rank == 0) fs::remove_all(dir);
    MPI_Barrier(MPI_COMM_WORLD);
    CheckpointStore store(dir, 0);
    // one checkpoint on disk at a time (a 1.5B one is 21 GB)
    auto drop = [&](int64_t step) {
      if (rank == 0 && !keep) fs::remove(store.path_for(step));
      MPI_Barrier(MPI_COMM_WORLD);
    };

    // asynchronous save: the stall (staging copies), then the background write
    double stall_cold = 0, stall_warm = 0, async_s = 0;
    {
      AsyncCheckpointWriter writer(store, io);
      stall_cold = timed([&] {
        CheckpointState s;
        s.step = 1;
        s.phase = "sft";
        engine->save(s);
        writer.submit(std::move(s));
      });
      async_s = timed([&] { writer.wait(); });
      drop(1);
      stall_warm = timed([&] {
        CheckpointState s;
        s.step = 2;
        s.phase = "sft";
        engine->save(s);
        writer.submit(std::move(s));
      });
      writer.wait();
      drop(2);
    }
    // synchronous write of the same state
    CheckpointState s;
    s.step = 3;
    s.phase = "sft";
    engine->save(s);
    std::string path;
    const double sync_s = timed([&] { path = store.write(s, io); });
    s = CheckpointState();
    const double bytes = double(fs::file_size(path));
    const double load_s = timed([&] { engine->load(CheckpointStore::open(path)); });
    drop(3);
    double ref_s = 0;
    if (rank == 0) ref_s = raw_write((fs::path(dir) / "raw_reference.bin").string(), bytes);
    MPI_Bcast(&ref_s, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    if (rank == 0 && !keep) fs::remove_all(dir);

    if (rank == 0) {
      const double gb = bytes / 1e9;
      std::printf("bench_checkpoint %s on %s, %d rank(s) (dp_shard %d x dp_replicate %d), %lld parameters, "
                  "file %.3f GB in %s\n",
                  shape.c_str(), backend.c_str(), world, world / replicate, replicate,
                  (long long)cfg.param_count(), gb, dir.c_str());
      std::printf("| figure | seconds | GB/s |\n|---|---:|---:|\n");
      std::printf("| init (engine: allocate, random init, shard, optimizer) | %.3f | |\n", t_init);
      std::printf("| stall per async save, first (staging buffers allocated) | %.3f | %.2f |\n", stall_cold,
                  gb / stall_cold);
      std::printf("| stall per async save, later (buffers reused) | %.3f | %.2f |\n", stall_warm, gb / stall_warm);
      std::printf("| async write in the background | %.3f | %.2f |\n", async_s, gb / async_s);
      std::printf("| synchronous collective write | %.3f | %.2f |\n", sync_s, gb / sync_s);
      std::printf("| load (each rank its slices) | %.3f | %.2f |\n", load_s, gb / load_s);
      std::printf("| reference: one process write()+fsync, same bytes | %.3f | %.2f |\n", ref_s, gb / ref_s);
      std::printf("{\"bench\":\"checkpoint\",\"shape\":\"%s\",\"backend\":\"%s\",\"ranks\":%d,\"replicate\":%d,"
                  "\"bytes\":%.0f,\"init_s\":%.4f,\"stall_cold_s\":%.4f,\"stall_warm_s\":%.4f,\"async_write_s\":%.4f,"
                  "\"sync_write_s\":%.4f,\"load_s\":%.4f,\"reference_s\":%.4f}\n",
                  shape.c_str(), backend.c_str(), world, replicate, bytes, t_init, stall_cold, stall_warm, async_s,
                  sync_s, load_s, ref_s);
    }
    engine.reset();
    MPI_Comm_free(&io);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_checkpoint (rank %d): %s\n", rank, e.what());
    status = 2;
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  MPI_Finalize();
  return status;
}
