#include "taskcodec/status.hpp"

#include "taskcodec/frame.hpp"
#include "taskcodec/version.hpp"

namespace taskcodec {

const char* status_name(Status s) noexcept {
  switch (s) {
    case Status::kOk: return "ok";
    case Status::kInvalidArgument: return "invalid_argument";
    case Status::kCorruptStream: return "corrupt_stream";
    case Status::kChecksumMismatch: return "checksum_mismatch";
    case Status::kTableMismatch: return "table_mismatch";
    case Status::kUnsupportedVersion: return "unsupported_version";
    case Status::kLimitExceeded: return "limit_exceeded";
    case Status::kBufferTooSmall: return "buffer_too_small";
    case Status::kOutOfMemory: return "out_of_memory";
    case Status::kInternal: return "internal";
  }
  return "unknown_status";
}

const char* dtype_name(DType d) noexcept {
  switch (d) {
    case DType::kInt8: return "int8";
    case DType::kUInt8: return "uint8";
    case DType::kInt16: return "int16";
    case DType::kUInt16: return "uint16";
    case DType::kInt32: return "int32";
    case DType::kUInt32: return "uint32";
    case DType::kInt64: return "int64";
    case DType::kUInt64: return "uint64";
  }
  return "unknown";
}

bool dtype_valid(uint8_t code) noexcept { return code >= 1 && code <= 8; }

#define TASKCODEC_STR2(x) #x
#define TASKCODEC_STR(x) TASKCODEC_STR2(x)

const char* version_string() noexcept {
  return TASKCODEC_STR(TASKCODEC_VERSION_MAJOR) "." TASKCODEC_STR(
      TASKCODEC_VERSION_MINOR) "." TASKCODEC_STR(TASKCODEC_VERSION_PATCH);
}

unsigned version_number() noexcept { return TASKCODEC_VERSION_NUMBER; }

}  // namespace taskcodec
