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

// What the decoder needs for one row: O(1) slot -> symbol through a bucket table.
// The 2^precision slots are cut into 2^bucket_bits buckets of W = 2^shift slots. A bucket
// entry is sym0 | bound << 16: sym0 owns the bucket's first slot, and the slots from
// offset `bound` on belong to sym0 + 1 (bound = W when the bucket holds one boundary or
// none). Buckets that hold two or more boundaries (only rare symbols, freq < W, do
// that) have bound = kFineBucket and sym0 = the index of a W-entry direct table in
// `fine`. The tables stay small (a few KB a row) so rows that change often stay cached.
inline constexpr uint32_t kFineBucket = 0xFFFF;

struct RowDecoder {
  const uint32_t* buckets;  // 2^bucket_bits entries
  const uint16_t* fine;     // W entries per fine bucket
  const uint32_t* info;     // K + 1 entries: freq | start << 16
  int32_t offset;
  uint32_t count;  // K (= the escape symbol's index)
};

// Slot -> symbol with the bucket table of a row.
TASKCODEC_HD uint32_t lookup_symbol(const RowDecoder& rd, uint32_t slot, uint32_t shift) {
  const uint32_t e = rd.buckets[slot >> shift];
  const uint32_t bound = e >> 16;
  const uint32_t in_bucket = slot & ((1u << shift) - 1u);
  if (bound == kFineBucket) return rd.fine[((e & 0xFFFFu) << shift) + in_bucket];
  return (e & 0xFFFFu) + (in_bucket >= bound);
}

// Escapes (docs/format.md, "Escapes"). A value v outside a row [offset, offset + count)
// is sent as sign (1: above the row), the bit length of the distance d and d's bits below
// its implicit top bit. escape_split gives (sign, d) for a value known to be outside the row.
TASKCODEC_HD void escape_split(int64_t v, int32_t offset, uint32_t count, uint32_t* sign,
                               uint64_t* d) {
  const int64_t o = offset;
  if (v < o) {
    *sign = 0;
    *d = static_cast<uint64_t>(o - 1 - v);
  } else {
    *sign = 1;
    *d = static_cast<uint64_t>(v - (o + static_cast<int64_t>(count)));
  }
}

// The escape header: sign in bit 6, bit length (0..32) in bits 0..5.
TASKCODEC_HD uint32_t escape_header(uint32_t sign, uint32_t nbits) { return (sign << 6) | nbits; }
TASKCODEC_HD uint32_t escape_header_sign(uint32_t header) { return header >> 6; }
TASKCODEC_HD uint32_t escape_header_nbits(uint32_t header) { return header & 63u; }
inline constexpr uint32_t kMaxEscapeBits = 32;

// Rebuilds an escaped value from its pieces; false when it is outside int32 (a corrupt
// stream: the encoder only escapes int32 values).
TASKCODEC_HD bool escape_join(uint32_t sign, uint32_t nbits, uint32_t lo, uint32_t hi, int32_t offset,
                              uint32_t count, int32_t* value) {
  const uint64_t d = nbits ? ((1ull << (nbits - 1)) | (static_cast<uint64_t>(hi) << 16) | lo) : 0;
  const int64_t o = offset;
  const int64_t v = sign ? o + static_cast<int64_t>(count) + static_cast<int64_t>(d)
                         : o - 1 - static_cast<int64_t>(d);
  if (v < INT32_MIN || v > INT32_MAX) return false;
  *value = static_cast<int32_t>(v);
  return true;
}

// Division by a run-time constant d >= 1 for 32-bit n (Granlund-Montgomery with the
// add-back step, as gm_magic): the GPU coder maps a symbol's position to its table row
// with it instead of a 64-bit division per symbol.
struct FastDiv {
  uint32_t magic = 0;
  uint32_t shift = 0;
  uint32_t d = 1;
};
TASKCODEC_HD FastDiv make_fast_div(uint32_t d) {
  FastDiv f;
  f.d = d;
  if (d >= 2) {
    uint32_t l = 0;
    while ((1ull << l) < d) ++l;
    f.magic = static_cast<uint32_t>(((1ull << 32) * ((1ull << l) - d)) / d + 1);
    f.shift = l - 1;
  }
  return f;
}
TASKCODEC_HD uint32_t fast_div(uint32_t n, const FastDiv& f) {
  if (f.d < 2) return n;
#if defined(__CUDA_ARCH__)
  const uint32_t t = __umulhi(n, f.magic);
#else
  const uint32_t t = static_cast<uint32_t>((static_cast<uint64_t>(n) * f.magic) >> 32);
#endif
  return (t + ((n - t) >> 1)) >> f.shift;
}

}  // namespace taskcodec
