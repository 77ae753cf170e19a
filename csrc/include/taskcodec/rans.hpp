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

// Everything the encoder needs about one symbol of one row, precomputed so that an
// encoding step has no division: q = floor(x / freq) = ((x * rcp >> 32) + x) >> shift.
struct EncSymbol {
  uint32_t x_max;  // renormalise while x >= x_max (= freq << (32 - precision))
  uint32_t rcp;    // low 32 bits of ceil(2^(32 + shift) / freq)
  uint32_t start;  // cumulative frequency of the symbol
  uint16_t cmpl;   // 2^precision - freq
  uint16_t shift;  // ceil(log2(freq))
};

TASKCODEC_HD EncSymbol make_enc_symbol(uint32_t start, uint32_t freq, uint32_t precision) {
  EncSymbol e{};
  e.x_max = freq << (32 - precision);  // freq < 2^precision, so this fits
  e.start = start;
  e.cmpl = static_cast<uint16_t>((1u << precision) - freq);
  uint32_t shift = 0;
  while ((1u << shift) < freq) ++shift;
  e.shift = static_cast<uint16_t>(shift);
  // m = ceil(2^(32+shift) / freq) lies in (2^32, 2^33]; keep m - 2^32.
  const uint64_t num = 1ull << (32 + shift);
  const uint64_t m = (num + freq - 1) / freq;
  e.rcp = static_cast<uint32_t>(m - (1ull << 32));
  return e;
}

// floor(x / freq), exact for every 32-bit x (Granlund-Montgomery with a 33-bit magic).
TASKCODEC_HD uint32_t enc_quotient(uint32_t x, const EncSymbol& e) {
  const uint64_t t = ((static_cast<uint64_t>(x) * e.rcp) >> 32) + x;
  return static_cast<uint32_t>(t >> e.shift);
}

// Encoder renormalisation: when x >= x_max the low 16 bits of x are pushed (the
// caller stores them) and x is shifted right by 16 before the state update.
TASKCODEC_HD bool enc_must_push(uint32_t x, uint32_t x_max) { return x >= x_max; }
TASKCODEC_HD uint32_t enc_after_push(uint32_t x, bool pushed) { return pushed ? x >> 16 : x; }

// State update after renormalisation: x <- (x div f) << p + (x mod f) + start.
TASKCODEC_HD uint32_t enc_update(uint32_t x, const EncSymbol& e) {
  const uint32_t q = enc_quotient(x, e);
  return x + e.start + q * e.cmpl;
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
