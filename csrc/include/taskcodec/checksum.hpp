// CRC32C (Castagnoli) and FNV-1a 64 hashing.
#pragma once

#include <cstddef>
#include <cstdint>

namespace taskcodec {

// CRC32C of data, continuing from crc (pass 0 to start). Uses SSE4.2 / ARMv8 CRC
// instructions when the CPU has them, a table otherwise; both give the same value.
uint32_t crc32c(const uint8_t* data, size_t len, uint32_t crc = 0) noexcept;
uint32_t crc32c_portable(const uint8_t* data, size_t len, uint32_t crc = 0) noexcept;

inline constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
inline constexpr uint64_t kFnvPrime = 0x100000001b3ULL;

inline uint64_t fnv1a64(const uint8_t* data, size_t len, uint64_t h = kFnvOffset) noexcept {
  for (size_t i = 0; i < len; ++i) {
    h ^= data[i];
    h *= kFnvPrime;
  }
  return h;
}

}  // namespace taskcodec
