#include "core/signals.h"

#include <csignal>

namespace temper {
namespace {
volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_signal(int sig) { g_signal = sig; }
}  // namespace

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool signal_received() { return g_signal != 0; }
int last_signal() { return g_signal; }
void clear_signal() { g_signal = 0; }

}  // namespace temper
