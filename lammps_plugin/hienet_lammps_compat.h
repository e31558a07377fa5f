/* -*- c++ -*- ----------------------------------------------------------------------------
   The few places where the LAMMPS versions and MPI headers pair_style hienet builds against
   differ (LAMMPS stable 2Aug2023 and later; a real MPI or LAMMPS's serial STUBS/mpi.h).

   LAMMPS's headers carry no version macro, so the differences are detected from the
   declarations themselves at compile time, which also covers patched and vendor trees:
   * Comm::forward_comm(Pair *, int size) / reverse_comm(Pair *, int size): the size argument
     appeared after 27Jun2024 (2Aug2023 and 27Jun2024 have forward_comm(Pair *) only, which
     receives pair->comm_forward doubles per atom; hienet packs fewer, which MPI allows).
   * MPI_Comm_split_type: MPI-3, and not in the STUBS/mpi.h of LAMMPS 2Aug2023.
------------------------------------------------------------------------------------------ */

#ifndef HIENET_LAMMPS_COMPAT_H
#define HIENET_LAMMPS_COMPAT_H

#include "comm.h"
#include "pair.h"

#include <mpi.h>

#include <type_traits>
#include <utility>

namespace hienet_lammps {

template <typename C, typename = void> struct has_sized_pair_comm : std::false_type {};
template <typename C>
struct has_sized_pair_comm<C, std::void_t<decltype(std::declval<C &>().forward_comm(
                                  std::declval<LAMMPS_NS::Pair *>(), 1))>> : std::true_type {};

// forward communication of `size` doubles per atom packed by pair->pack_forward_comm()
template <typename C = LAMMPS_NS::Comm>
void forward_comm(C *comm, LAMMPS_NS::Pair *pair, int size)
{
  if constexpr (has_sized_pair_comm<C>::value) comm->forward_comm(pair, size);
  else comm->forward_comm(pair);    // sized by pair->comm_forward (>= size)
}

template <typename C = LAMMPS_NS::Comm>
void reverse_comm(C *comm, LAMMPS_NS::Pair *pair, int size)
{
  if constexpr (has_sized_pair_comm<C>::value) comm->reverse_comm(pair, size);
  else comm->reverse_comm(pair);    // sized by pair->comm_reverse (>= size)
}

// rank within the node (shared-memory domain), which picks the GPU; 0 without MPI
inline int node_local_rank(MPI_Comm world, int me)
{
#if defined(MPI_STUBS)    // LAMMPS's serial stubs: one process
  (void) world;
  (void) me;
  return 0;
#else
  int local_rank = 0;
  MPI_Comm node;
  MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, me, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &local_rank);
  MPI_Comm_free(&node);
  return local_rank;
#endif
}

}    // namespace hienet_lammps

#endif
