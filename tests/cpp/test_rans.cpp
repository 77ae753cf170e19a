// The per-lane rANS arithmetic of rans.hpp: the division-free quotient, and the
// encoder / decoder steps being exact inverses.
#include <random>
#include <vector>

#include "support.hpp"

namespace tctest {
namespace {

// Edge values of x for one frequency: 0, 1, around every power of two the magic
// multiply could trip on, around multiples of freq, and the top of the 32-bit range.
std::vector<uint32_t> edge_values(uint32_t freq, Rng& rng) {
  std::vector<uint64_t> v = {0, 1, 2, freq - 1ull, freq, freq + 1ull, 2ull * freq - 1, 2ull * freq,
                             0xFFFFFFFFull, 0xFFFFFFFEull, 0x80000000ull, 0x7FFFFFFFull};
  for (uint32_t p = 1; p <= 16; ++p) v.push_back((static_cast<uint64_t>(freq) << (32 - p)) - 1);  // x_max - 1
  const uint64_t top = 0xFFFFFFFFull / freq;  // largest multiple below 2^32
  for (uint64_t k : {top, top - 1, top / 2, top / 3 + 1, uint64_t{1} << 16}) {
    if (k == 0) continue;
    const uint64_t m = k * freq;
    v.push_back(m - 1);
    v.push_back(m);
    v.push_back(m + 1);
  }
  for (int i = 0; i < 8; ++i) {
    const uint64_t k = 1 + rng.below(top);
    v.push_back(k * freq - 1);
    v.push_back(k * freq);
  }
  std::vector<uint32_t> out;
  for (uint64_t x : v) {
    if (x <= 0xFFFFFFFFull) out.push_back(static_cast<uint32_t>(x));
  }
  return out;
}

TEST(Rans, QuotientExactForEveryFrequency) {
  Rng rng(1);
  uint64_t checked = 0;
  uint64_t failures = 0;
  std::string first;
  for (uint32_t freq = 1; freq <= 65535; ++freq) {
    const EncSymbol e = make_enc_symbol(0, freq, 16);
    std::vector<uint32_t> xs = edge_values(freq, rng);
    for (int i = 0; i < 16; ++i) xs.push_back(rng.u32());
    for (uint32_t x : xs) {
      // rans.hpp documents enc_quotient for x >= 1 (a coder state after renormalisation is
      // never 0); x = 0 is checked for every frequency but 1.
      if (x == 0 && freq == 1) continue;
      const uint32_t want = x / freq;
      const uint32_t got = enc_quotient(x, e);
      ++checked;
      if (got != want) {
        if (failures++ == 0) {
          first = "freq " + std::to_string(freq) + ", x " + std::to_string(x) + ": got " +
                  std::to_string(got) + ", want " + std::to_string(want);
        }
      }
    }
  }
  EXPECT_EQ(failures, 0u) << "first: " << first;
  EXPECT_GT(checked, 65535u * 50);
}

// The 32-bit form used by the SIMD and GPU coders (rans.hpp, gm_magic):
// t = mulhi32(x, magic), q = (t + ((x - t) >> 1)) >> (ceil(log2 freq) - 1).
uint32_t gm_quotient(uint32_t x, uint32_t freq) {
  const uint32_t magic = gm_magic(freq);
  const uint32_t t = static_cast<uint32_t>((static_cast<uint64_t>(x) * magic) >> 32);
  uint32_t l = 0;
  while ((1u << l) < freq) ++l;
  const uint32_t s1 = l ? l - 1 : 0;
  return (t + ((x - t) >> 1)) >> s1;
}

TEST(Rans, GranlundMontgomeryMagicExact) {
  Rng rng(4);
  uint64_t failures = 0;
  std::string first;
  for (uint32_t freq = 1; freq <= 65535; ++freq) {
    std::vector<uint32_t> xs = edge_values(freq, rng);
    for (int i = 0; i < 8; ++i) xs.push_back(rng.u32());
    for (uint32_t x : xs) {
      if (x == 0) continue;  // coder states are never 0
      // freq 1 gives x - 1, which the biased update compensates (see EncSymbol).
      const uint32_t want = freq == 1 ? x - 1 : x / freq;
      const uint32_t got = gm_quotient(x, freq);
      if (got != want && failures++ == 0) {
        first = "freq " + std::to_string(freq) + ", x " + std::to_string(x) + ": got " +
                std::to_string(got) + ", want " + std::to_string(want);
      }
    }
  }
  EXPECT_EQ(failures, 0u) << "first: " << first;
}

TEST(Rans, QuotientExactForEveryStateOfSmallFrequencies) {
  // Exhaustive in x is too slow for all frequencies; for a few awkward ones (odd, just
  // above and below powers of two) sweep x with a large odd stride through 2^32.
  for (uint32_t freq : {3u, 7u, 641u, 6700u, 32767u, 32769u, 65521u, 65535u}) {
    const EncSymbol e = make_enc_symbol(0, freq, 16);
    uint32_t x = 0;
    for (uint32_t i = 0; i < (1u << 20); ++i, x += 4093u * 1021u) {
      ASSERT_EQ(enc_quotient(x, e), x / freq) << "freq " << freq << " x " << x;
    }
  }
}

TEST(Rans, RenormalisationThreshold) {
  // x_max = freq * 2^(32 - precision): the encoder pushes a word exactly when x >= x_max.
  for (uint32_t p = 1; p <= kMaxPrecision; ++p) {
    const uint32_t m = 1u << p;
    for (uint32_t freq : {1u, 2u, 3u, m / 2, m - 1}) {
      if (freq < 1 || freq >= m) continue;
      const EncSymbol e = make_enc_symbol(0, freq, p);
      const uint32_t want = static_cast<uint32_t>(static_cast<uint64_t>(freq) << (32 - p));
      EXPECT_EQ(e.x_max, want) << "precision " << p << " freq " << freq;
      EXPECT_TRUE(enc_must_push(want, e.x_max));
      EXPECT_FALSE(enc_must_push(want - 1, e.x_max));
    }
  }
}

// One full coding step with renormalisation, encoder then decoder.
struct StepResult {
  bool ok;
  std::string why;
};

StepResult check_step(uint32_t x, uint32_t freq, uint32_t start, uint32_t p) {
  const EncSymbol e = make_enc_symbol(start, freq, p);
  const bool push = enc_must_push(x, e.x_max);
  const uint16_t word = static_cast<uint16_t>(x);
  const uint32_t y = enc_update(enc_after_push(x, push), e);
  if (y < kRansLow) return {false, "encoded state below kRansLow"};
  const uint32_t slot = y & ((1u << p) - 1u);
  if (slot < start || slot >= start + freq) return {false, "slot outside the symbol's range"};
  uint32_t z = dec_update(y, freq, start, p);
  if (dec_needs_word(z) != push) return {false, "decoder renormalisation disagrees"};
  if (push) z = dec_shift_in(z, word);
  if (z != x) return {false, "decoded state differs"};
  return {true, ""};
}

TEST(Rans, EncodeDecodeStepsAreInverse) {
  Rng rng(2);
  for (uint32_t p = 1; p <= kMaxPrecision; ++p) {
    const uint32_t m = 1u << p;
    for (int trial = 0; trial < 20000; ++trial) {
      // Frequencies 1 .. m-1 (an escape always shares the row), start so that it fits.
      uint32_t freq;
      switch (rng.below(4)) {
        case 0: freq = 1; break;
        case 1: freq = m - 1 > 0 ? m - 1 : 1; break;
        default: freq = static_cast<uint32_t>(1 + rng.below(std::max<uint32_t>(1, m - 1))); break;
      }
      if (freq >= m) freq = 1;
      const uint32_t start = static_cast<uint32_t>(rng.below(m - freq + 1));
      uint32_t x;
      switch (rng.below(5)) {
        case 0: x = kRansLow; break;
        case 1: x = 0xFFFFFFFFu; break;
        case 2: {
          const uint32_t xm = freq << (32 - p);
          x = rng.chance(0.5) ? xm : std::max(kRansLow, xm - 1);
          break;
        }
        default: x = static_cast<uint32_t>(kRansLow + rng.below(0xFFFFFFFFull - kRansLow + 1)); break;
      }
      const StepResult r = check_step(x, freq, start, p);
      ASSERT_TRUE(r.ok) << r.why << " (precision " << p << ", freq " << freq << ", start " << start
                        << ", x " << x << ")";
    }
  }
}

TEST(Rans, UniformStepsAreInverse) {
  Rng rng(3);
  for (uint32_t bits = 1; bits <= 16; ++bits) {
    for (int trial = 0; trial < 5000; ++trial) {
      const uint32_t x = static_cast<uint32_t>(kRansLow + rng.below(0xFFFFFFFFull - kRansLow + 1));
      const uint32_t value = static_cast<uint32_t>(rng.below(1ull << bits));
      const bool push = enc_must_push(x, uniform_x_max(bits));
      const uint32_t y = enc_uniform_update(enc_after_push(x, push), value, bits);
      ASSERT_GE(y, kRansLow);
      ASSERT_EQ(dec_uniform_value(y, bits), value);
      uint32_t z = dec_uniform_update(y, bits);
      ASSERT_EQ(dec_needs_word(z), push);
      if (push) z = dec_shift_in(z, static_cast<uint16_t>(x));
      ASSERT_EQ(z, x);
    }
  }
}

TEST(Rans, EscapeSplit) {
  EXPECT_EQ(bit_length(0), 0u);
  EXPECT_EQ(bit_length(1), 1u);
  EXPECT_EQ(bit_length(0xFFFFFFFFull), 32u);
  EXPECT_EQ(bit_length(1ull << 40), 41u);
  for (uint32_t n = 0; n <= 33; ++n) {
    const uint32_t lo = escape_low_bits(n);
    const uint32_t hi = escape_high_bits(n);
    EXPECT_EQ(lo + hi, n ? n - 1 : 0) << n;  // the top bit is implicit
    EXPECT_LE(lo, 16u);
    EXPECT_LE(hi, 16u);
    if (hi) {
      EXPECT_EQ(lo, 16u);
    }
  }
}


// The host/device escape helpers: every int32 value outside a row survives split + join.
TEST(Rans, EscapeSplitJoinRoundTrip) {
  std::mt19937_64 rng(11);
  const int32_t offsets[] = {INT32_MIN, -70000, -3, 0, 5, 1 << 20, INT32_MAX - 10};
  for (int32_t offset : offsets) {
    for (uint32_t count : {1u, 2u, 64u, 4096u}) {
      const int64_t lo_edge = offset, hi_edge = static_cast<int64_t>(offset) + count;
      for (int k = 0; k < 400; ++k) {
        int64_t v = static_cast<int32_t>(rng());
        if (k % 4 == 0) v = lo_edge - 1 - static_cast<int64_t>(rng() % 5);
        if (k % 4 == 1) v = hi_edge + static_cast<int64_t>(rng() % 5);
        if (v < INT32_MIN || v > INT32_MAX) continue;
        if (v >= lo_edge && v < hi_edge) continue;  // in range: not an escape
        uint32_t sign = 9;
        uint64_t d = 0;
        escape_split(v, offset, count, &sign, &d);
        const uint32_t nbits = bit_length(d);
        ASSERT_LE(nbits, kMaxEscapeBits);
        const uint32_t header = escape_header(sign, nbits);
        ASSERT_LT(header, 1u << kEscapeHeaderBits);
        const uint32_t lo = static_cast<uint32_t>(d) & ((1u << escape_low_bits(nbits)) - 1u);
        const uint32_t hi = escape_high_bits(nbits)
                                ? static_cast<uint32_t>(d >> 16) & ((1u << escape_high_bits(nbits)) - 1u)
                                : 0u;
        int32_t back = 0;
        ASSERT_TRUE(escape_join(escape_header_sign(header), escape_header_nbits(header), lo, hi, offset,
                                count, &back));
        ASSERT_EQ(back, v) << "offset " << offset << " count " << count;
      }
    }
  }
  int32_t out = 0;  // 32 bits above the top of the int32 range do not fit
  EXPECT_FALSE(escape_join(1, 32, 0xFFFF, 0x7FFF, INT32_MAX - 1, 1, &out));
}

// FastDiv (the GPU coder's row mapping) equals the hardware division for every divisor
// class: small, powers of two and their neighbours, large, and the extremes of n.
TEST(Rans, FastDivisionExact) {
  std::mt19937 rng(5);
  std::vector<uint32_t> divisors = {1, 2, 3, 5, 7, 10, 64, 100, 641, 65535, 65536, 65537,
                                    1000003, 0x7FFFFFFFu, 0x80000000u, 0x80000001u, 0xFFFFFFFEu,
                                    0xFFFFFFFFu};
  for (int i = 0; i < 32; ++i) {
    divisors.push_back(1u << i);
    divisors.push_back((1u << i) + 1u);
    if (i > 1) divisors.push_back((1u << i) - 1u);
  }
  for (int i = 0; i < 200; ++i) divisors.push_back(static_cast<uint32_t>(rng()) | 1u);
  for (uint32_t d : divisors) {
    if (d == 0) continue;
    const FastDiv f = make_fast_div(d);
    const uint32_t edge[] = {0u, 1u, d - 1u, d, d + 1u, 2u * d, 0xFFFFFFFFu, 0xFFFFFFFEu, 0x80000000u};
    for (uint32_t n : edge) ASSERT_EQ(fast_div(n, f), n / d) << n << " / " << d;
    for (int k = 0; k < 2000; ++k) {
      const uint32_t n = static_cast<uint32_t>(rng());
      ASSERT_EQ(fast_div(n, f), n / d) << n << " / " << d;
    }
  }
}

}  // namespace
}  // namespace tctest
