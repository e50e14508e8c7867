// temper: one MPI executable. Reads the deck (rank 0 reads, everyone parses
// the same text), builds the SP / DP-shard / DP-replicate mesh, runs the phase.
//
// Exit status: 0 done; 2 bad input or failure; 3 (kExitRequeue) checkpoint
// written after a signal or at the walltime margin: requeue and resume.
#include <mpi.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "core/log.h"
#include "core/signals.h"
#include "deck/deck.h"
#include "parallel/mesh.h"
#include "app/run_context.h"
#include "app/phases.h"
#include "app/subcommands.h"
#include "app/input_check.h"

namespace fs = std::filesystem;
using namespace temper;

namespace {

constexpr int kExitError = 2;

// Rank 0 reads the deck file; the text (or the error) is broadcast, so every
// rank parses identical input and fails identically on bad input.
Deck load_deck_collective(const CommandLine& cl, int rank) {
  std::string text, error;
  if (rank == 0) {
    try {
      text = read_deck_file(cl.deck_path);
    } catch (const Error& e) {
      error = e.what();
    }
  }
  for (std::string* s : {&text, &error}) {
    long n = long(s->size());
    MPI_Bcast(&n, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    s->resize(size_t(n));
    MPI_Bcast(s->data(), int(n), MPI_CHAR, 0, MPI_COMM_WORLD);
  }
  if (!error.empty()) throw Error(error);
  return Deck::parse(text, cl.deck_path, cl.overrides);
}

int run(int argc, char** argv, int rank, int world_size, bool& setup_done) {
  CommandLine cl = parse_command_line(argc, argv);
  if (cl.help) {
    if (rank == 0) std::cout << usage_text() << "\n" << deck_help();
    return 0;
  }
  if (cl.version) {
    if (rank == 0) std::cout << "temper " << TEMPER_VERSION << "\n";
    return 0;
  }
  if (!cl.subcommand.empty()) return run_subcommand(cl, rank);

  Deck deck = load_deck_collective(cl, rank);
  log_init(rank, log_level_from_name(deck.get_string("log.level")));
  const std::string out = deck.get_string("run.output_dir");
  // Every input file and output folder, checked by rank 0 before anything large is
  // allocated or initialised; every rank fails with its verdict.
  std::string bad;
  if (rank == 0) {
    try {
      check_run_inputs(deck);
    } catch (const Error& e) {
      bad = e.what();
    }
    // deck.resolved.ini is written once the phase got past its set-up (RunContext::commit_resolved_deck)
    log_info("temper ", TEMPER_VERSION, " | ", world_size, " rank(s) | deck ", cl.deck_path);
    if (bad.empty()) log_info("---- resolved deck ----\n", deck.resolved_text(), "-----------------------");
  }
  long n = long(bad.size());
  MPI_Bcast(&n, 1, MPI_LONG, 0, MPI_COMM_WORLD);
  bad.resize(size_t(n));
  MPI_Bcast(bad.data(), int(n), MPI_CHAR, 0, MPI_COMM_WORLD);
  if (!bad.empty()) throw Error(bad);

  MeshShape shape{int(deck.get_int("parallel.sp")), int(deck.get_int("parallel.dp_shard")),
                  int(deck.get_int("parallel.dp_replicate"))};
  MeshOptions opt{int(deck.get_int("parallel.ranks_per_node")), deck.get_bool("parallel.allow_cross_node"),
                  deck.get_float("parallel.comm_timeout")};
  Mesh mesh = Mesh::build(MPI_COMM_WORLD, shape, opt);
  std::string map = mesh.rank_map();
  if (rank == 0) log_info(map);

  RunContext ctx(deck, mesh);
  setup_done = true;  // from here on, an error on one rank aborts the job
  const std::string phase = deck.get_string("run.phase");
  int status = run_phase(phase, ctx);
  ctx.finish_checkpoints();  // the last checkpoint may still be being written in the background
  ctx.commit_resolved_deck();
  if (rank == 0) log_info("results in ", fs::absolute(out).string());
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  // Before anything slow (MPI_Init alone takes most of a second): a SIGUSR1/SIGTERM during
  // start-up (a scheduler's warning, a preemption) is kept and acted on at the first step
  // boundary instead of killing the job before it could checkpoint. Again after MPI_Init, in
  // case the MPI library installed a handler of its own.
  install_signal_handlers();
  // MPI_THREAD_MULTIPLE: checkpoints are written by a background thread (io/checkpoint_async)
  int provided = MPI_THREAD_SINGLE;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  install_signal_handlers();
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  bool setup_done = false;
  int status = 0;
  try {
    status = run(argc, argv, rank, size, setup_done);
  } catch (const std::exception& e) {
    // Set-up errors (deck, mesh) happen identically on every rank: rank 0 reports,
    // everyone exits cleanly. Later errors may be on one rank only: abort the job.
    if (rank == 0 || setup_done) {
      if (size > 1 && rank != 0) std::fprintf(stderr, "[rank %d] ", rank);
      std::fprintf(stderr, "temper: error: %s\n", e.what());
      std::fflush(stderr);
    }
    if (setup_done && size > 1) MPI_Abort(MPI_COMM_WORLD, kExitError);
    status = kExitError;
  }
  if (status == kExitRequeue && rank == 0 && signal_received())
    std::fprintf(stderr, "temper: exit status %d (requeue) %.1f s after %s\n", status, signal_age_seconds(),
                 signal_name(last_signal()));
  MPI_Finalize();
  return status;
}
