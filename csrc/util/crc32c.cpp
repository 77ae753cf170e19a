// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), with hardware paths chosen at
// run time so that one binary runs on every CPU of its architecture.
#include <array>
#include <cstring>

#include "taskcodec/checksum.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define TASKCODEC_CRC_X86 1
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <arm_acle.h>
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#define TASKCODEC_CRC_ARM 1
#endif

namespace taskcodec {
namespace {

using Tables = std::array<std::array<uint32_t, 256>, 8>;

Tables make_tables() {
  Tables t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    t[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; ++i) {
    for (size_t k = 1; k < 8; ++k) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFF];
  }
  return t;
}

const Tables& tables() {
  static const Tables t = make_tables();
  return t;
}

uint32_t crc_table_raw(const uint8_t* p, size_t n, uint32_t c) {
  const Tables& t = tables();
  while (n >= 8) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= c;
    c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
        t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) c = (c >> 8) ^ t[0][(c ^ *p++) & 0xFF];
  return c;
}

#if TASKCODEC_CRC_X86
__attribute__((target("sse4.2"))) uint32_t crc_hw_raw(const uint8_t* p, size_t n, uint32_t c) {
  uint64_t c64 = c;
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c64 = _mm_crc32_u64(c64, v);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = static_cast<uint32_t>(c64);
  while (n--) c32 = _mm_crc32_u8(c32, *p++);
  return c32;
}
bool have_hw() { return __builtin_cpu_supports("sse4.2"); }
#elif TASKCODEC_CRC_ARM
__attribute__((target("+crc"))) uint32_t crc_hw_raw(const uint8_t* p, size_t n, uint32_t c) {
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = __crc32cd(c, v);
    p += 8;
    n -= 8;
  }
  while (n--) c = __crc32cb(c, *p++);
  return c;
}
bool have_hw() { return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0; }
#endif

}  // namespace

uint32_t crc32c_portable(const uint8_t* data, size_t len, uint32_t crc) noexcept {
  return ~crc_table_raw(data, len, ~crc);
}

uint32_t crc32c(const uint8_t* data, size_t len, uint32_t crc) noexcept {
#if TASKCODEC_CRC_X86 || TASKCODEC_CRC_ARM
  static const bool hw = have_hw();
  if (hw) return ~crc_hw_raw(data, len, ~crc);
#endif
  return crc32c_portable(data, len, crc);
}

}  // namespace taskcodec
