#include "core/signals.h"

#include <csignal>
#include <ctime>

namespace temper {
namespace {

constexpr int kSignals[] = {SIGUSR1, SIGUSR2, SIGTERM};

volatile std::sig_atomic_t g_signal = 0;
// Written by the handler (clock_gettime is async-signal-safe) before g_signal is set.
timespec g_signal_time{};
timespec g_start{};
bool g_started = false;

double seconds(const timespec& t) { return double(t.tv_sec) + 1e-9 * double(t.tv_nsec); }

double now() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return seconds(t);
}

// The first signal counts (a job script's forwarded SIGUSR1 may follow the scheduler's SIGTERM).
extern "C" void on_signal(int sig) {
  if (g_signal != 0) return;
  clock_gettime(CLOCK_MONOTONIC, &g_signal_time);
  g_signal = sig;
}

}  // namespace

void install_signal_handlers() {
  if (!g_started) {
    clock_gettime(CLOCK_MONOTONIC, &g_start);
    g_started = true;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigset_t unblock;
  sigemptyset(&unblock);
  for (int sig : kSignals) {
    struct sigaction current {};
    sigaction(sig, nullptr, &current);
    if (current.sa_handler != on_signal) sigaction(sig, &sa, nullptr);
    sigaddset(&unblock, sig);
  }
  sigprocmask(SIG_UNBLOCK, &unblock, nullptr);
}

bool signal_received() { return g_signal != 0; }
int last_signal() { return g_signal; }

const char* signal_name(int sig) {
  switch (sig) {
    case SIGUSR1: return "SIGUSR1";
    case SIGUSR2: return "SIGUSR2";
    case SIGTERM: return "SIGTERM";
    default: return "a signal";
  }
}

double signal_age_seconds() { return g_signal ? now() - seconds(g_signal_time) : 0.0; }
double process_seconds() { return g_started ? now() - seconds(g_start) : 0.0; }
void clear_signal() { g_signal = 0; }

}  // namespace temper

namespace {
// Before main and before the constructors of the executable's other objects: the shared
// libraries are loaded and initialised by then, everything after is temper's own start-up.
__attribute__((constructor(101))) void install_at_load() { temper::install_signal_handlers(); }
}  // namespace
