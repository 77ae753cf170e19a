// The per-lane rANS arithmetic of rans.hpp: the division-free quotient, and the
// encoder / decoder steps being exact inverses.
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

}  // namespace
}  // namespace tctest
