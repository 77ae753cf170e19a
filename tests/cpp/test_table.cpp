// Integer CDF tables: quantization from a pmf, validation of explicit frequencies,
// the canonical serialization and its parser on hostile bytes.
#include "support.hpp"

namespace tctest {
namespace {

void expect_valid_rows(const CdfTable& t) {
  const uint64_t m = 1ull << t.precision();
  for (size_t r = 0; r < t.rows(); ++r) {
    uint64_t sum = 0;
    for (uint32_t i = 0; i <= t.length(r); ++i) {
      EXPECT_GE(t.freqs(r)[i], 1u) << "row " << r << " symbol " << i;
      EXPECT_LT(t.freqs(r)[i], m) << "row " << r << " symbol " << i;
      sum += t.freqs(r)[i];
    }
    EXPECT_EQ(sum, m) << "row " << r;
  }
}

TEST(Table, FromPmfRowsSumToScaleWithMinFreqOne) {
  Rng rng(20);
  for (int trial = 0; trial < 300; ++trial) {
    TableSpec spec;
    spec.precision = static_cast<uint32_t>(1 + rng.below(16));
    spec.rows = static_cast<size_t>(1 + rng.below(6));
    spec.max_k = static_cast<uint32_t>(1 + rng.below(rng.chance(0.1) ? 70000 : 300));
    TablePtr t = random_table(rng, spec);
    ASSERT_TRUE(t);
    EXPECT_EQ(t->precision(), spec.precision);
    EXPECT_EQ(t->rows(), spec.rows);
    expect_valid_rows(*t);
  }
}

TEST(Table, FromPmfIsDeterministicAndMonotone) {
  Rng rng(21);
  for (int trial = 0; trial < 100; ++trial) {
    const uint32_t p = static_cast<uint32_t>(4 + rng.below(13));
    const size_t k = static_cast<size_t>(1 + rng.below(std::min<uint64_t>(200, (1ull << p) - 1)));
    const auto pmf = random_pmf(rng, k);
    const int32_t off = -7;
    const uint32_t len = static_cast<uint32_t>(k);
    TablePtr a, b;
    TC_ASSERT_OK(CdfTable::from_pmf(pmf.data(), 1, k, &off, &len, nullptr, p, &a));
    TC_ASSERT_OK(CdfTable::from_pmf(pmf.data(), 1, k, &off, &len, nullptr, p, &b));
    EXPECT_EQ(a->serialized(), b->serialized());
    EXPECT_EQ(a->fingerprint(), b->fingerprint());
    const bool all_zero = std::all_of(pmf.begin(), pmf.end(), [](double x) { return x == 0.0; });
    // Larger weight never gets a smaller frequency; zero weight and a null escape get 1
    // (unless the whole row is zero).
    for (size_t i = 0; i < k; ++i) {
      for (size_t j = 0; j < k; ++j) {
        if (pmf[i] > pmf[j]) {
          ASSERT_GE(a->freqs(0)[i], a->freqs(0)[j]) << "p=" << p << " i=" << i << " j=" << j;
        }
      }
      if (pmf[i] == 0.0 && !all_zero) {
        EXPECT_EQ(a->freqs(0)[i], 1u);
      }
    }
    if (!all_zero) {
      EXPECT_EQ(a->freqs(0)[k], 1u) << "a null escape weight means the smallest frequency";
    } else {
      // An all-zero row (and escape) is uniform: docs/format.md section 14.
      const uint32_t lo = *std::min_element(a->freqs(0), a->freqs(0) + k + 1);
      const uint32_t hi = *std::max_element(a->freqs(0), a->freqs(0) + k + 1);
      EXPECT_LE(hi - lo, 1u);
    }
    // Rows need not sum to 1: scaling by a power of two gives the same integers.
    std::vector<double> scaled(pmf);
    for (auto& v : scaled) v *= 1024.0;
    TablePtr c;
    TC_ASSERT_OK(CdfTable::from_pmf(scaled.data(), 1, k, &off, &len, nullptr, p, &c));
    EXPECT_EQ(c->fingerprint(), a->fingerprint());
  }
}

TEST(Table, FromPmfKnownValues) {
  // Weights 1:1:2 plus a null escape at precision 4: spare = 16 - 4 = 12 slots shared
  // 3:3:6:0 on top of the minimum 1 each.
  const double pmf[] = {0.25, 0.25, 0.5};
  const int32_t off = 10;
  TablePtr t;
  TC_ASSERT_OK(CdfTable::from_pmf(pmf, 1, 3, &off, nullptr, nullptr, 4, &t));
  ASSERT_EQ(t->length(0), 3u);
  EXPECT_EQ(t->offset(0), 10);
  EXPECT_EQ(std::vector<uint32_t>(t->freqs(0), t->freqs(0) + 4), (std::vector<uint32_t>{4, 4, 7, 1}));
  // An all-zero row becomes uniform.
  const double zeros[] = {0.0, 0.0, 0.0};
  TC_ASSERT_OK(CdfTable::from_pmf(zeros, 1, 3, &off, nullptr, nullptr, 4, &t));
  EXPECT_EQ(std::vector<uint32_t>(t->freqs(0), t->freqs(0) + 4), (std::vector<uint32_t>{4, 4, 4, 4}));
}

TEST(Table, TailTrimming) {
  // docs/format.md section 14, tail trimming: bins below 2^-(P+3) of the total at either
  // end move into the escape; the offset and K follow.
  const double pmf[] = {1e-9, 1e-7, 0.2, 0.5, 0.3, 0.0, 1e-12};
  const int32_t off = -3;
  TablePtr plain, trimmed;
  TC_ASSERT_OK(CdfTable::from_pmf(pmf, 1, 7, &off, nullptr, nullptr, 12, &plain, false));
  TC_ASSERT_OK(CdfTable::from_pmf(pmf, 1, 7, &off, nullptr, nullptr, 12, &trimmed, true));
  EXPECT_EQ(plain->length(0), 7u);
  EXPECT_EQ(plain->offset(0), -3);
  EXPECT_EQ(trimmed->length(0), 3u);  // 0.2, 0.5, 0.3 remain
  EXPECT_EQ(trimmed->offset(0), -1);
  expect_valid_rows(*trimmed);
  EXPECT_NE(plain->fingerprint(), trimmed->fingerprint());
  // Nothing to trim: the same table either way; a single bin is never trimmed.
  const double flat[] = {1, 1, 1};
  TC_ASSERT_OK(CdfTable::from_pmf(flat, 1, 3, &off, nullptr, nullptr, 8, &plain, false));
  TC_ASSERT_OK(CdfTable::from_pmf(flat, 1, 3, &off, nullptr, nullptr, 8, &trimmed, true));
  EXPECT_EQ(plain->fingerprint(), trimmed->fingerprint());
  const double one[] = {1e-30};
  const double big_escape[] = {1.0};
  TC_ASSERT_OK(CdfTable::from_pmf(one, 1, 1, &off, nullptr, big_escape, 8, &trimmed, true));
  EXPECT_EQ(trimmed->length(0), 1u);
}

TEST(Table, FromPmfRejectsBadInput) {
  const double pmf[] = {0.5, 0.5, 0.0, 0.0};
  const int32_t offs[] = {0, 0};
  TablePtr t;
  const auto st = [&](const double* p, size_t rows, size_t width, const uint32_t* lens,
                      const double* esc, uint32_t prec) {
    return CdfTable::from_pmf(p, rows, width, offs, lens, esc, prec, &t).status;
  };
  EXPECT_EQ(st(pmf, 1, 2, nullptr, nullptr, 0), Status::kInvalidArgument);
  EXPECT_EQ(st(pmf, 1, 2, nullptr, nullptr, 17), Status::kInvalidArgument);
  EXPECT_EQ(st(pmf, 0, 2, nullptr, nullptr, 8), Status::kInvalidArgument);
  EXPECT_EQ(st(pmf, 1, 0, nullptr, nullptr, 8), Status::kInvalidArgument);
  EXPECT_EQ(st(pmf, 1, 2, nullptr, nullptr, 1), Status::kInvalidArgument);  // 2 + escape > 2 slots
  const uint32_t too_long[] = {3};
  EXPECT_EQ(st(pmf, 1, 2, too_long, nullptr, 8), Status::kInvalidArgument);
  const uint32_t zero_len[] = {0};
  EXPECT_EQ(st(pmf, 1, 2, zero_len, nullptr, 8), Status::kInvalidArgument);
  const double neg[] = {0.5, -0.1};
  EXPECT_EQ(st(neg, 1, 2, nullptr, nullptr, 8), Status::kInvalidArgument);
  const double nan[] = {0.5, std::numeric_limits<double>::quiet_NaN()};
  EXPECT_EQ(st(nan, 1, 2, nullptr, nullptr, 8), Status::kInvalidArgument);
  const double inf[] = {0.5, std::numeric_limits<double>::infinity()};
  EXPECT_EQ(st(inf, 1, 2, nullptr, nullptr, 8), Status::kInvalidArgument);
  const double bad_esc[] = {-1.0};
  EXPECT_EQ(st(pmf, 1, 2, nullptr, bad_esc, 8), Status::kInvalidArgument);
  const int32_t high_off = kI32Max;
  EXPECT_EQ(CdfTable::from_pmf(pmf, 1, 2, &high_off, nullptr, nullptr, 8, &t).status,
            Status::kInvalidArgument);
  // Extreme but valid: every slot used, tiny and huge magnitudes.
  const double extreme[] = {1e-300, 1e300, 5e-324};
  TC_EXPECT_OK(CdfTable::from_pmf(extreme, 1, 3, offs, nullptr, nullptr, 2, &t));
  expect_valid_rows(*t);
}

TEST(Table, FromFreqsValidates) {
  const int32_t offs[] = {-1, 5};
  const uint32_t lens2[] = {2, 1};
  TablePtr t;
  {
    const uint32_t f[] = {2, 1, 1, 3, 1};  // rows of precision 2: sums 4 and 4
    TC_ASSERT_OK(CdfTable::from_freqs(f, 5, 2, offs, lens2, 2, &t));
    EXPECT_EQ(t->rows(), 2u);
    EXPECT_EQ(t->max_length(), 2u);
    EXPECT_EQ(t->offset(1), 5);
    EXPECT_EQ(t->freqs(1)[0], 3u);
  }
  const auto st_off = [&](std::vector<uint32_t> f, size_t rows, const uint32_t* lens, uint32_t prec,
                          const int32_t* o) {
    return CdfTable::from_freqs(f.data(), f.size(), rows, o, lens, prec, &t).status;
  };
  const auto st = [&](std::vector<uint32_t> f, size_t rows, const uint32_t* lens, uint32_t prec) {
    return st_off(std::move(f), rows, lens, prec, offs);
  };
  EXPECT_EQ(st({2, 1, 1, 3, 2}, 2, lens2, 2), Status::kInvalidArgument);     // sum 5
  EXPECT_EQ(st({2, 1, 0, 3, 1}, 2, lens2, 2), Status::kInvalidArgument);     // zero freq
  EXPECT_EQ(st({2, 1, 1, 4, 0}, 2, lens2, 2), Status::kInvalidArgument);     // freq 2^p, zero escape
  EXPECT_EQ(st({2, 1, 1, 3}, 2, lens2, 2), Status::kInvalidArgument);        // too few
  EXPECT_EQ(st({2, 1, 1, 3, 1, 1}, 2, lens2, 2), Status::kInvalidArgument);  // too many
  EXPECT_EQ(st({2, 1, 1, 3, 1}, 2, lens2, 0), Status::kInvalidArgument);
  EXPECT_EQ(st({2, 1, 1, 3, 1}, 2, lens2, 17), Status::kInvalidArgument);
  EXPECT_EQ(st({2, 1, 1, 3, 1}, 0, lens2, 2), Status::kInvalidArgument);
  const uint32_t lens_zero[] = {0, 1};
  EXPECT_EQ(st({4, 3, 1}, 2, lens_zero, 2), Status::kInvalidArgument);
  const uint32_t lens_big[] = {4, 1};  // 4 + escape > 4 slots
  EXPECT_EQ(st({1, 1, 1, 1, 0, 3, 1}, 2, lens_big, 2), Status::kInvalidArgument);
  const int32_t offs_over[] = {kI32Max - 1, 0};  // -> symbols up to kI32Max + 0: fits
  TC_EXPECT_OK(CdfTable::from_freqs(std::vector<uint32_t>{2, 1, 1, 3, 1}.data(), 5, 2, offs_over, lens2, 2, &t));
  const int32_t offs_past[] = {kI32Max, 0};  // 2 symbols from kI32Max run past int32
  EXPECT_EQ(st_off({2, 1, 1, 3, 1}, 2, lens2, 2, offs_past), Status::kInvalidArgument);
  // 32-bit sums must not wrap: huge entries summing to 2^32 + 2^p.
  const uint32_t one[] = {1};
  EXPECT_EQ(st({0x80000000u, 0x80000002u}, 1, one, 2), Status::kInvalidArgument);
}

TEST(Table, SerializeRoundTrip) {
  Rng rng(22);
  for (int trial = 0; trial < 100; ++trial) {
    TableSpec spec;
    spec.precision = static_cast<uint32_t>(1 + rng.below(16));
    spec.rows = static_cast<size_t>(1 + rng.below(5));
    spec.max_k = 300;
    TablePtr t = random_table(rng, spec);
    const auto& s = t->serialized();
    EXPECT_EQ(t->fingerprint(), fnv1a64(s.data(), s.size()));
    TablePtr u;
    TC_ASSERT_OK(CdfTable::deserialize(s.data(), s.size(), &u));
    EXPECT_EQ(u->serialized(), s);
    EXPECT_EQ(u->fingerprint(), t->fingerprint());
    ASSERT_EQ(u->rows(), t->rows());
    EXPECT_EQ(u->precision(), t->precision());
    EXPECT_EQ(u->max_length(), t->max_length());
    for (size_t r = 0; r < t->rows(); ++r) {
      EXPECT_EQ(u->offset(r), t->offset(r));
      ASSERT_EQ(u->length(r), t->length(r));
      for (uint32_t i = 0; i <= t->length(r); ++i) EXPECT_EQ(u->freqs(r)[i], t->freqs(r)[i]);
    }
  }
}

TEST(Table, SerializedLayoutIsPinned) {
  const TablePtr t = table_from_freqs({{2, 1, 1}}, {-3}, 2);
  const std::vector<uint8_t> want = {'T', 'C', 'D', 'T', 1, 2, 0, 0, 1, 0, 0, 0,  // header
                                     0xFD, 0xFF, 0xFF, 0xFF, 2, 0, 0, 0,             // offset, K
                                     2, 0, 1, 0, 1, 0};                              // freqs
  EXPECT_EQ(t->serialized(), want);
  EXPECT_EQ(t->fingerprint(), fnv1a64(want.data(), want.size()));
}

TEST(Table, DeserializeRejectsEveryTruncationAndExtension) {
  Rng rng(23);
  TableSpec spec;
  spec.rows = 3;
  spec.precision = 10;
  spec.max_k = 20;
  TablePtr t = random_table(rng, spec);
  std::vector<uint8_t> s = t->serialized();
  for (size_t len = 0; len < s.size(); ++len) {
    std::vector<uint8_t> cut(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(len));  // exact-size heap copy
    TablePtr u;
    const Error e = CdfTable::deserialize(cut.data(), cut.size(), &u);
    EXPECT_EQ(e.status, Status::kCorruptStream) << "length " << len << ": " << describe(e);
  }
  s.push_back(0);
  TablePtr u;
  EXPECT_EQ(CdfTable::deserialize(s.data(), s.size(), &u).status, Status::kCorruptStream);
  EXPECT_EQ(CdfTable::deserialize(nullptr, 0, &u).status, Status::kCorruptStream);
}

TEST(Table, DeserializeBitFlipsFailOrStayCanonical) {
  Rng rng(24);
  int accepted = 0;
  int rejected = 0;
  for (int trial = 0; trial < 6; ++trial) {
    TableSpec spec;
    spec.rows = static_cast<size_t>(1 + rng.below(3));
    spec.precision = static_cast<uint32_t>(2 + rng.below(15));
    spec.max_k = 12;
    const TablePtr t = random_table(rng, spec);
    const std::vector<uint8_t>& s = t->serialized();
    for (size_t bit = 0; bit < s.size() * 8; ++bit) {
      std::vector<uint8_t> f(s);
      f[bit / 8] = static_cast<uint8_t>(f[bit / 8] ^ (1u << (bit % 8)));
      TablePtr u;
      const Error e = CdfTable::deserialize(f.data(), f.size(), &u);
      if (e.ok()) {
        // Only a flip that yields another valid table is accepted, and it is canonical.
        ++accepted;
        ASSERT_EQ(u->serialized(), f) << "bit " << bit;
        EXPECT_NE(u->fingerprint(), t->fingerprint());
      } else {
        ++rejected;
        EXPECT_TRUE(e.status == Status::kCorruptStream || e.status == Status::kUnsupportedVersion)
            << "bit " << bit << ": " << describe(e);
        EXPECT_FALSE(e.message.empty());
      }
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(accepted, 0);  // flips in the offsets give other valid tables
}

TEST(Table, DeserializeRandomBytesNeverCrashes) {
  Rng rng(25);
  const TablePtr t = table_from_freqs({{2, 1, 1}, {1, 3}}, {0, 4}, 2);
  const std::vector<uint8_t>& s = t->serialized();
  for (int trial = 0; trial < 20000; ++trial) {
    std::vector<uint8_t> f(s);
    const int edits = 1 + static_cast<int>(rng.below(6));
    for (int k = 0; k < edits; ++k) {
      switch (rng.below(3)) {
        case 0: f[rng.below(f.size())] = static_cast<uint8_t>(rng.u32()); break;
        case 1: if (f.size() > 1) f.erase(f.begin() + static_cast<std::ptrdiff_t>(rng.below(f.size()))); break;
        default: f.insert(f.begin() + static_cast<std::ptrdiff_t>(rng.below(f.size() + 1)), static_cast<uint8_t>(rng.u32())); break;
      }
    }
    TablePtr u;
    const Error e = CdfTable::deserialize(f.data(), f.size(), &u);
    if (e.ok()) {
      ASSERT_EQ(u->serialized(), f);
      expect_valid_rows(*u);
    }
  }
}

TEST(Table, DecoderLookupMatchesFrequencies) {
  // Every slot of every row maps to the symbol that owns it, for alphabets from 1 symbol
  // to nearly every slot, flat and very skewed rows, at every precision.
  Rng rng(26);
  for (int trial = 0; trial < 60; ++trial) {
    TableSpec spec;
    spec.rows = static_cast<size_t>(1 + rng.below(4));
    spec.precision = static_cast<uint32_t>(1 + rng.below(16));
    const uint64_t pick = rng.below(4);
    spec.max_k = pick == 0 ? 4 : pick == 1 ? 300 : pick == 2 ? 5000 : 70000;
    TablePtr t = random_table(rng, spec);
    t->prepare_decoder();
    const uint32_t shift = t->bucket_shift();
    for (size_t r = 0; r < t->rows(); ++r) {
      const RowDecoder rd = t->decoder_row(r);
      EXPECT_EQ(rd.offset, t->offset(r));
      EXPECT_EQ(rd.count, t->length(r));
      uint32_t start = 0;
      for (uint32_t s = 0; s <= t->length(r); ++s) {
        const uint32_t f = t->freqs(r)[s];
        for (uint32_t slot = start; slot < start + f; ++slot) {
          ASSERT_EQ(lookup_symbol(rd, slot, shift), s)
              << "precision " << t->precision() << " row " << r << " slot " << slot;
        }
        EXPECT_EQ(rd.info[s] & 0xFFFFu, f);
        EXPECT_EQ(rd.info[s] >> 16, start);
        start += f;
      }
    }
  }
}

TEST(Table, DecoderLookupOnExtremeRows) {
  // One giant symbol among many rare ones, rare symbols crowded into one bucket, and a
  // row using every slot.
  for (uint32_t p : {1u, 2u, 8u, 12u, 16u}) {
    const uint32_t m = 1u << p;
    std::vector<std::vector<uint32_t>> rows;
    if (m >= 4) {
      std::vector<uint32_t> skew(std::min<uint32_t>(m / 2, 3000), 1);
      skew.front() = m - static_cast<uint32_t>(skew.size()) + 1;
      rows.push_back(skew);
      std::vector<uint32_t> tail(std::min<uint32_t>(m / 2, 3000), 1);
      tail.back() = m - static_cast<uint32_t>(tail.size()) + 1;
      rows.push_back(tail);
    }
    rows.push_back(std::vector<uint32_t>(m, 1));  // K = m - 1: every slot its own symbol
    std::vector<int32_t> offs(rows.size(), 0);
    const TablePtr t = table_from_freqs(rows, offs, p);
    ASSERT_TRUE(t);
    t->prepare_decoder();
    for (size_t r = 0; r < t->rows(); ++r) {
      const RowDecoder rd = t->decoder_row(r);
      uint32_t slot = 0;
      for (uint32_t s = 0; s <= t->length(r); ++s) {
        for (uint32_t i = 0; i < t->freqs(r)[s]; ++i, ++slot) {
          ASSERT_EQ(lookup_symbol(rd, slot, t->bucket_shift()), s) << "p " << p << " row " << r;
        }
      }
    }
  }
}

}  // namespace
}  // namespace tctest
