// Small helpers shared by the MPI tests.
#pragma once
#include <mpi.h>

namespace temper_mpi_test {

inline int world_size() {
  int s;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}
inline int world_rank() {
  int r;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

}  // namespace temper_mpi_test
