// configure_allocator(): see hienet/allocator.h.
#include "hienet/allocator.h"

#include "hienet/model.h"

#include <cstdlib>
#include <mutex>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace hienet {

namespace {

constexpr int kMmapThreshold = 32 << 20;        // glibc's maximum on 64-bit systems
constexpr int kTrimThreshold = 1 << 30;

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
  if (env_set("MALLOC_MMAP_THRESHOLD_") || env_set("MALLOC_TRIM_THRESHOLD_"))
    return "malloc left alone (MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ set)";
#if defined(__GLIBC__)
  // mallopt returns 1 on success; a replaced malloc (jemalloc, tcmalloc) ignores it or fails
  if (mallopt(M_MMAP_THRESHOLD, kMmapThreshold) == 1 && mallopt(M_TRIM_THRESHOLD, kTrimThreshold) == 1)
    return "glibc malloc: mmap threshold 32 MB, trim threshold 1 GB (HIENET_MALLOC=system: defaults)";
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
