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

#if TASKCODEC_CRC_X86 || TASKCODEC_CRC_ARM
// ---- GF(2) arithmetic modulo the CRC polynomial, bit-reflected (bit 31 is x^0) ----------
constexpr uint32_t kPolyReflected = 0x82F63B78u;

// a * b mod P.
uint32_t gf2_mul(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (uint32_t bit = 1u << 31; bit != 0; bit >>= 1) {
    if (a & bit) product ^= b;
    b = (b & 1u) ? (b >> 1) ^ kPolyReflected : b >> 1;  // b *= x
  }
  return product;
}

// x^(8 * 2^k) mod P for k = 0..63: shifting a CRC register over 2^k zero bytes.
struct ByteShiftPowers {
  uint32_t pow[64];
  ByteShiftPowers() {
    uint32_t p = 1u << 23;  // x^8
    for (int k = 0; k < 64; ++k) {
      pow[k] = p;
      p = gf2_mul(p, p);
    }
  }
};

// The CRC register after feeding `bytes` zero bytes to a register holding `reg`.
uint32_t shift_register(uint32_t reg, uint64_t bytes) {
  static const ByteShiftPowers powers;
  for (int k = 0; bytes != 0; ++k, bytes >>= 1) {
    if (bytes & 1u) reg = gf2_mul(powers.pow[k], reg);
  }
  return reg;
}

// Buffers at least this long are split into three streams whose CRC instructions overlap
// (the instruction has a latency of about three cycles and a throughput of one), and the
// three registers are joined with shift_register: reg(A B) = shift(reg(A), |B|) ^ reg0(B).
constexpr size_t kThreeWayMin = 1u << 15;
#endif

// The CPU's CRC32C instructions: 8 bytes and 1 byte at a time, on a 32-bit register.
#if TASKCODEC_CRC_X86
#define TASKCODEC_CRC_TARGET __attribute__((target("sse4.2")))
TASKCODEC_CRC_TARGET inline uint32_t hw_crc8(uint32_t c, uint64_t v) {
  return static_cast<uint32_t>(_mm_crc32_u64(c, v));
}
TASKCODEC_CRC_TARGET inline uint32_t hw_crc1(uint32_t c, uint8_t v) { return _mm_crc32_u8(c, v); }
bool have_hw() { return __builtin_cpu_supports("sse4.2"); }
#elif TASKCODEC_CRC_ARM
#define TASKCODEC_CRC_TARGET __attribute__((target("+crc")))
TASKCODEC_CRC_TARGET inline uint32_t hw_crc8(uint32_t c, uint64_t v) { return __crc32cd(c, v); }
TASKCODEC_CRC_TARGET inline uint32_t hw_crc1(uint32_t c, uint8_t v) { return __crc32cb(c, v); }
bool have_hw() { return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0; }
#endif

#ifdef TASKCODEC_CRC_TARGET
TASKCODEC_CRC_TARGET uint32_t crc_hw_raw(const uint8_t* p, size_t n, uint32_t c) {
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = hw_crc8(c, v);
  }
  while (n--) c = hw_crc1(c, *p++);
  return c;
}

TASKCODEC_CRC_TARGET uint32_t crc_hw_raw3(const uint8_t* p, size_t n, uint32_t c) {
  const size_t part = (n / 3) & ~size_t{7};
  const uint8_t* q = p + part;
  const uint8_t* r = p + 2 * part;
  uint32_t a = c, b = 0, d = 0;
  for (size_t i = 0; i < part; i += 8) {
    uint64_t va, vb, vd;
    std::memcpy(&va, p + i, 8);
    std::memcpy(&vb, q + i, 8);
    std::memcpy(&vd, r + i, 8);
    a = hw_crc8(a, va);
    b = hw_crc8(b, vb);
    d = hw_crc8(d, vd);
  }
  const size_t rest = n - 3 * part;
  const uint32_t tail = crc_hw_raw(r + part, rest, d);
  return shift_register(shift_register(a, part) ^ b, part + rest) ^ tail;
}
#endif

}  // namespace

uint32_t crc32c_portable(const uint8_t* data, size_t len, uint32_t crc) noexcept {
  return ~crc_table_raw(data, len, ~crc);
}

uint32_t crc32c(const uint8_t* data, size_t len, uint32_t crc) noexcept {
#if TASKCODEC_CRC_X86 || TASKCODEC_CRC_ARM
  static const bool hw = have_hw();
  if (hw) return ~(len >= kThreeWayMin ? crc_hw_raw3(data, len, ~crc) : crc_hw_raw(data, len, ~crc));
#endif
  return crc32c_portable(data, len, crc);
}

}  // namespace taskcodec
