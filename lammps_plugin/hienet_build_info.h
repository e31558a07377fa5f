// What the plugin says about itself (LAMMPS log, `plugin list`): version, git commit and the
// LAMMPS it was built for. CMake defines all three; these defaults keep other builds compiling.

#ifndef LMP_HIENET_BUILD_INFO_H
#define LMP_HIENET_BUILD_INFO_H

#ifndef HIENET_VERSION
#define HIENET_VERSION "unknown"
#endif
#ifndef HIENET_GIT
#define HIENET_GIT "unknown"
#endif
#ifndef HIENET_BUILD_INFO
#define HIENET_BUILD_INFO "unknown LAMMPS headers"
#endif

#endif
