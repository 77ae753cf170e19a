// CRC32C: published check values, hardware path == table path, incremental use; FNV-1a.
#include "support.hpp"

namespace tctest {
namespace {

uint32_t crc_str(const std::string& s, bool portable) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  return portable ? crc32c_portable(p, s.size()) : crc32c(p, s.size());
}

TEST(Crc32c, KnownVectors) {
  for (bool portable : {true, false}) {
    SCOPED_TRACE(portable ? "portable" : "dispatched");
    EXPECT_EQ(crc_str("", portable), 0u);
    EXPECT_EQ(crc_str("a", portable), 0xC1D04330u);
    EXPECT_EQ(crc_str("123456789", portable), 0xE3069283u);
    EXPECT_EQ(crc_str("The quick brown fox jumps over the lazy dog", portable), 0x22620404u);
    // RFC 3720 (iSCSI) appendix B.4 test patterns.
    std::vector<uint8_t> buf(32, 0x00);
    auto crc = [&] { return portable ? crc32c_portable(buf.data(), buf.size()) : crc32c(buf.data(), buf.size()); };
    EXPECT_EQ(crc(), 0x8A9136AAu);
    std::fill(buf.begin(), buf.end(), 0xFF);
    EXPECT_EQ(crc(), 0x62A8AB43u);
    for (size_t i = 0; i < 32; ++i) buf[i] = static_cast<uint8_t>(i);
    EXPECT_EQ(crc(), 0x46DD794Eu);
    for (size_t i = 0; i < 32; ++i) buf[i] = static_cast<uint8_t>(31 - i);
    EXPECT_EQ(crc(), 0x113FDB5Cu);
  }
}

TEST(Crc32c, NullWithZeroLength) {
  EXPECT_EQ(crc32c(nullptr, 0), 0u);
  EXPECT_EQ(crc32c_portable(nullptr, 0), 0u);
  EXPECT_EQ(crc32c(nullptr, 0, 0x12345678u), 0x12345678u);
  EXPECT_EQ(crc32c_portable(nullptr, 0, 0x12345678u), 0x12345678u);
}

TEST(Crc32c, HardwareEqualsPortableAllLengthsAndAlignments) {
  Rng rng(10);
  std::vector<uint8_t> buf(300 + 16);
  for (auto& b : buf) b = static_cast<uint8_t>(rng.u32());
  for (size_t start = 0; start < 16; ++start) {
    for (size_t len = 0; len + start <= buf.size() && len <= 300; ++len) {
      const uint8_t* p = buf.data() + start;
      const uint32_t seed = (len & 1) ? rng.u32() : 0u;
      ASSERT_EQ(crc32c(p, len, seed), crc32c_portable(p, len, seed))
          << "start " << start << " len " << len;
    }
  }
}

TEST(Crc32c, LongBuffersThreeStreamPathEqualsPortable) {
  // From 32 KiB on, the hardware path splits the buffer into three interleaved streams
  // and joins them with GF(2) shifts: every split remainder and alignment must agree.
  Rng rng(12);
  std::vector<uint8_t> buf((1u << 20) + 64);
  for (auto& b : buf) b = static_cast<uint8_t>(rng.u32());
  const size_t lens[] = {(1u << 15) - 1, 1u << 15, (1u << 15) + 1, (1u << 15) + 7, 98304 + 5,
                         500000, 1u << 20};
  for (size_t len : lens) {
    for (size_t start : {0u, 1u, 5u, 8u}) {
      const uint8_t* p = buf.data() + start;
      const uint32_t seed = rng.u32();
      ASSERT_EQ(crc32c(p, len, seed), crc32c_portable(p, len, seed))
          << "start " << start << " len " << len;
    }
  }
}

TEST(Crc32c, IncrementalEqualsWhole) {
  Rng rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    const size_t n = static_cast<size_t>(rng.below(600));
    std::vector<uint8_t> buf(n);
    for (auto& b : buf) b = static_cast<uint8_t>(rng.u32());
    const uint32_t whole = crc32c(buf.data(), n);
    ASSERT_EQ(whole, crc32c_portable(buf.data(), n));
    // Two and three pieces, both implementations, chained through the crc argument.
    const size_t a = n ? static_cast<size_t>(rng.below(n + 1)) : 0;
    const size_t b = a + static_cast<size_t>(rng.below(n - a + 1));
    ASSERT_EQ(crc32c(buf.data() + a, n - a, crc32c(buf.data(), a)), whole);
    ASSERT_EQ(crc32c_portable(buf.data() + a, n - a, crc32c_portable(buf.data(), a)), whole);
    uint32_t c = crc32c(buf.data(), a);
    c = crc32c_portable(buf.data() + a, b - a, c);
    c = crc32c(buf.data() + b, n - b, c);
    ASSERT_EQ(c, whole);
  }
}

TEST(Crc32c, ByteAtATime) {
  const std::string s = "123456789";
  uint32_t c = 0;
  for (char ch : s) {
    const auto byte = static_cast<uint8_t>(ch);
    c = crc32c(&byte, 1, c);
  }
  EXPECT_EQ(c, 0xE3069283u);
}

TEST(Fnv1a64, KnownVectors) {
  const auto h = [](const std::string& s) {
    return fnv1a64(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  };
  EXPECT_EQ(h(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(h("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(h("foobar"), 0x85944171f73967e8ULL);
  // Chained use equals one call.
  const std::string s = "foobar";
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  EXPECT_EQ(fnv1a64(p + 3, 3, fnv1a64(p, 3)), h("foobar"));
}

}  // namespace
}  // namespace tctest
