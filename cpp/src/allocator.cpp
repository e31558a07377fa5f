// configure_allocator(): see hienet/allocator.h.
#include "hienet/allocator.h"

#include "hienet/model.h"

#include <cstdlib>
#include <initializer_list>
#include <mutex>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace hienet {

namespace {

bool env_set(const char *name)
{
  const char *v = std::getenv(name);
  return v && *v;
}

std::string apply()
{
  const char *choice = std::getenv("HIENET_MALLOC");
  const std::string want = choice ? choice : "";
  if (!want.empty() && want != "tuned" && want != "system")
    throw Error("HIENET_MALLOC must be 'tuned' or 'system', got '" + want + "'");
  if (want == "system") return "malloc left alone (HIENET_MALLOC=system)";
  for (const char *name : {"MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"})
    if (env_set(name)) return std::string("malloc left alone (") + name + " is set)";
#if defined(__GLIBC__)
  // mallopt returns 1 on success; a replaced malloc (jemalloc, tcmalloc) ignores it or fails.
  // M_MMAP_MAX 0: no block is mapped on its own (any size comes from the heap); M_TRIM_THRESHOLD
  // -1: the heap is never trimmed (glibc's documented "disable trimming").
  if (mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, -1) == 1)
    return "glibc malloc without mmap and trimming, each step reuses the last one's pages "
           "(HIENET_MALLOC=system: glibc defaults)";
  return "malloc left alone (mallopt refused the settings)";
#else
  return "malloc left alone (not glibc)";
#endif
}

}    // namespace

std::string configure_allocator()
{
  static std::once_flag once;
  static std::string description;
  static std::string failure;
  std::call_once(once, [] {
    try {
      description = apply();
    } catch (const Error &e) {
      failure = e.what();
    }
  });
  if (!failure.empty()) throw Error(failure);
  return description;
}

}    // namespace hienet
