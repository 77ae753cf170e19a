// Sparse updates: top-k against a std::nth_element reference, error feedback conservation,
// value codings within their stated error, index codings exact, the kind-2 frame's checks.
#include "support.hpp"
#include "taskcodec/sparse.hpp"

namespace tctest {
namespace {

// The reference: nth_element over (|x|, index) pairs, larger |x| first, lower index on ties.
std::vector<uint32_t> reference_topk(const std::vector<float>& x, size_t k) {
  std::vector<std::pair<float, uint32_t>> p(x.size());
  for (size_t i = 0; i < x.size(); ++i) p[i] = {std::fabs(x[i]), static_cast<uint32_t>(i)};
  auto better = [](const std::pair<float, uint32_t>& a, const std::pair<float, uint32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  if (k < p.size()) std::nth_element(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(k), p.end(), better);
  std::vector<uint32_t> idx(k);
  for (size_t j = 0; j < k; ++j) idx[j] = p[j].second;
  std::sort(idx.begin(), idx.end());
  return idx;
}

std::vector<float> random_update(Rng& rng, size_t n, bool ties) {
  std::vector<float> x(n);
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (auto& v : x) {
    v = ties ? static_cast<float>(rng.range(-4, 4)) * 0.25f : g(rng.engine()) * 1e-3f;
  }
  return x;
}

TEST(Sparse, TopkCount) {
  EXPECT_EQ(topk_count(0, 0.5), 0u);
  EXPECT_EQ(topk_count(1000, 0.001), 1u);
  EXPECT_EQ(topk_count(1000, 0.0001), 1u);
  EXPECT_EQ(topk_count(1001, 0.001), 2u);
  EXPECT_EQ(topk_count(10, 1.0), 10u);
  EXPECT_EQ(topk_count(25000000, 0.01), 250000u);
}

TEST(Sparse, TopkMatchesReference) {
  Rng rng(11);
  for (int it = 0; it < 200; ++it) {
    const bool big = it % 20 == 0;
    const size_t n = static_cast<size_t>(1 + rng.below(big ? 300000 : 3000));
    const bool ties = rng.chance(0.3);
    auto x = random_update(rng, n, ties);
    const size_t k = static_cast<size_t>(1 + rng.below(rng.chance(0.5) ? n : std::max<size_t>(1, n / 100)));
    std::vector<uint32_t> idx(k);
    TC_ASSERT_OK(topk_select(x.data(), n, k, idx.data(), static_cast<int>(rng.below(3))));
    ASSERT_EQ(idx, reference_topk(x, k)) << "n " << n << " k " << k << " ties " << ties;
  }
}

TEST(Sparse, TopkAllEqualAndZeros) {
  std::vector<float> x(5000000, 0.0f);  // large enough for the sampled threshold and threads
  x[4999999] = -0.0f;
  std::vector<uint32_t> idx(10);
  TC_ASSERT_OK(topk_select(x.data(), x.size(), 10, idx.data(), 2));
  for (uint32_t j = 0; j < 10; ++j) EXPECT_EQ(idx[j], j);
}

TEST(Sparse, TopkRejectsNonFinite) {
  std::vector<float> x(3000000, 1.0f);
  x[2999990] = std::numeric_limits<float>::quiet_NaN();
  std::vector<uint32_t> idx(5);
  Error e = topk_select(x.data(), x.size(), 5, idx.data(), 2);
  EXPECT_EQ(e.status, Status::kInvalidArgument);
  EXPECT_NE(e.message.find("2999990"), std::string::npos) << e.message;
  x[2999990] = 1.0f;
  x[7] = -std::numeric_limits<float>::infinity();
  EXPECT_EQ(topk_select(x.data(), x.size(), 5, idx.data(), 1).status, Status::kInvalidArgument);
  std::vector<float> r(x.size(), 0.5f);
  const std::vector<float> before = r;
  EXPECT_EQ(ef_accumulate(x.data(), r.data(), x.size()).status, Status::kInvalidArgument);
  EXPECT_EQ(r, before);  // a bad update leaves the residual untouched
}

TEST(Sparse, Float16IsRoundToNearestEven) {
  EXPECT_EQ(float_to_half(1.0f), 0x3C00);
  EXPECT_EQ(float_to_half(-2.0f), 0xC000);
  EXPECT_EQ(float_to_half(65504.0f), 0x7BFF);
  EXPECT_EQ(float_to_half(1e9f), 0x7BFF);        // saturates
  EXPECT_EQ(float_to_half(-1e9f), 0xFBFF);
  EXPECT_EQ(float_to_half(5.9604645e-8f), 0x0001);  // 2^-24, smallest subnormal
  EXPECT_EQ(float_to_half(2.9802322e-8f), 0x0000);  // 2^-25 ties to even (0)
  EXPECT_EQ(float_to_half(1.0f + 1.0f / 2048.0f), 0x3C00);  // tie, to even
  EXPECT_EQ(float_to_half(1.0f + 3.0f / 2048.0f), 0x3C02);  // tie, to even (up)
  for (uint32_t h = 0; h < 0x7C00; ++h) {  // every finite half survives the round trip
    ASSERT_EQ(float_to_half(half_to_float(static_cast<uint16_t>(h))), h);
    ASSERT_EQ(float_to_half(half_to_float(static_cast<uint16_t>(h | 0x8000))), h | 0x8000);
  }
}

TEST(Sparse, ValueCodingsWithinTheirError) {
  Rng rng(5);
  const ValueCoding codings[] = {ValueCoding::kFloat32, ValueCoding::kFloat16, ValueCoding::kInt8,
                                 ValueCoding::kSign, ValueCoding::kQsgd};
  for (ValueCoding c : codings) {
    for (int it = 0; it < 20; ++it) {
      const size_t k = static_cast<size_t>(rng.below(2000));
      auto v = random_update(rng, k, false);
      ValueParams p;
      p.coding = c;
      p.block_log2 = static_cast<uint32_t>(rng.below(10));
      p.levels = static_cast<uint32_t>(1 + rng.below(127));
      p.seed = rng.u64();
      std::vector<uint8_t> buf(static_cast<size_t>(value_bytes(p, k)) + 1);
      std::vector<float> deq(k), dec(k);
      TC_ASSERT_OK(encode_values(v.data(), k, p, 3, buf.data(), buf.size(), deq.data()));
      TC_ASSERT_OK(decode_values(buf.data(), buf.size() - 1, k, p, dec.data()));
      ASSERT_EQ(deq, dec) << value_coding_name(c);  // the encoder's dequantized values are the decoder's
      const size_t block = size_t{1} << p.block_log2;
      for (size_t j = 0; j < k; ++j) {
        float amax = 0.0f;
        for (size_t i = (j / block) * block; i < std::min(k, (j / block + 1) * block); ++i) amax = std::max(amax, std::fabs(v[i]));
        const float err = std::fabs(dec[j] - v[j]);
        switch (c) {
          case ValueCoding::kFloat32: ASSERT_EQ(dec[j], v[j]); break;
          case ValueCoding::kFloat16: ASSERT_LE(err, std::fabs(v[j]) * 0x1p-11f + 0x1p-25f); break;
          case ValueCoding::kInt8: ASSERT_LE(err, amax / 127.0f * 0.5001f); break;
          case ValueCoding::kQsgd: ASSERT_LE(err, amax / static_cast<float>(p.levels) * 1.0001f); break;
          case ValueCoding::kSign: ASSERT_EQ(std::signbit(dec[j]), std::signbit(v[j]) && v[j] != 0.0f); break;
        }
      }
    }
  }
}

TEST(Sparse, QsgdIsUnbiased) {
  // Mean of many seeds' dequantized value approaches the value (stochastic rounding).
  std::vector<float> v = {0.3f, -0.71f, 1.0f, 0.05f};
  ValueParams p;
  p.coding = ValueCoding::kQsgd;
  p.levels = 2;
  std::vector<double> mean(v.size(), 0.0);
  const int trials = 4000;
  std::vector<uint8_t> buf(value_bytes(p, v.size()));
  std::vector<float> deq(v.size());
  for (int s = 0; s < trials; ++s) {
    p.seed = static_cast<uint64_t>(s);
    TC_ASSERT_OK(encode_values(v.data(), v.size(), p, 0, buf.data(), buf.size(), deq.data()));
    for (size_t j = 0; j < v.size(); ++j) mean[j] += deq[j] / trials;
  }
  // Standard error of a rounding between levels 0.5 apart over 4000 trials is < 0.008.
  for (size_t j = 0; j < v.size(); ++j) EXPECT_NEAR(mean[j], v[j], 0.03) << j;
}

TEST(Sparse, IndexCodingsAreExact) {
  Rng rng(9);
  for (int it = 0; it < 300; ++it) {
    const uint64_t n = 1 + rng.below(it % 10 == 0 ? 2000000 : 5000);
    const size_t k = static_cast<size_t>(1 + rng.below(rng.chance(0.5) ? n : std::max<uint64_t>(1, n / 200)));
    std::vector<uint32_t> all(n);
    for (uint32_t i = 0; i < n; ++i) all[i] = i;
    std::shuffle(all.begin(), all.end(), rng.engine());
    std::vector<uint32_t> idx(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k));
    std::sort(idx.begin(), idx.end());
    std::vector<uint8_t> gaps, bitmap, chosen_bytes;
    TC_ASSERT_OK(encode_index_gaps(idx.data(), k, n, &gaps));
    TC_ASSERT_OK(encode_index_bitmap(idx.data(), k, n, &bitmap));
    IndexCoding chosen;
    TC_ASSERT_OK(encode_index(idx.data(), k, n, &chosen, &chosen_bytes));
    EXPECT_EQ(chosen_bytes.size(), std::min(gaps.size(), bitmap.size()));
    std::vector<uint32_t> back(k);
    TC_ASSERT_OK(decode_index_gaps(gaps.data(), gaps.size(), k, n, back.data()));
    ASSERT_EQ(back, idx);
    TC_ASSERT_OK(decode_index_bitmap(bitmap.data(), bitmap.size(), k, n, back.data()));
    ASSERT_EQ(back, idx);
  }
}

TEST(Sparse, GapsBeatBitmapWhenSparse) {
  // 0.1 % of 1 M random positions: entropy of the gaps is about log2(e * 1000) = 11.4 bits.
  Rng rng(1);
  const uint64_t n = 1000000;
  std::vector<float> x = random_update(rng, n, false);
  std::vector<uint32_t> idx(1000);
  TC_ASSERT_OK(topk_select(x.data(), n, 1000, idx.data()));
  std::vector<uint8_t> gaps;
  TC_ASSERT_OK(encode_index_gaps(idx.data(), 1000, n, &gaps));
  // Measured 11.75 bits a gap (gap table and lane states included); the entropy of the
  // positions alone is about 11.4 bits.
  EXPECT_LT(static_cast<double>(gaps.size()) * 8.0 / 1000, 12.0);
}

TEST(Sparse, ErrorFeedbackConservesTheSum) {
  Rng rng(3);
  const ValueCoding codings[] = {ValueCoding::kFloat32, ValueCoding::kFloat16, ValueCoding::kInt8,
                                 ValueCoding::kSign, ValueCoding::kQsgd};
  for (ValueCoding c : codings) {
    const size_t n = 20000;
    std::vector<float> residual(n, 0.0f), total(n, 0.0f);
    std::vector<double> sent(n, 0.0);
    ValueParams p;
    p.coding = c;
    for (int round = 0; round < 5; ++round) {
      auto u = random_update(rng, n, false);
      for (size_t i = 0; i < n; ++i) total[i] += u[i];
      std::vector<float> acc(residual);
      for (size_t i = 0; i < n; ++i) acc[i] += u[i];
      std::vector<uint8_t> rec;
      std::vector<uint32_t> idx(200);
      std::vector<float> val(200);
      TC_ASSERT_OK(compress_tensor(u.data(), residual.data(), n, 200, p, static_cast<uint64_t>(round), &rec,
                                   idx.data(), val.data()));
      // This round: sent + residual == acc, exactly for float32 / float16, to one rounding otherwise.
      std::vector<float> check(residual);
      for (size_t j = 0; j < 200; ++j) check[idx[j]] += val[j];
      for (size_t i = 0; i < n; ++i) {
        if (c == ValueCoding::kFloat32 || c == ValueCoding::kFloat16) {
          ASSERT_EQ(check[i], acc[i]) << value_coding_name(c) << " " << i;
        } else {
          ASSERT_NEAR(check[i], acc[i], std::fabs(acc[i]) * 1e-6f + 1e-12f) << value_coding_name(c);
        }
      }
      for (size_t j = 0; j < 200; ++j) sent[idx[j]] += val[j];
      // The record decodes to the same indices and values.
      std::vector<std::vector<uint8_t>> recs{rec};
      std::vector<uint8_t> frame;
      TC_ASSERT_OK(write_sparse_frame(recs, nullptr, 0, true, &frame));
      FrameHeader h;
      std::vector<SparseRecord> rs;
      TC_ASSERT_OK(parse_sparse_frame(frame.data(), frame.size(), {}, &h, &rs));
      std::vector<uint32_t> idx2(200);
      std::vector<float> val2(200);
      TC_ASSERT_OK(decode_record(rs[0], idx2.data(), val2.data()));
      ASSERT_EQ(idx2, idx);
      ASSERT_EQ(val2, val);
    }
    // Over the rounds: everything sent plus what is left equals everything given.
    for (size_t i = 0; i < n; ++i) ASSERT_NEAR(sent[i] + residual[i], total[i], 1e-5) << value_coding_name(c);
  }
}

std::vector<uint8_t> sample_frame(uint64_t seed) {
  Rng rng(seed);
  std::vector<std::vector<uint8_t>> recs;
  const uint64_t sizes[] = {1000, 37, 1, 65536, 0};
  for (int t = 0; t < 5; ++t) {
    auto u = random_update(rng, sizes[t], false);
    ValueParams p;
    p.coding = static_cast<ValueCoding>(t);
    recs.emplace_back();
    const size_t k = static_cast<size_t>(topk_count(sizes[t], 0.01));
    EXPECT_TRUE(compress_tensor(u.data(), nullptr, sizes[t], k, p, static_cast<uint64_t>(t), &recs.back()).ok());
  }
  std::vector<uint8_t> frame;
  const uint8_t meta[] = {'h', 'i'};
  EXPECT_TRUE(write_sparse_frame(recs, meta, 2, true, &frame).ok());
  return frame;
}

// A selection made elsewhere (the GPU path) codes to the same record as compress_tensor, and
// encode_selected rejects selections that are not ascending or in range.
TEST(Sparse, EncodeSelectedMatchesCompressTensor) {
  Rng rng(21);
  const ValueCoding codings[] = {ValueCoding::kFloat32, ValueCoding::kFloat16, ValueCoding::kInt8,
                                 ValueCoding::kSign, ValueCoding::kQsgd};
  for (ValueCoding c : codings) {
    ValueParams p;
    p.coding = c;
    p.seed = 77;
    const size_t n = 5000, k = 123;
    auto u = random_update(rng, n, false);
    std::vector<float> residual(n, 0.25f), acc(residual);
    for (size_t i = 0; i < n; ++i) acc[i] += u[i];
    std::vector<uint8_t> want;
    std::vector<uint32_t> idx(k);
    std::vector<float> deq(k);
    TC_ASSERT_OK(compress_tensor(u.data(), residual.data(), n, k, p, 9, &want, idx.data(), deq.data()));
    std::vector<uint32_t> sel(k);
    TC_ASSERT_OK(topk_select(acc.data(), n, k, sel.data()));
    ASSERT_EQ(sel, idx);
    std::vector<float> val(k), deq2(k);
    for (size_t j = 0; j < k; ++j) val[j] = acc[sel[j]];
    std::vector<uint8_t> got;
    TC_ASSERT_OK(encode_selected(sel.data(), val.data(), n, k, p, 9, &got, deq2.data()));
    ASSERT_EQ(got, want) << value_coding_name(c);
    ASSERT_EQ(deq2, deq);
  }
  std::vector<uint32_t> bad = {3, 2};
  std::vector<float> v = {1.0f, 2.0f};
  std::vector<uint8_t> out;
  EXPECT_EQ(encode_selected(bad.data(), v.data(), 10, 2, ValueParams{}, 0, &out, nullptr).status,
            Status::kInvalidArgument);
  bad = {3, 10};
  EXPECT_EQ(encode_selected(bad.data(), v.data(), 10, 2, ValueParams{}, 0, &out, nullptr).status,
            Status::kInvalidArgument);
}

TEST(Sparse, FrameRoundTripAndAccumulate) {
  auto frame = sample_frame(4);
  FrameHeader h;
  std::vector<SparseRecord> rs;
  TC_ASSERT_OK(parse_sparse_frame(frame.data(), frame.size(), {}, &h, &rs));
  ASSERT_EQ(rs.size(), 5u);
  EXPECT_EQ(h.kind, FrameKind::kSparseUpdate);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(h.meta), h.meta_length), "hi");
  EXPECT_EQ(rs[3].index, IndexCoding::kGaps);  // 656 of 65536
  EXPECT_EQ(rs[2].k, 1u);
  EXPECT_EQ(rs[4].n, 0u);
  std::vector<float> dense(rs[0].n, 1.0f);
  TC_ASSERT_OK(accumulate_record(rs[0], 2.0f, dense.data(), dense.size()));
  std::vector<uint32_t> idx(rs[0].k);
  std::vector<float> val(rs[0].k);
  TC_ASSERT_OK(decode_record(rs[0], idx.data(), val.data()));
  for (size_t j = 0; j < idx.size(); ++j) EXPECT_EQ(dense[idx[j]], 1.0f + 2.0f * val[j]);
  // The symbol decoder refuses a sparse update; the sparse parser refuses symbols.
  EXPECT_EQ(check_decode(h, *table_from_freqs({{1, 1}}, {0}, 1), nullptr, 0).status, Status::kInvalidArgument);
  // Limits.
  SparseDecodeOptions lim;
  lim.max_elements = 1000;
  EXPECT_EQ(parse_sparse_frame(frame.data(), frame.size(), lim, &h, &rs).status, Status::kLimitExceeded);
  lim = {};
  lim.max_tensors = 4;
  EXPECT_EQ(parse_sparse_frame(frame.data(), frame.size(), lim, &h, &rs).status, Status::kLimitExceeded);
}

TEST(Sparse, HostileFramesNeverCrashAndReportTheCoreErrors) {
  auto frame = sample_frame(8);
  FrameHeader h;
  std::vector<SparseRecord> rs;
  // Truncations: every prefix is refused.
  for (size_t len = 0; len < frame.size(); ++len) {
    Error e = parse_sparse_frame(frame.data(), len, {}, &h, &rs);
    ASSERT_TRUE(e.status == Status::kCorruptStream || e.status == Status::kChecksumMismatch) << len;
  }
  // Any flipped bit is a checksum mismatch (CRC32C detects every single-bit error).
  for (size_t i = 0; i < frame.size(); i += 7) {
    auto bad = frame;
    bad[i] ^= 0x10;
    Error e = parse_sparse_frame(bad.data(), bad.size(), {}, &h, &rs);
    ASSERT_FALSE(e.ok()) << i;
  }
  // Without the checksum, random corruption reaches the record and payload checks; whatever
  // they let through must decode within bounds (run under the sanitizers by make sanitize).
  Rng rng(2);
  std::vector<std::vector<uint8_t>> recs;
  {
    std::vector<SparseRecord> good;
    TC_ASSERT_OK(parse_sparse_frame(frame.data(), frame.size(), {}, &h, &good));
  }
  auto plain = frame;
  plain[6] = 0;  // drop the checksum flag and its trailer
  plain.resize(plain.size() - 4);
  TC_ASSERT_OK(parse_sparse_frame(plain.data(), plain.size(), {}, &h, &rs));
  int refused = 0;
  for (int it = 0; it < 3000; ++it) {
    auto bad = plain;
    const int flips = 1 + static_cast<int>(rng.below(4));
    for (int f = 0; f < flips; ++f) bad[static_cast<size_t>(rng.below(bad.size()))] ^= static_cast<uint8_t>(1 + rng.below(255));
    Error e = parse_sparse_frame(bad.data(), bad.size(), {}, &h, &rs);
    if (e) {
      ++refused;
      continue;
    }
    for (const auto& r : rs) {
      std::vector<uint32_t> idx(r.k);
      std::vector<float> val(r.k);
      Error d = decode_record(r, idx.data(), val.data());
      if (d) {
        ASSERT_EQ(d.status, Status::kCorruptStream) << d.message;
        ++refused;
        continue;
      }
      for (size_t j = 0; j < idx.size(); ++j) {
        ASSERT_LT(idx[j], r.n);
        ASSERT_TRUE(std::isfinite(val[j]));
        if (j) {
          ASSERT_GT(idx[j], idx[j - 1]);
        }
      }
    }
  }
  EXPECT_GT(refused, 1000);
}

}  // namespace
}  // namespace tctest
