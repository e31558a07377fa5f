// Process-wide malloc settings for the model's tensor traffic.
//
// Every step allocates and frees the same few hundred tensors of 0.1-30 MB. With glibc's
// defaults, blocks above the (dynamic) mmap threshold are mapped and unmapped every step and
// the heap top is trimmed back to the kernel, so each step page-faults its memory in again
// (zeroing pages in the kernel): a third of a si-demo step on one rank. configure_allocator()
// keeps blocks up to 32 MB (glibc's largest mmap threshold) in the heap and stops trimming
// below 1 GiB, so a step reuses the previous step's pages.
//
// HIENET_MALLOC=system leaves malloc alone; so do MALLOC_MMAP_THRESHOLD_ or
// MALLOC_TRIM_THRESHOLD_ in the environment (the user's own glibc tuning), a malloc other
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
