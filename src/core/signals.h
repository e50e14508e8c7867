// Signals: SIGUSR1 (Slurm's early warning) and SIGTERM (PBS, scancel, walltime)
// only set a flag here. The step loop asks stop_requested() at each step
// boundary (all ranks agree through an allreduce), writes a checkpoint and
// exits with kExitRequeue so the job script requeues the job.
#pragma once

namespace temper {

constexpr int kExitRequeue = 3;   // "checkpoint written, please requeue me"

void install_signal_handlers();
bool signal_received();            // this rank got SIGUSR1 or SIGTERM
int last_signal();                 // the signal number, 0 if none
void clear_signal();               // for tests

}  // namespace temper
