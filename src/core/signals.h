// Signals: whatever a scheduler sends to ask for an early stop — SIGUSR1 (Slurm's
// `--signal` warning, forwarded by the job scripts and by Open MPI's mpirun), SIGUSR2
// (also forwarded by mpirun) or SIGTERM (Slurm at a time limit, scancel, preemption; PBS
// at walltime or qdel) — only sets a flag here. The step loop asks stop_requested() at
// each step boundary (all ranks agree through an allreduce), writes a checkpoint and
// exits with kExitRequeue so the job script requeues the job. The handlers are installed
// first thing in main, before MPI_Init, so a signal during start-up is kept, not fatal.
//
// The process clock starts at the same moment: run.walltime counts from process start
// (the job script passes the time its allocation has left), not from the first step.
#pragma once

namespace temper {

constexpr int kExitRequeue = 3;   // "checkpoint written, please requeue me"

// Installs the handlers for SIGUSR1, SIGUSR2 and SIGTERM and unblocks those signals (a
// launcher may have left them blocked); starts the process clock on the first call.
// Idempotent: main calls it again after MPI_Init in case the MPI library replaced one.
void install_signal_handlers();
bool signal_received();            // this rank got one of those signals
int last_signal();                 // the first signal's number, 0 if none
const char* signal_name(int sig);  // "SIGUSR1", ...
double signal_age_seconds();       // seconds since the first signal arrived (0 if none)
double process_seconds();          // seconds since install_signal_handlers() was first called
void clear_signal();               // for tests

}  // namespace temper
