// hienetplugin.so: the file LAMMPS loads. It loads the pair style with its LibTorch runtime,
// hienet_pair.so from the same directory, with RTLD_DEEPBIND, and hands over registration.
//
// Why: liblammps.so exports its bundled reference BLAS (dgemm_, ...). A library that the
// plugin pulls in normally resolves dgemm_ in the global scope, where liblammps comes first,
// so LibTorch's float64 matrix products ran on LAMMPS's naive dgemm instead of the MKL inside
// libtorch_cpu (half the time of a float64 si-demo step). With RTLD_DEEPBIND, hienet_pair.so
// and the libraries loaded with it (LibTorch, libhienet_ops.so) look up their own symbols
// first. HIENET_DEEPBIND=0 loads it the ordinary way (e.g. under a malloc-replacing
// LD_PRELOAD, which RTLD_DEEPBIND does not mix with).
//
// Only the C struct of lammpsplugin.h is needed here: no LAMMPS or torch headers.

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

extern "C" {
__attribute__((visibility("default"))) void lammpsplugin_init(void *lmp, void *handle,
                                                              void *regfunc);
}

namespace {

typedef void (*init_function)(void *, void *, void *);

std::string own_directory()
{
  Dl_info info;
  if (dladdr(reinterpret_cast<void *>(&lammpsplugin_init), &info) == 0 || !info.dli_fname)
    return ".";
  std::string path = info.dli_fname;
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

bool deepbind_wanted()
{
  const char *env = std::getenv("HIENET_DEEPBIND");
  return !(env && std::strcmp(env, "0") == 0);
}

}    // namespace

void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  const std::string path = own_directory() + "/hienet_pair.so";
  int flags = RTLD_NOW | RTLD_LOCAL;
#ifdef RTLD_DEEPBIND
  if (deepbind_wanted()) flags |= RTLD_DEEPBIND;
#endif
  void *pair = dlopen(path.c_str(), flags);
  if (!pair) {
    // LAMMPS then stops at "Unrecognized pair style 'hienet'"; this says why
    std::fprintf(stderr, "ERROR: hienetplugin.so: cannot load %s: %s\n", path.c_str(), dlerror());
    return;
  }
  auto init = reinterpret_cast<init_function>(dlsym(pair, "lammpsplugin_init"));
  if (!init) {
    std::fprintf(stderr, "ERROR: hienetplugin.so: %s has no lammpsplugin_init\n", path.c_str());
    return;
  }
  init(lmp, handle, regfunc);    // registers pair_style hienet (hienetplugin.cpp)
}
