// Status codes of the C++ core. The numbers are part of the ABI: never renumber.
#pragma once

#include <string>
#include <utility>

namespace taskcodec {

enum class Status : int {
  kOk = 0,
  kInvalidArgument = 1,     // a caller-side argument is wrong (not a stream problem)
  kCorruptStream = 2,       // the bytes are not a valid frame
  kChecksumMismatch = 3,    // the CRC32C trailer does not match
  kTableMismatch = 4,       // the frame was coded with other tables
  kUnsupportedVersion = 5,  // a frame format version this build cannot read
  kLimitExceeded = 6,       // the frame is valid but larger than a caller limit
  kBufferTooSmall = 7,      // the caller's output capacity is too small
  kOutOfMemory = 8,
  kInternal = 9,
};

// Stable, human-readable name of a status ("corrupt_stream", ...).
const char* status_name(Status s) noexcept;

// A status with a message saying what was expected and what was found.
struct Error {
  Status status = Status::kOk;
  std::string message;

  Error() = default;
  Error(Status s, std::string msg) : status(s), message(std::move(msg)) {}
  bool ok() const noexcept { return status == Status::kOk; }
  explicit operator bool() const noexcept { return !ok(); }  // true when it is an error
};

}  // namespace taskcodec
