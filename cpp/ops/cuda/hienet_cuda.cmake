# The GPU kernels of hienet::convolution (README.md here). include()d by the hienet_ops part of
# the root CMakeLists.txt after the target hienet_ops exists (an include, not a subdirectory:
# CUDA is enabled in the directory that links the kernels).
#
#   libhienet_ops_emulated.so  always: the kernels' block bodies run on the CPU, registered as
#                              hienet_emulated::* for the tests (never loaded by the package)
#   CUDA kernels in hienet_ops when the torch found has CUDA and nvcc is found
#                              (HIENET_CUDA=AUTO, the default; ON requires them, OFF skips them)
#
# HIENET_CUDA_ARCHS: CMake CUDA architectures of the kernels, default "80-real;90": SASS for
# sm_80 (A100) and sm_90 (H100) and PTX for sm_90, which newer GPUs compile at load time.
# (torch's own CMake reads TORCH_CUDA_ARCH_LIST for its flags; ours are set here.)

set(HIENET_CUDA "AUTO" CACHE STRING "Build the CUDA kernels: AUTO, ON or OFF")
set_property(CACHE HIENET_CUDA PROPERTY STRINGS AUTO ON OFF)
set(HIENET_CUDA_ARCHS "80-real;90" CACHE STRING "CUDA architectures of the kernels (CMake syntax)")

# ---- the emulated kernels (tests) ----------------------------------------------------------
set(_hienet_cuda_dir "${CMAKE_CURRENT_LIST_DIR}")
add_library(hienet_ops_emulated SHARED "${_hienet_cuda_dir}/convolution_launch.cpp"
            "${_hienet_cuda_dir}/convolution_emulated.cpp")
target_link_libraries(hienet_ops_emulated PRIVATE ${TORCH_LIBRARIES})
target_compile_options(hienet_ops_emulated PRIVATE -Wall -Wextra -Wno-unused-parameter)
# hidden: its copy of the launch code never interposes on the one in libhienet_ops.so
set_target_properties(hienet_ops_emulated PROPERTIES
  OUTPUT_NAME "hienet_ops_emulated"
  CXX_VISIBILITY_PRESET hidden
  LIBRARY_OUTPUT_DIRECTORY "${HIENET_PYMODULE_DIR}")
hienet_set_rpath(hienet_ops_emulated "../torch/lib")

# ---- the CUDA kernels -----------------------------------------------------------------------
if(HIENET_CUDA STREQUAL "OFF")
  message(STATUS "hienet::convolution CUDA kernels: off (HIENET_CUDA=OFF)")
  return()
endif()
if(NOT TARGET c10_cuda)
  if(HIENET_CUDA STREQUAL "ON")
    message(FATAL_ERROR "HIENET_CUDA=ON, but torch ${Torch_VERSION} from ${HIENET_TORCH_PREFIX} "
                        "is a build without CUDA")
  endif()
  message(STATUS "hienet::convolution CUDA kernels: not built (torch ${Torch_VERSION} has no CUDA)")
  return()
endif()
include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  if(HIENET_CUDA STREQUAL "ON")
    message(FATAL_ERROR "HIENET_CUDA=ON, but no CUDA compiler (nvcc) was found: put it on PATH "
                        "or set CMAKE_CUDA_COMPILER")
  endif()
  message(STATUS "hienet::convolution CUDA kernels: not built (torch has CUDA, but nvcc was not found)")
  return()
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)

# torch's CMake adds -gencode flags for TORCH_CUDA_ARCH_LIST (or for the GPU it detects) to
# CMAKE_CUDA_FLAGS: drop them, so that HIENET_CUDA_ARCHS alone decides the kernels' targets
string(REGEX REPLACE "-gencode[ =]+arch=[^ ]+" "" CMAKE_CUDA_FLAGS "${CMAKE_CUDA_FLAGS}")
# the kernels include no torch header: C++17 for every torch
add_library(hienet_ops_cuda_kernels OBJECT "${_hienet_cuda_dir}/convolution_kernels.cu")
set_target_properties(hienet_ops_cuda_kernels PROPERTIES
  CUDA_ARCHITECTURES "${HIENET_CUDA_ARCHS}"
  CUDA_STANDARD 17
  CUDA_STANDARD_REQUIRED ON
  POSITION_INDEPENDENT_CODE ON)
target_compile_options(hienet_ops_cuda_kernels PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-O3 -Xcompiler=-Wall>)
target_sources(hienet_ops PRIVATE
  "${_hienet_cuda_dir}/convolution_launch.cpp"
  "${_hienet_cuda_dir}/convolution_cuda.cpp"
  $<TARGET_OBJECTS:hienet_ops_cuda_kernels>)
# the CUDA runtime torch itself loads (libcudart.so.<major>), not a static second copy
target_link_libraries(hienet_ops PRIVATE CUDA::cudart)
target_compile_definitions(hienet_ops PRIVATE HIENET_OPS_HAVE_CUDA)
message(STATUS "hienet::convolution CUDA kernels: architectures ${HIENET_CUDA_ARCHS} "
               "(nvcc ${CMAKE_CUDA_COMPILER_VERSION})")
