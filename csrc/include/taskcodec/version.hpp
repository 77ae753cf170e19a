// Library and stream-format versions.
#pragma once

#define TASKCODEC_VERSION_MAJOR 0
#define TASKCODEC_VERSION_MINOR 1
#define TASKCODEC_VERSION_PATCH 0
#define TASKCODEC_VERSION_NUMBER \
  (TASKCODEC_VERSION_MAJOR * 10000 + TASKCODEC_VERSION_MINOR * 100 + TASKCODEC_VERSION_PATCH)

namespace taskcodec {

// Version of the frame format written by this build (docs/format.md).
inline constexpr unsigned kFormatVersion = 1;

// Runtime version, "MAJOR.MINOR.PATCH".
const char* version_string() noexcept;
unsigned version_number() noexcept;

}  // namespace taskcodec
