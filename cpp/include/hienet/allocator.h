// Process-wide malloc settings for the model's tensor traffic.
//
// Every step allocates and frees the same few hundred tensors, from 0.1 MB to gigabytes. With
// glibc's defaults, blocks above the (dynamic, at most 32 MB) mmap threshold are mapped and
// unmapped every step and the heap top is trimmed back to the kernel, so each step page-faults
// its memory in again (the kernel zeroing every page): a third of a si-demo step on one rank
// at 512 atoms, half of it at 32,768. configure_allocator() serves every block from the heap
// (M_MMAP_MAX 0) and never trims it (M_TRIM_THRESHOLD -1), so a step reuses the previous
// step's pages. The price: the process keeps its peak heap (which an MD run reaches every step
// anyway) until it exits.
//
// HIENET_MALLOC=system leaves malloc alone; so do MALLOC_MMAP_THRESHOLD_, MALLOC_MMAP_MAX_ or
// MALLOC_TRIM_THRESHOLD_ in the environment (the user's own glibc tuning); a malloc other
// than glibc's (LD_PRELOAD of jemalloc or tcmalloc) is not touched either.
#ifndef HIENET_ALLOCATOR_H
#define HIENET_ALLOCATOR_H

#include <string>

namespace hienet {

// Applies the settings once per process (later calls only report); returns a one-line
// description of what is in effect, for logs. Throws hienet::Error for a bad HIENET_MALLOC.
std::string configure_allocator();

}    // namespace hienet

#endif
