// The per-lane rANS steps of the frame format (docs/format.md, "Lane coding").
//
// 32-bit states in [kRansLow, 2^32), 16-bit renormalisation words, precision
// (scale bits) 1..16, so one coding step moves at most one word. These functions are
// the only arithmetic the coder does; they are __host__ __device__ so the CPU coder
// and the CUDA kernels run exactly the same code.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define TASKCODEC_HD __host__ __device__ __forceinline__
#else
#define TASKCODEC_HD inline
#endif

namespace taskcodec {

inline constexpr uint32_t kRansLow = 1u << 16;  // lower bound of a lane state
inline constexpr uint32_t kMaxPrecision = 16;
inline constexpr uint32_t kEscapeHeaderBits = 7;  // sign (1) + bit length (6)

// High 64 bits of a 64 x 64-bit product.
TASKCODEC_HD uint64_t mulhi64(uint64_t a, uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __umul64hi(a, b);
#elif defined(__SIZEOF_INT128__)
  __extension__ typedef unsigned __int128 u128;  // a GCC/Clang extension, one mul instruction
  return static_cast<uint64_t>((static_cast<u128>(a) * b) >> 64);
#else
  const uint64_t a_lo = a & 0xFFFFFFFFu, a_hi = a >> 32, b_lo = b & 0xFFFFFFFFu, b_hi = b >> 32;
  const uint64_t lo_lo = a_lo * b_lo, hi_lo = a_hi * b_lo, lo_hi = a_lo * b_hi, hi_hi = a_hi * b_hi;
  const uint64_t cross = (lo_lo >> 32) + (hi_lo & 0xFFFFFFFFu) + lo_hi;
  return (hi_lo >> 32) + (cross >> 32) + hi_hi;
#endif
}

// Everything the encoder needs about one symbol of one row, precomputed so that an
// encoding step has no division and no variable shift:
//   q = mulhi64(x, rcp), x' = x + bias + q * cmpl.
// For freq >= 2, rcp = ceil(2^64 / freq), so q = floor(x / freq) exactly for every 32-bit
// x (the rounding error is below 2^-32 < 1 / freq), and bias = start. For freq = 1,
// rcp = 2^64 - 1 gives q = x - 1 and bias = start + 2^precision - 1 compensates.
struct EncSymbol {
  uint64_t rcp;
  uint32_t x_max;  // push a word while x >= x_max (= freq << (32 - precision))
  uint32_t bias;
  uint32_t cmpl;   // 2^precision - freq
  uint32_t freq;
};

TASKCODEC_HD EncSymbol make_enc_symbol(uint32_t start, uint32_t freq, uint32_t precision) {
  EncSymbol e{};
  e.x_max = freq << (32 - precision);  // freq < 2^precision, so this fits
  e.cmpl = (1u << precision) - freq;
  e.freq = freq;
  if (freq < 2) {
    e.rcp = ~0ull;
    e.bias = start + (1u << precision) - 1u;
  } else {
    e.rcp = ~0ull / freq + 1;  // ceil(2^64 / freq), exact when freq is a power of two
    e.bias = start;
  }
  return e;
}

// Granlund-Montgomery magic for 32-bit lanes (the SIMD and GPU coders): with
// t = mulhi32(x, magic), q = (t + ((x - t) >> 1)) >> s1 equals floor(x / freq) for
// freq >= 2, where s1 = ceil(log2(freq)) - 1. For freq = 1 the magic 2^32 - 1 and s1 = 0
// give x - 1, matching the biased form of EncSymbol.
TASKCODEC_HD uint32_t gm_magic(uint32_t freq) {
  if (freq < 2) return 0xFFFFFFFFu;
  uint32_t l = 0;
  while ((1u << l) < freq) ++l;
  return static_cast<uint32_t>(((1ull << 32) * ((1ull << l) - freq)) / freq + 1);
}

// floor(x / freq) for every 32-bit x >= 1 (tests and documentation; the coder uses
// the biased form inside enc_update).
TASKCODEC_HD uint32_t enc_quotient(uint32_t x, const EncSymbol& e) {
  const uint32_t q = static_cast<uint32_t>(mulhi64(x, e.rcp));
  return e.freq == 1 ? q + 1 : q;
}

// Encoder renormalisation: when x >= x_max the low 16 bits of x are pushed (the
// caller stores them) and x is shifted right by 16 before the state update.
TASKCODEC_HD bool enc_must_push(uint32_t x, uint32_t x_max) { return x >= x_max; }
TASKCODEC_HD uint32_t enc_after_push(uint32_t x, bool pushed) { return pushed ? x >> 16 : x; }

// State update after renormalisation: x <- (x div f) << p + (x mod f) + start.
TASKCODEC_HD uint32_t enc_update(uint32_t x, const EncSymbol& e) {
  const uint32_t q = static_cast<uint32_t>(mulhi64(x, e.rcp));
  return x + e.bias + q * e.cmpl;
}

// Uniform coding of `bits` raw bits (1..16): freq 1, start = value, precision = bits.
TASKCODEC_HD uint32_t uniform_x_max(uint32_t bits) { return 1u << (32 - bits); }
TASKCODEC_HD uint32_t enc_uniform_update(uint32_t x, uint32_t value, uint32_t bits) {
  return (x << bits) | value;
}
TASKCODEC_HD uint32_t dec_uniform_value(uint32_t x, uint32_t bits) { return x & ((1u << bits) - 1u); }
TASKCODEC_HD uint32_t dec_uniform_update(uint32_t x, uint32_t bits) { return x >> bits; }

// Escape payload split (docs/format.md, "Escapes"): a distance d of nbits bits (top bit
// implicit) is sent as a low piece of up to 16 bits, then a high piece.
TASKCODEC_HD uint32_t bit_length(uint64_t d) {
  uint32_t n = 0;
  while (d) { ++n; d >>= 1; }
  return n;
}
TASKCODEC_HD uint32_t escape_low_bits(uint32_t nbits) {
  const uint32_t rest = nbits ? nbits - 1 : 0;
  return rest < 16 ? rest : 16;
}
TASKCODEC_HD uint32_t escape_high_bits(uint32_t nbits) {
  const uint32_t rest = nbits ? nbits - 1 : 0;
  return rest - escape_low_bits(nbits);
}

// Decoder step before renormalisation: x <- freq * (x >> p) + slot - start.
TASKCODEC_HD uint32_t dec_update(uint32_t x, uint32_t freq, uint32_t start, uint32_t precision) {
  const uint32_t slot = x & ((1u << precision) - 1u);
  return freq * (x >> precision) + slot - start;
}

// Decoder renormalisation: when x < kRansLow, shift in the next word.
TASKCODEC_HD bool dec_needs_word(uint32_t x) { return x < kRansLow; }
TASKCODEC_HD uint32_t dec_shift_in(uint32_t x, uint16_t word) { return (x << 16) | word; }

}  // namespace taskcodec
