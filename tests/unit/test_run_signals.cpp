// The signal path at start-up: temper's handlers are in place from the moment the executable
// is loaded, before MPI_Init and the deck, so a scheduler's SIGTERM that arrives during
// start-up is a checkpoint at the first step boundary (exit 3), not a kill (exit 143).
// Deterministic: the SIGTERM is made pending, blocked, before exec (pending signals and the
// signal mask survive exec); temper's load-time install unblocks it and catches it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>

#include "unit/run_util.h"

using namespace temper_test;
namespace fs = std::filesystem;

namespace {

// Runs temper with `args`, a SIGTERM already pending (and blocked) when it starts; its exit status.
int run_with_pending(int sig, const std::vector<std::string>& args, const fs::path& log) {
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) _exit(126);
    dup2(fd, 1);
    dup2(fd, 2);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    raise(sig);  // pending from here on, through the exec
    std::vector<char*> argv;
    std::string bin = temper_bin();
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

}  // namespace

TEST(RunSignals, SigtermDuringStartUpCheckpointsAndResumes) {
  auto a = fresh_dir("sig_start_straight"), b = fresh_dir("sig_start");
  const std::string deck = std::string(TEMPER_SOURCE_DIR) + "/input/toy.deck";
  auto r = run_cmd(temper_bin() + " " + deck + " --run.output_dir=" + a.string() +
                   " --toy.steps=30 --log.every=1000 --checkpoint.every=0 --checkpoint.resume=never");
  ASSERT_EQ(r.status, 0) << r.output;

  int status = run_with_pending(SIGTERM,
                                {deck, "--run.output_dir=" + b.string(), "--toy.steps=30", "--log.every=1000",
                                 "--checkpoint.every=0", "--checkpoint.resume=never"},
                                b / "log.txt");
  std::string log = read_file(b / "log.txt");
  EXPECT_EQ(status, 3) << log;
  EXPECT_NE(log.find("stopping at step 0: signal received (SIGTERM"), std::string::npos) << log;
  EXPECT_NE(log.find("exit status 3 (requeue)"), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(b / "checkpoints" / "ckpt_000000000.h5")) << log;

  r = run_cmd(temper_bin() + " " + deck + " --run.output_dir=" + b.string() +
              " --toy.steps=30 --log.every=1000 --checkpoint.every=0 --checkpoint.resume=auto");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("resuming from"), std::string::npos) << r.output;
  EXPECT_EQ(read_file(a / "toy_result.txt"), read_file(b / "toy_result.txt"));
  fs::remove_all(a);
  fs::remove_all(b);
}

// SIGUSR2 (Open MPI's mpirun forwards it like SIGUSR1) is a checkpoint request too.
TEST(RunSignals, PendingSigusr2IsACheckpointRequest) {
  auto b = fresh_dir("sig_usr2");
  int status = run_with_pending(SIGUSR2,
                                {std::string(TEMPER_SOURCE_DIR) + "/input/toy.deck", "--run.output_dir=" + b.string(),
                                 "--toy.steps=30", "--log.every=1000", "--checkpoint.every=0",
                                 "--checkpoint.resume=never"},
                                b / "log.txt");
  std::string log = read_file(b / "log.txt");
  EXPECT_EQ(status, 3) << log;
  EXPECT_NE(log.find("signal received (SIGUSR2"), std::string::npos) << log;
  fs::remove_all(b);
}
