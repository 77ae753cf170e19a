# CUDA detection for TASKCODEC_CUDA = AUTO / ON / OFF.
# Sets TASKCODEC_HAVE_CUDA and, when on, builds the taskcodec_cuda library from csrc/cuda.
set(TASKCODEC_HAVE_CUDA OFF)
string(TOUPPER "${TASKCODEC_CUDA}" _tc_cuda)
if(NOT _tc_cuda MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "TASKCODEC_CUDA must be AUTO, ON or OFF (got '${TASKCODEC_CUDA}')")
endif()

if(NOT _tc_cuda STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
      # Explicit list, never the build machine's GPU: Turing, Ampere, GA10x, Orin, Hopper.
      set(CMAKE_CUDA_ARCHITECTURES 75 80 86 87 90)
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(TASKCODEC_HAVE_CUDA ON)
  elseif(_tc_cuda STREQUAL "ON")
    message(FATAL_ERROR "TASKCODEC_CUDA=ON but no CUDA compiler was found (set CUDACXX or PATH)")
  else()
    message(STATUS "taskcodec: no CUDA compiler found; building the CPU core only")
  endif()
endif()

if(TASKCODEC_HAVE_CUDA)
  file(GLOB _tc_cuda_sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/csrc/cuda/*.cu)
  if(_tc_cuda_sources)
    add_library(taskcodec_cuda STATIC ${_tc_cuda_sources})
    target_include_directories(taskcodec_cuda PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/csrc/include)
    # The CUDA runtime is linked statically: the module needs no libcudart at run time and
    # loads the driver (libcuda) only when a CUDA function is first called.
    set_target_properties(taskcodec_cuda PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON
                          CUDA_RUNTIME_LIBRARY Static POSITION_INDEPENDENT_CODE ON)
    target_compile_options(taskcodec_cuda PRIVATE
      $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra --Werror=all-warnings>
      $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo>)
    target_link_libraries(taskcodec_cuda PUBLIC taskcodec_core CUDA::cudart_static)
  else()
    # The kernels come with the CUDA issue; until then CUDA builds carry no device code.
    set(TASKCODEC_HAVE_CUDA OFF)
    message(STATUS "taskcodec: CUDA compiler found but csrc/cuda has no kernels yet")
  endif()
endif()
message(STATUS "taskcodec: CUDA ${TASKCODEC_HAVE_CUDA}")
