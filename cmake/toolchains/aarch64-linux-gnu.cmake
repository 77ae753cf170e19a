# Cross-compiling for 64-bit ARM Linux (Jetson, Raspberry Pi 4/5, Graviton) with Debian's
# g++-aarch64-linux-gnu. TASKCODEC_AARCH64_SYSROOT may point at an arm64 root file system
# (for the target's Python headers); programs are found on the build machine.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
if(DEFINED ENV{TASKCODEC_AARCH64_SYSROOT})
  set(CMAKE_FIND_ROOT_PATH "$ENV{TASKCODEC_AARCH64_SYSROOT}")
endif()
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
