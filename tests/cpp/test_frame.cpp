// Frames: round trips over random tables and layouts, byte equality with an independent
// reference encoder, and the decoder's behaviour on truncated, corrupted and hostile bytes.
#include <chrono>

#include "support.hpp"
#include "taskcodec/version.hpp"

namespace tctest {
namespace {

constexpr uint32_t kLaneChoices[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};

// A random case: table, layout, symbols, options.
struct Case {
  TablePtr table;
  FrameInput in;
  std::vector<int64_t> values;
  DType dtype = DType::kInt32;
};

Case random_case(Rng& rng, uint64_t max_symbols = 3000) {
  Case c;
  TableSpec spec;
  spec.precision = static_cast<uint32_t>(1 + rng.below(16));
  spec.max_k = static_cast<uint32_t>(1 + rng.below(rng.chance(0.2) ? 2000 : 60));
  // Layout first: it fixes the number of rows.
  const uint64_t mode = rng.below(3);
  const size_t ndim = static_cast<size_t>(mode == 2 ? 1 + rng.below(4) : rng.below(5));
  for (size_t d = 0; d < ndim; ++d) c.in.shape.push_back(1 + rng.below(rng.chance(0.3) ? 40 : 7));
  if (ndim && rng.chance(0.03)) c.in.shape[rng.below(ndim)] = 0;  // empty tensor
  while (count_of(c.in.shape) > max_symbols) {
    for (auto& d : c.in.shape) d = std::max<uint64_t>(1, d / 2);
  }
  if (mode == 0) {
    c.in.row_mode = kRowSingle;
    spec.rows = 1;
  } else if (mode == 1) {
    c.in.row_mode = kRowIndex;
    spec.rows = static_cast<size_t>(1 + rng.below(8));
  } else {
    c.in.row_mode = static_cast<uint8_t>(rng.below(ndim));
    if (c.in.shape[c.in.row_mode] == 0) c.in.shape[c.in.row_mode] = 1;
    spec.rows = static_cast<size_t>(c.in.shape[c.in.row_mode]);
  }
  c.table = random_table(rng, spec);
  const uint64_t n2 = count_of(c.in.shape);  // after the channel axis fix-up
  if (c.in.row_mode == kRowIndex) {
    c.in.index.resize(n2);
    for (auto& i : c.in.index) i = static_cast<int32_t>(rng.below(spec.rows));
  }
  c.dtype = kAllDTypes[rng.below(8)];
  int64_t lo = 0, hi = 0;
  dtype_range(c.dtype, &lo, &hi);
  const double esc = rng.chance(0.3) ? 0.0 : (rng.chance(0.5) ? 0.01 : 0.3);
  c.values.resize(n2);
  for (uint64_t i = 0; i < n2; ++i) {
    const size_t r = row_of(c.in.shape, c.in.row_mode, c.in.index.data(), i);
    c.values[i] = random_symbol(rng, *c.table, r, esc, lo, hi);
  }
  c.in.options.lanes = kLaneChoices[rng.below(9)];
  switch (rng.below(4)) {
    case 0: c.in.options.chunk_size = 1; break;
    case 1: c.in.options.chunk_size = static_cast<uint32_t>(1 + rng.below(64)); break;
    case 2: c.in.options.chunk_size = static_cast<uint32_t>(1 + rng.below(4000)); break;
    default: c.in.options.chunk_size = kDefaultChunkSize; break;
  }
  c.in.options.checksum = rng.chance(0.8);
  c.in.options.threads = 1;
  if (rng.chance(0.2)) {
    c.in.meta.resize(static_cast<size_t>(rng.below(40)));
    for (auto& b : c.in.meta) b = static_cast<uint8_t>(rng.u32());
  }
  return c;
}

std::vector<int32_t> as_i32(const std::vector<int64_t>& v) {
  return std::vector<int32_t>(v.begin(), v.end());
}

std::string case_name(const Case& c) {
  std::string s = "dtype " + std::string(dtype_name(c.dtype)) + ", precision " +
                  std::to_string(c.table->precision()) + ", rows " + std::to_string(c.table->rows()) +
                  ", lanes " + std::to_string(c.in.options.lanes) + ", chunk " +
                  std::to_string(c.in.options.chunk_size) + ", row_mode " +
                  std::to_string(c.in.row_mode) + ", shape [";
  for (uint64_t d : c.in.shape) s += std::to_string(d) + " ";
  return s + "]";
}

Error encode_case(const Case& c, std::vector<uint8_t>* out) {
  const TypedSymbols sym = to_dtype(c.values, c.dtype);
  return encode_frame(*c.table, sym.data(), c.dtype, c.in, out);
}

const std::vector<int32_t>* index_of(const Case& c) {
  return c.in.row_mode == kRowIndex ? &c.in.index : nullptr;
}

TEST(Frame, RandomRoundTrips) {
  Rng rng(30);
  for (int trial = 0; trial < 1000; ++trial) {
    const Case c = random_case(rng);
    SCOPED_TRACE("trial " + std::to_string(trial) + ": " + case_name(c));
    std::vector<uint8_t> f;
    TC_ASSERT_OK(encode_case(c, &f));
    std::vector<int32_t> out;
    FrameHeader h;
    TC_ASSERT_OK(decode_bytes(f.data(), f.size(), *c.table, index_of(c), &out, {}, &h));
    ASSERT_EQ(out, as_i32(c.values));
    EXPECT_EQ(h.dtype, c.dtype);
    EXPECT_EQ(h.shape, c.in.shape);
    EXPECT_EQ(h.row_mode, c.in.row_mode);
    EXPECT_EQ(h.lanes, c.in.options.lanes);
    EXPECT_EQ(h.chunk_size, c.in.options.chunk_size);
    EXPECT_EQ(h.fingerprint, c.table->fingerprint());
    EXPECT_EQ(h.num_symbols, c.values.size());
    EXPECT_EQ(h.meta_length, c.in.meta.size());
    EXPECT_EQ((h.flags & kFlagChecksum) != 0, c.in.options.checksum);
    EXPECT_EQ(std::vector<uint8_t>(h.meta, h.meta + h.meta_length), c.in.meta);
  }
}

TEST(Frame, BytesEqualReferenceEncoder) {
  Rng rng(31);
  for (int trial = 0; trial < 800; ++trial) {
    const Case c = random_case(rng, 2000);
    SCOPED_TRACE("trial " + std::to_string(trial) + ": " + case_name(c));
    std::vector<uint8_t> f;
    TC_ASSERT_OK(encode_case(c, &f));
    const std::vector<uint8_t> want = reference_frame(*c.table, c.values, c.dtype, c.in);
    ASSERT_EQ(f.size(), want.size());
    for (size_t i = 0; i < f.size(); ++i) ASSERT_EQ(f[i], want[i]) << "first difference at byte " << i;
  }
}

TEST(Frame, FormatWorkedExample) {
  // docs/format.md section 20, byte for byte: the table, its serialization and
  // fingerprint, the 90-byte frame, and its decoding. Any drift of the format fails here.
  const double pmf[] = {1, 2, 1};
  const int32_t off = -1;
  TablePtr t;
  TC_ASSERT_OK(CdfTable::from_pmf(pmf, 1, 3, &off, nullptr, nullptr, 4, &t));
  EXPECT_EQ(std::vector<uint32_t>(t->freqs(0), t->freqs(0) + 4), (std::vector<uint32_t>{4, 7, 4, 1}));
  const std::vector<uint8_t> table_bytes = {0x54, 0x43, 0x44, 0x54, 0x01, 0x04, 0x00, 0x00, 0x01, 0x00,
                                            0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x03, 0x00, 0x00, 0x00,
                                            0x04, 0x00, 0x07, 0x00, 0x04, 0x00, 0x01, 0x00};
  EXPECT_EQ(t->serialized(), table_bytes);
  EXPECT_EQ(t->fingerprint(), 0xEC02CCC0FE6815D5ull);

  const std::vector<int64_t> v = {1, -3, 0, 459988, -1};
  FrameInput in;
  in.shape = std::vector<uint64_t>{5};
  in.meta = {'q', 'p'};
  in.options.lanes = 2;
  in.options.chunk_size = 4;
  const std::vector<uint8_t> want = {
      0x54, 0x43, 0x44, 0x43, 0x01, 0x01, 0x01, 0x00, 0x3a, 0x00, 0x00, 0x00, 0x05, 0x01, 0xff, 0x04,
      0x02, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0xd5, 0x15, 0x68, 0xfe, 0xc0, 0xcc, 0x02, 0xec,
      0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
      0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x71, 0x70, 0x0c, 0x00, 0x00, 0x00, 0x08, 0x00,
      0x00, 0x00, 0x9d, 0x24, 0x09, 0x00, 0x1f, 0x30, 0x01, 0x01, 0x3f, 0x95, 0x03, 0x00, 0x00, 0x00,
      0x04, 0x00, 0x00, 0x00, 0x01, 0x00, 0x45, 0xfd, 0x7b, 0x9f};
  const TypedSymbols s = to_dtype(v, DType::kInt32);
  std::vector<uint8_t> f;
  TC_ASSERT_OK(encode_frame(*t, s.data(), DType::kInt32, in, &f));
  EXPECT_EQ(f, want);
  EXPECT_EQ(reference_frame(*t, v, DType::kInt32, in), want);
  std::vector<int32_t> out;
  TC_ASSERT_OK(decode_bytes(want, *t, nullptr, &out));
  EXPECT_EQ(out, as_i32(v));
}

// Long, high-entropy chunks: the decoder's unchecked and SIMD kernels run only while a
// block of 256 symbols has 4 words per symbol left, so small frames never reach them.
TEST(Frame, FastKernelsOnLongChunks) {
  Rng rng(36);
  for (int trial = 0; trial < 48; ++trial) {
    const uint32_t p = static_cast<uint32_t>(4 + rng.below(13));
    const uint32_t m = 1u << p;
    // Skewed rows with many rare symbols (fine buckets) or flat rows.
    const uint32_t k = static_cast<uint32_t>(1 + rng.below(std::min<uint32_t>(m - 1, 2000)));
    std::vector<uint32_t> f(k + 1, 1);
    if (rng.chance(0.5)) {
      f[rng.below(k + 1)] += m - (k + 1);
    } else {
      for (uint32_t left = m - (k + 1); left > 0; --left) ++f[rng.below(k + 1)];
    }
    const size_t rows = 1 + rng.below(3);
    std::vector<std::vector<uint32_t>> fr(rows, f);
    std::vector<int32_t> offs(rows);
    for (auto& o : offs) o = static_cast<int32_t>(rng.range(-5000, 5000));
    const TablePtr t = table_from_freqs(fr, offs, p);
    FrameInput in;
    const size_t n = 2048 + rng.below(6000);
    if (rows == 1) {
      in.shape = std::vector<uint64_t>{n};
    } else if (rng.chance(0.5)) {
      in.shape = std::vector<uint64_t>{rows, n / rows};  // long runs of one row
      in.row_mode = 0;
    } else {
      in.shape = std::vector<uint64_t>{n};  // a row per symbol
      in.row_mode = kRowIndex;
      in.index.resize(n);
      for (auto& r : in.index) r = static_cast<int32_t>(rng.below(rows));
    }
    const uint64_t count = count_of(in.shape);
    const std::vector<int32_t>* index = in.row_mode == kRowIndex ? &in.index : nullptr;
    in.options.lanes = kLaneChoices[rng.below(9)];
    in.options.chunk_size = rng.chance(0.7) ? kDefaultChunkSize : static_cast<uint32_t>(1000 + rng.below(4000));
    in.options.checksum = false;
    std::vector<int64_t> v(count);
    for (uint64_t i = 0; i < count; ++i) {
      const size_t r = row_of(in.shape, in.row_mode, in.index.data(), i);
      // Uniform over the row's values: rare symbols cost a whole word each.
      v[i] = rng.chance(0.003) ? random_symbol(rng, *t, r, 1.0)
                               : t->offset(r) + static_cast<int64_t>(rng.below(t->length(r)));
    }
    SCOPED_TRACE("precision " + std::to_string(p) + " K " + std::to_string(k) + " lanes " +
                 std::to_string(in.options.lanes) + " n " + std::to_string(count));
    const TypedSymbols s = to_dtype(v, DType::kInt32);
    std::vector<uint8_t> frame;
    TC_ASSERT_OK(encode_frame(*t, s.data(), DType::kInt32, in, &frame));
    ASSERT_EQ(frame, reference_frame(*t, v, DType::kInt32, in));
    std::vector<int32_t> out;
    TC_ASSERT_OK(decode_bytes(frame, *t, index, &out));
    ASSERT_EQ(out, as_i32(v));
    // Corrupt words inside the payload: never a crash, and anything accepted must be the
    // canonical frame of what it decoded to.
    // Past the header and shape; the flips may also hit the directory or the index check.
    const size_t payload = 48 + 8 * in.shape.size() + 4;
    for (int flip = 0; flip < 40; ++flip) {
      std::vector<uint8_t> g(frame);
      const size_t at = payload + rng.below(g.size() - payload);
      g[at] = static_cast<uint8_t>(g[at] ^ (1u << rng.below(8)));
      std::vector<int32_t> got;
      const Error e = decode_bytes(g, *t, index, &got);
      if (!e.ok()) continue;  // the usual case: a flipped word breaks the final-state check
      const TypedSymbols s2 = to_dtype(std::vector<int64_t>(got.begin(), got.end()), DType::kInt32);
      std::vector<uint8_t> again;
      TC_ASSERT_OK(encode_frame(*t, s2.data(), DType::kInt32, in, &again));
      ASSERT_EQ(again, g) << "a corrupted frame decoded to symbols that code differently";
    }
  }
}

TEST(Frame, ThreadsGiveIdenticalBytes) {
  Rng rng(32);
  for (int trial = 0; trial < 30; ++trial) {
    Case c = random_case(rng, 20000);
    c.in.options.chunk_size = static_cast<uint32_t>(1 + rng.below(3000));
    SCOPED_TRACE(case_name(c));
    std::vector<uint8_t> one, two, autom;
    c.in.options.threads = 1;
    TC_ASSERT_OK(encode_case(c, &one));
    c.in.options.threads = 2;
    TC_ASSERT_OK(encode_case(c, &two));
    c.in.options.threads = 0;
    TC_ASSERT_OK(encode_case(c, &autom));
    ASSERT_EQ(one, two);
    ASSERT_EQ(one, autom);
    for (int threads : {1, 2, 3}) {
      DecodeOptions o;
      o.threads = threads;
      std::vector<int32_t> out;
      TC_ASSERT_OK(decode_bytes(one, *c.table, index_of(c), &out, o));
      ASSERT_EQ(out, as_i32(c.values));
    }
  }
}

TEST(Frame, LargeInputUsesThreadsAndRoundTrips) {
  // Above the automatic threading threshold (2^20 symbols), several chunks.
  Rng rng(33);
  const TablePtr t = random_table(rng, {4, 12, 40});
  FrameInput in;
  in.shape = std::vector<uint64_t>{4, 300000};
  in.row_mode = 0;
  in.options.chunk_size = 1u << 18;
  std::vector<int64_t> v(1200000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = random_symbol(rng, *t, i / 300000, 0.001);
  const TypedSymbols s = to_dtype(v, DType::kInt32);
  std::vector<uint8_t> a, b;
  in.options.threads = 0;
  TC_ASSERT_OK(encode_frame(*t, s.data(), DType::kInt32, in, &a));
  in.options.threads = 1;
  TC_ASSERT_OK(encode_frame(*t, s.data(), DType::kInt32, in, &b));
  ASSERT_EQ(a, b);
  std::vector<int32_t> out;
  TC_ASSERT_OK(decode_bytes(a, *t, nullptr, &out));
  ASSERT_EQ(out, as_i32(v));
}

TEST(Frame, EveryDTypeWithExtremes) {
  const TablePtr t = table_from_freqs({{100, 50, 50, 30, 26}}, {-2}, 8);
  for (DType d : kAllDTypes) {
    SCOPED_TRACE(dtype_name(d));
    int64_t lo = 0, hi = 0;
    dtype_range(d, &lo, &hi);
    std::vector<int64_t> v = {lo, hi};
    for (int64_t x : {-2ll, -1ll, 0ll, 1ll, 2ll, 3ll, -3ll, 4ll, 5ll, 1000ll, -1000ll, 65536ll, -65537ll, 131072ll, 1ll << 30,
                      -(1ll << 30), static_cast<long long>(kI32Min) + 1, static_cast<long long>(kI32Max) - 1}) {
      v.push_back(std::clamp<int64_t>(x, lo, hi));
    }
    for (uint32_t lanes : {1u, 4u, 32u}) {
      FrameInput in;
      in.shape = std::vector<uint64_t>{v.size()};
      in.options.lanes = lanes;
      in.options.chunk_size = 7;
      const TypedSymbols s = to_dtype(v, d);
      std::vector<uint8_t> f;
      TC_ASSERT_OK(encode_frame(*t, s.data(), d, in, &f));
      EXPECT_EQ(f, reference_frame(*t, v, d, in));
      std::vector<int32_t> out;
      TC_ASSERT_OK(decode_bytes(f, *t, nullptr, &out));
      EXPECT_EQ(out, as_i32(v));
    }
  }
}

TEST(Frame, Int32ExtremesAgainstExtremeOffsets) {
  // Rows whose range touches either end of int32, coding both ends: the escape
  // distances reach 2^32 - 1 - K.
  for (int32_t off : {kI32Min, kI32Min + 1, -1, 0, kI32Max - 2, kI32Max - 3}) {
    for (uint32_t p : {2u, 9u, 16u}) {
      SCOPED_TRACE("offset " + std::to_string(off) + " precision " + std::to_string(p));
      const uint32_t m = 1u << p;
      const TablePtr t = table_from_freqs({{m - 3, 1, 1, 1}}, {off}, p);
      const std::vector<int64_t> v = {kI32Min, kI32Max, off, static_cast<int64_t>(off) + 2,
                                      kI32Min, kI32Max, kI32Max, kI32Min, 0};
      FrameInput in;
      in.shape = std::vector<uint64_t>{v.size()};
      in.options.lanes = 2;
      const TypedSymbols s = to_dtype(v, DType::kInt64);
      std::vector<uint8_t> f;
      TC_ASSERT_OK(encode_frame(*t, s.data(), DType::kInt64, in, &f));
      EXPECT_EQ(f, reference_frame(*t, v, DType::kInt64, in));
      std::vector<int32_t> out;
      TC_ASSERT_OK(decode_bytes(f, *t, nullptr, &out));
      EXPECT_EQ(out, as_i32(v));
    }
  }
}

TEST(Frame, ValuesOutsideInt32AreRejected) {
  const TablePtr t = table_from_freqs({{2, 1, 1}}, {0}, 2);
  FrameInput in;
  in.shape = std::vector<uint64_t>{3};
  std::vector<uint8_t> f;
  {
    const int64_t v[] = {0, 1, int64_t{kI32Max} + 1};
    EXPECT_EQ(encode_frame(*t, v, DType::kInt64, in, &f).status, Status::kInvalidArgument);
  }
  {
    const int64_t v[] = {int64_t{kI32Min} - 1, 0, 1};
    EXPECT_EQ(encode_frame(*t, v, DType::kInt64, in, &f).status, Status::kInvalidArgument);
  }
  {
    const uint32_t v[] = {0, 0x80000000u, 1};
    EXPECT_EQ(encode_frame(*t, v, DType::kUInt32, in, &f).status, Status::kInvalidArgument);
  }
  {
    const uint64_t v[] = {0, 1, ~0ull};  // wraps to -1 as int64: still not an int32 value
    EXPECT_EQ(encode_frame(*t, v, DType::kUInt64, in, &f).status, Status::kInvalidArgument);
  }
  {
    const TablePtr neg = table_from_freqs({{2, 1, 1}}, {-1}, 2);
    const uint64_t v[] = {0, 1, ~0ull};  // -1 would be in range if it were signed
    EXPECT_EQ(encode_frame(*neg, v, DType::kUInt64, in, &f).status, Status::kInvalidArgument);
  }
}

TEST(Frame, IndexAndChannelModes) {
  Rng rng(34);
  const TablePtr t = random_table(rng, {5, 11, 30});
  // Channel axis: every axis of a 3-D shape whose size equals the table's rows.
  for (uint8_t axis = 0; axis < 3; ++axis) {
    std::vector<uint64_t> shape = {3, 4, 2};
    shape[axis] = 5;
    FrameInput in;
    in.shape = shape;
    in.row_mode = axis;
    in.options.lanes = 4;
    in.options.chunk_size = 9;
    std::vector<int64_t> v(count_of(shape));
    for (size_t i = 0; i < v.size(); ++i) v[i] = random_symbol(rng, *t, row_of(shape, axis, nullptr, i), 0.1);
    const TypedSymbols s = to_dtype(v, DType::kInt32);
    std::vector<uint8_t> f;
    TC_ASSERT_OK(encode_frame(*t, s.data(), DType::kInt32, in, &f));
    EXPECT_EQ(f, reference_frame(*t, v, DType::kInt32, in));
    std::vector<int32_t> out;
    TC_ASSERT_OK(decode_bytes(f, *t, nullptr, &out));
    EXPECT_EQ(out, as_i32(v));
    // Decoding with an index when the frame uses a channel axis is a caller error.
    std::vector<int32_t> idx(v.size(), 0);
    EXPECT_EQ(decode_bytes(f, *t, &idx, &out).status, Status::kInvalidArgument);
  }
  // Wrong channel count, axis out of range, single-row mode on a multi-row table.
  {
    FrameInput in;
    in.shape = std::vector<uint64_t>{4, 4};
    in.row_mode = 1;
    const std::vector<int32_t> v(16, 0);
    std::vector<uint8_t> f;
    EXPECT_EQ(encode_frame(*t, v.data(), DType::kInt32, in, &f).status, Status::kInvalidArgument);
    in.row_mode = 2;
    EXPECT_EQ(encode_frame(*t, v.data(), DType::kInt32, in, &f).status, Status::kInvalidArgument);
    in.row_mode = kRowSingle;
    EXPECT_EQ(encode_frame(*t, v.data(), DType::kInt32, in, &f).status, Status::kInvalidArgument);
    in.row_mode = kRowIndex;  // no index
    EXPECT_EQ(encode_frame(*t, v.data(), DType::kInt32, in, &f).status, Status::kInvalidArgument);
    in.index.assign(16, 0);
    in.index[7] = 5;  // not a row
    EXPECT_EQ(encode_frame(*t, v.data(), DType::kInt32, in, &f).status, Status::kInvalidArgument);
    in.index[7] = -1;
    EXPECT_EQ(encode_frame(*t, v.data(), DType::kInt32, in, &f).status, Status::kInvalidArgument);
  }
  // Index mode: decoding needs the same index.
  {
    FrameInput in;
    in.shape = std::vector<uint64_t>{200};
    in.row_mode = kRowIndex;
    in.index.resize(200);
    for (auto& i : in.index) i = static_cast<int32_t>(rng.below(5));
    std::vector<int64_t> v(200);
    for (size_t i = 0; i < v.size(); ++i) v[i] = random_symbol(rng, *t, static_cast<size_t>(in.index[i]), 0.05);
    const TypedSymbols s = to_dtype(v, DType::kInt32);
    std::vector<uint8_t> f;
    TC_ASSERT_OK(encode_frame(*t, s.data(), DType::kInt32, in, &f));
    std::vector<int32_t> out;
    TC_ASSERT_OK(decode_bytes(f, *t, &in.index, &out));
    EXPECT_EQ(out, as_i32(v));
    EXPECT_EQ(decode_bytes(f, *t, nullptr, &out).status, Status::kInvalidArgument);
    std::vector<int32_t> short_idx(in.index.begin(), in.index.end() - 1);
    EXPECT_EQ(decode_bytes(f, *t, &short_idx, &out).status, Status::kInvalidArgument);
    std::vector<int32_t> bad_idx(in.index);
    bad_idx[3] = 9;
    EXPECT_EQ(decode_bytes(f, *t, &bad_idx, &out).status, Status::kInvalidArgument);
    // The frame carries a CRC32C of the index: another valid index is a mismatch.
    std::vector<int32_t> other(in.index);
    other[rng.below(other.size())] ^= 1;
    for (auto& i : other) i %= 5;
    if (other != in.index) {
      const Error e = decode_bytes(f, *t, &other, &out);
      EXPECT_EQ(e.status, Status::kTableMismatch) << describe(e);
    }
    FrameHeader h;
    TC_ASSERT_OK(parse_frame(f.data(), f.size(), {}, &h));
    EXPECT_EQ(h.index_checksum, crc32c(reinterpret_cast<const uint8_t*>(in.index.data()), 4 * in.index.size()));
  }
}

TEST(Frame, EmptyAndScalarTensors) {
  const TablePtr t = table_from_freqs({{2, 1, 1}}, {0}, 2);
  for (const std::vector<uint64_t>& shape :
       std::vector<std::vector<uint64_t>>{{}, {0}, {3, 0, 2}, {1}, {1, 1, 1}}) {
    FrameInput in;
    in.shape = shape;
    const uint64_t n = count_of(shape);
    const std::vector<int32_t> v(n, 1);
    std::vector<uint8_t> f;
    TC_ASSERT_OK(encode_frame(*t, v.data(), DType::kInt32, in, &f));
    std::vector<int32_t> out;
    FrameHeader h;
    TC_ASSERT_OK(decode_bytes(f.data(), f.size(), *t, nullptr, &out, {}, &h));
    EXPECT_EQ(out, v);
    EXPECT_EQ(h.shape, shape);
    EXPECT_EQ(h.num_chunks, n ? 1u : 0u);
  }
}

TEST(Frame, CallerErrors) {
  const TablePtr t = table_from_freqs({{2, 1, 1}}, {0}, 2);
  const std::vector<int32_t> v(10, 1);
  FrameInput in;
  in.shape = std::vector<uint64_t>{10};
  std::vector<uint8_t> f;
  for (uint32_t lanes : {0u, 3u, 512u, 6u}) {
    in.options.lanes = lanes;
    EXPECT_EQ(encode_frame(*t, v.data(), DType::kInt32, in, &f).status, Status::kInvalidArgument) << lanes;
  }
  in.options.lanes = 4;
  in.options.chunk_size = 0;
  EXPECT_EQ(encode_frame(*t, v.data(), DType::kInt32, in, &f).status, Status::kInvalidArgument);
  in.options.chunk_size = 4;
  EXPECT_EQ(encode_frame(*t, v.data(), static_cast<DType>(9), in, &f).status, Status::kInvalidArgument);
  EXPECT_EQ(encode_frame(*t, v.data(), static_cast<DType>(0), in, &f).status, Status::kInvalidArgument);
  FrameInput many = in;
  many.shape.assign(17, 1);
  EXPECT_EQ(encode_frame(*t, v.data(), DType::kInt32, many, &f).status, Status::kInvalidArgument);
  FrameInput big = in;
  big.shape = std::vector<uint64_t>{1ull << 32, 1ull << 32};
  EXPECT_EQ(encode_frame(*t, v.data(), DType::kInt32, big, &f).status, Status::kInvalidArgument);
  FrameInput odd = in;
  odd.options.kind = static_cast<FrameKind>(7);
  EXPECT_EQ(encode_frame(*t, v.data(), DType::kInt32, odd, &f).status, Status::kInvalidArgument);
  FrameInput fat = in;
  fat.meta.assign(kMaxMetaBytes + 1, 0);
  EXPECT_EQ(encode_frame(*t, v.data(), DType::kInt32, fat, &f).status, Status::kInvalidArgument);

  FrameEncoder enc;
  std::vector<uint8_t> buf(8);
  EXPECT_EQ(enc.write(buf.data(), buf.size()).status, Status::kInvalidArgument);  // nothing encoded
  SymbolLayout layout{in.shape.data(), in.shape.size(), kRowSingle, nullptr};
  TC_ASSERT_OK(enc.encode(*t, v.data(), DType::kInt32, layout, nullptr, 0, in.options));
  buf.assign(enc.size() - 1, 0);
  EXPECT_EQ(enc.write(buf.data(), buf.size()).status, Status::kBufferTooSmall);
  buf.assign(enc.size(), 0);
  TC_ASSERT_OK(enc.write(buf.data(), buf.size()));

  // Output of the wrong size, a limit, a sparse-update frame.
  FrameHeader h;
  TC_ASSERT_OK(parse_frame(buf.data(), buf.size(), {}, &h));
  std::vector<int32_t> out(9);
  EXPECT_EQ(decode_frame(h, *t, nullptr, 0, out.data(), out.size(), {}).status, Status::kBufferTooSmall);
  DecodeOptions lim;
  lim.max_symbols = 9;
  EXPECT_EQ(parse_frame(buf.data(), buf.size(), lim, &h).status, Status::kLimitExceeded);
  lim.max_symbols = 10;
  TC_EXPECT_OK(parse_frame(buf.data(), buf.size(), lim, &h));
  in.options.kind = FrameKind::kSparseUpdate;
  TC_ASSERT_OK(encode_frame(*t, v.data(), DType::kInt32, in, &f));
  TC_ASSERT_OK(parse_frame(f.data(), f.size(), {}, &h));
  EXPECT_EQ(h.kind, FrameKind::kSparseUpdate);
  out.resize(10);
  EXPECT_EQ(decode_frame(h, *t, nullptr, 0, out.data(), out.size(), {}).status, Status::kInvalidArgument);
  EXPECT_EQ(parse_frame(nullptr, 5, {}, &h).status, Status::kInvalidArgument);
  EXPECT_EQ(parse_frame(nullptr, 0, {}, &h).status, Status::kCorruptStream);
}

TEST(Frame, OtherTableGivesTableMismatch) {
  Rng rng(35);
  const TablePtr a = table_from_freqs({{5, 2, 8, 1}}, {0}, 4);
  const TablePtr b = table_from_freqs({{5, 3, 7, 1}}, {0}, 4);  // same shape, other freqs
  const TablePtr c = table_from_freqs({{5, 2, 8, 1}}, {1}, 4);  // other offset
  const TablePtr d = table_from_freqs({{10, 4, 16, 2}}, {0}, 5);
  std::vector<int32_t> v(100);
  for (auto& x : v) x = static_cast<int32_t>(rng.below(3));
  FrameInput in;
  in.shape = std::vector<uint64_t>{100};
  std::vector<uint8_t> f;
  TC_ASSERT_OK(encode_frame(*a, v.data(), DType::kInt32, in, &f));
  std::vector<int32_t> out;
  for (const TablePtr& other : {b, c, d}) {
    const Error e = decode_bytes(f, *other, nullptr, &out);
    EXPECT_EQ(e.status, Status::kTableMismatch) << describe(e);
    EXPECT_NE(e.message.find("fingerprint"), std::string::npos) << e.message;
  }
  // A deserialized copy of the right table is accepted.
  TablePtr copy;
  TC_ASSERT_OK(CdfTable::deserialize(a->serialized().data(), a->serialized().size(), &copy));
  TC_ASSERT_OK(decode_bytes(f, *copy, nullptr, &out));
  EXPECT_EQ(out, v);
}

// A modest, varied set of frames for the corruption tests (checksummed or not).
std::vector<Case> corruption_cases(bool checksum) {
  Rng rng(checksum ? 40 : 41);
  std::vector<Case> cases;
  for (int i = 0; i < 6; ++i) {
    Case c = random_case(rng, 150);
    if (c.values.empty()) continue;
    c.in.options.checksum = checksum;
    c.in.options.chunk_size = static_cast<uint32_t>(1 + rng.below(60));
    c.in.options.lanes = kLaneChoices[rng.below(4)];
    cases.push_back(std::move(c));
  }
  // Plus one with escapes and a meta block, two chunks, 2 lanes.
  Case c;
  c.table = table_from_freqs({{5, 2, 8, 1}}, {-1}, 4);
  c.values = {-1, 1, 1, 0, kI32Max, kI32Min, 1, 100000, 0, 0, 1};
  c.in.shape = std::vector<uint64_t>{11};
  c.in.meta = {1, 2, 3};
  c.in.options.lanes = 2;
  c.in.options.chunk_size = 6;
  c.in.options.checksum = checksum;
  cases.push_back(c);
  return cases;
}

TEST(Frame, EveryTruncationIsRejected) {
  // docs/format.md section 4: without a checksum every cut is corrupt_stream. With one,
  // the CRC is checked first (step 5), so a cut that leaves at least 52 bytes is
  // checksum_mismatch (ChecksumError, a CorruptStreamError in Python) and a shorter one
  // corrupt_stream.
  for (bool checksum : {true, false}) {
    for (const Case& c : corruption_cases(checksum)) {
      SCOPED_TRACE(std::string(checksum ? "checksum, " : "no checksum, ") + case_name(c));
      std::vector<uint8_t> f;
      TC_ASSERT_OK(encode_case(c, &f));
      for (size_t len = 0; len < f.size(); ++len) {
        std::vector<uint8_t> cut(f.begin(), f.begin() + static_cast<std::ptrdiff_t>(len));
        std::vector<int32_t> out;
        const Error e = decode_bytes(cut.data(), cut.size(), *c.table, index_of(c), &out);
        const Status want =
            checksum && len >= kFixedHeaderSize + 4 ? Status::kChecksumMismatch : Status::kCorruptStream;
        ASSERT_EQ(e.status, want) << "frame of " << f.size() << " bytes cut to " << len << ": "
                                  << describe(e);
      }
    }
  }
}

TEST(Frame, TrailingBytesAreRejected) {
  for (const Case& c : corruption_cases(false)) {
    std::vector<uint8_t> f;
    TC_ASSERT_OK(encode_case(c, &f));
    for (size_t extra : {1u, 2u, 4u}) {
      std::vector<uint8_t> g(f);
      g.insert(g.end(), extra, 0);
      std::vector<int32_t> out;
      EXPECT_EQ(decode_bytes(g, *c.table, index_of(c), &out).status, Status::kCorruptStream) << extra;
    }
  }
}

TEST(Frame, EveryBitFlipIsDetected) {
  for (const Case& c : corruption_cases(true)) {
    SCOPED_TRACE(case_name(c));
    std::vector<uint8_t> f;
    TC_ASSERT_OK(encode_case(c, &f));
    for (size_t bit = 0; bit < f.size() * 8; ++bit) {
      std::vector<uint8_t> g(f);
      g[bit / 8] = static_cast<uint8_t>(g[bit / 8] ^ (1u << (bit % 8)));
      std::vector<int32_t> out;
      const Error e = decode_bytes(g.data(), g.size(), *c.table, index_of(c), &out);
      ASSERT_TRUE(e.status == Status::kChecksumMismatch || e.status == Status::kCorruptStream ||
                  e.status == Status::kUnsupportedVersion)
          << "bit " << bit << " of " << f.size() * 8 << ": " << describe(e);
    }
  }
}

TEST(Frame, BitFlipsWithoutChecksumNeverCrash) {
  // Without a CRC, a flip in the payload may decode to other symbols; it must never
  // read out of bounds, and a success must re-encode to the same bytes (the decoder
  // only accepts canonical streams).
  int accepted = 0;
  for (const Case& c : corruption_cases(false)) {
    SCOPED_TRACE(case_name(c));
    std::vector<uint8_t> f;
    TC_ASSERT_OK(encode_case(c, &f));
    for (size_t bit = 0; bit < f.size() * 8; ++bit) {
      std::vector<uint8_t> g(f);
      g[bit / 8] = static_cast<uint8_t>(g[bit / 8] ^ (1u << (bit % 8)));
      std::vector<int32_t> out;
      FrameHeader h;
      const Error e = decode_bytes(g.data(), g.size(), *c.table, index_of(c), &out, {}, &h);
      if (!e.ok()) {
        EXPECT_FALSE(e.message.empty()) << "bit " << bit;
        continue;
      }
      ++accepted;
      FrameInput in = c.in;
      in.shape = h.shape;
      in.row_mode = h.row_mode;
      in.meta.assign(h.meta, h.meta + h.meta_length);
      in.options.lanes = h.lanes;
      in.options.chunk_size = h.chunk_size;
      in.options.checksum = (h.flags & kFlagChecksum) != 0;
      in.options.kind = h.kind;
      std::vector<uint8_t> again;
      TC_ASSERT_OK(encode_frame(*c.table, out.data(), DType::kInt32, in, &again));
      again[12] = static_cast<uint8_t>(h.dtype);
      ASSERT_EQ(again, g) << "bit " << bit << " decoded but the symbols re-encode differently";
    }
  }
  EXPECT_GT(accepted, 0);
}

std::vector<uint8_t> hostile_header(uint64_t symbols, uint32_t chunk_size, bool checksum) {
  std::vector<uint8_t> f = {'T', 'C', 'D', 'C', 1, 1};
  put_le<uint16_t>(f, checksum ? 1 : 0);
  put_le<uint32_t>(f, 56);  // 48 + one dim
  f.push_back(static_cast<uint8_t>(DType::kInt32));
  f.push_back(1);  // ndim
  f.push_back(kRowSingle);
  f.push_back(8);  // precision
  put_le<uint16_t>(f, 32);
  put_le<uint16_t>(f, 0);
  put_le<uint32_t>(f, chunk_size);
  put_le<uint64_t>(f, 0x1234);
  put_le<uint64_t>(f, symbols);
  put_le<uint32_t>(f, static_cast<uint32_t>((symbols + chunk_size - 1) / chunk_size));
  put_le<uint32_t>(f, 0);
  put_le<uint64_t>(f, symbols);
  if (checksum) put_le<uint32_t>(f, crc32c(f.data(), f.size()));
  return f;
}

TEST(Frame, HugeClaimsFailFast) {
  const auto t0 = std::chrono::steady_clock::now();
  const TablePtr t = table_from_freqs({{200, 56}}, {0}, 8);
  for (uint32_t chunk : {1u << 20, 0xFFFFFFFFu, 1u << 30}) {
    const std::vector<uint8_t> f = hostile_header(1ull << 40, chunk, true);
    ASSERT_EQ(f.size(), 60u);
    FrameHeader h;
    Error e = parse_frame(f.data(), f.size(), {}, &h);
    EXPECT_TRUE(e.status == Status::kLimitExceeded || e.status == Status::kCorruptStream) << describe(e);
    DecodeOptions unlimited;
    unlimited.max_symbols = ~0ull;
    e = parse_frame(f.data(), f.size(), unlimited, &h);
    EXPECT_EQ(e.status, Status::kCorruptStream) << describe(e);
    std::vector<int32_t> out;
    e = decode_bytes(f.data(), f.size(), *t, nullptr, &out, unlimited);
    EXPECT_EQ(e.status, Status::kCorruptStream) << describe(e);
  }
  // The shape and the count disagree.
  std::vector<uint8_t> f = hostile_header(1ull << 40, 1u << 20, false);
  f[48 + 5] ^= 1;  // shape 2^40 + 2^40
  FrameHeader h;
  DecodeOptions unlimited;
  unlimited.max_symbols = ~0ull;
  EXPECT_EQ(parse_frame(f.data(), f.size(), unlimited, &h).status, Status::kCorruptStream);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 1.0);
}

TEST(Frame, HeaderFieldValidation) {
  const TablePtr t = table_from_freqs({{5, 2, 8, 1}}, {0}, 4);
  const std::vector<int32_t> v = {0, 1, 2, 0, 1, 2, 0};
  FrameInput in;
  in.shape = std::vector<uint64_t>{7};
  in.options.lanes = 2;
  in.options.checksum = false;
  std::vector<uint8_t> f;
  TC_ASSERT_OK(encode_frame(*t, v.data(), DType::kInt32, in, &f));
  const auto status_with = [&](size_t at, uint8_t value) {
    std::vector<uint8_t> g(f);
    g[at] = value;
    FrameHeader h;
    return parse_frame(g.data(), g.size(), {}, &h).status;
  };
  EXPECT_EQ(status_with(0, 'X'), Status::kCorruptStream);           // magic
  EXPECT_EQ(status_with(4, 0), Status::kUnsupportedVersion);        // version
  EXPECT_EQ(status_with(4, 2), Status::kUnsupportedVersion);
  EXPECT_EQ(status_with(5, 0), Status::kCorruptStream);             // kind
  EXPECT_EQ(status_with(5, 3), Status::kCorruptStream);
  EXPECT_EQ(status_with(6, 2), Status::kCorruptStream);             // unknown flag
  EXPECT_EQ(status_with(7, 0x80), Status::kCorruptStream);
  EXPECT_EQ(status_with(8, 57), Status::kCorruptStream);            // header length
  EXPECT_EQ(status_with(12, 0), Status::kCorruptStream);            // dtype
  EXPECT_EQ(status_with(12, 9), Status::kCorruptStream);
  EXPECT_EQ(status_with(13, 17), Status::kCorruptStream);           // ndim
  EXPECT_EQ(status_with(14, 1), Status::kCorruptStream);            // channel axis >= ndim
  EXPECT_EQ(status_with(15, 0), Status::kCorruptStream);            // precision
  EXPECT_EQ(status_with(15, 17), Status::kCorruptStream);
  EXPECT_EQ(status_with(16, 3), Status::kCorruptStream);            // lanes
  EXPECT_EQ(status_with(16, 0), Status::kCorruptStream);
  EXPECT_EQ(status_with(17, 2), Status::kCorruptStream);            // 512 lanes
  EXPECT_EQ(status_with(18, 1), Status::kCorruptStream);            // reserved
  EXPECT_EQ(status_with(22, 0), Status::kCorruptStream);            // chunk size 0 (2^20 -> 0)
  EXPECT_EQ(status_with(40, 2), Status::kCorruptStream);            // chunk count
  EXPECT_EQ(status_with(44, 1), Status::kCorruptStream);            // meta length
  EXPECT_EQ(status_with(47, 1), Status::kCorruptStream);            // meta length > 1 MiB
  {
    FrameHeader h;
    TC_ASSERT_OK(parse_frame(f.data(), f.size(), {}, &h));
    std::vector<int32_t> out(7);
    // The precision field must match the table's (the fingerprint alone cannot tell).
    std::vector<uint8_t> g(f);
    g[15] = 5;
    TC_ASSERT_OK(parse_frame(g.data(), g.size(), {}, &h));
    EXPECT_EQ(decode_frame(h, *t, nullptr, 0, out.data(), out.size(), {}).status, Status::kCorruptStream);
  }
  // A chunk whose first lane state is below 2^16, and a chunk with a trailing word.
  {
    std::vector<uint8_t> g(f);
    const size_t payload = 48 + 8 + 4;
    g[payload + 2] = 0;
    g[payload + 3] = 0;
    std::vector<int32_t> out;
    EXPECT_EQ(decode_bytes(g, *t, nullptr, &out).status, Status::kCorruptStream);
  }
}

TEST(Frame, RandomGarbageNeverCrashes) {
  Rng rng(42);
  const TablePtr t = table_from_freqs({{5, 2, 8, 1}}, {-1}, 4);
  const std::vector<int64_t> v = {-1, 1, 1, 0, kI32Max, kI32Min, 1, 100000, 0, 0, 1, 2, 2, -1};
  FrameInput in;
  in.shape = std::vector<uint64_t>{14};
  in.options.lanes = 4;
  in.options.chunk_size = 5;
  in.options.checksum = false;
  const TypedSymbols s = to_dtype(v, DType::kInt32);
  std::vector<uint8_t> base;
  TC_ASSERT_OK(encode_frame(*t, s.data(), DType::kInt32, in, &base));
  const size_t payload_at = 48 + 8 + 4 * 3;
  for (int trial = 0; trial < 30000; ++trial) {
    std::vector<uint8_t> g(base);
    const int edits = 1 + static_cast<int>(rng.below(4));
    for (int k = 0; k < edits; ++k) {
      // Mostly the payload, where no structural check stops the decoder early.
      const size_t at = rng.chance(0.8) ? payload_at + rng.below(g.size() - payload_at) : rng.below(g.size());
      g[at] = static_cast<uint8_t>(rng.u32());
    }
    std::vector<int32_t> out;
    const Error e = decode_bytes(g, *t, nullptr, &out);
    if (!e.ok()) {
      ASSERT_FALSE(e.message.empty());
    }
  }
}

TEST(Status, NamesAreStable) {
  const std::pair<Status, const char*> names[] = {
      {Status::kOk, "ok"},
      {Status::kInvalidArgument, "invalid_argument"},
      {Status::kCorruptStream, "corrupt_stream"},
      {Status::kChecksumMismatch, "checksum_mismatch"},
      {Status::kTableMismatch, "table_mismatch"},
      {Status::kUnsupportedVersion, "unsupported_version"},
      {Status::kLimitExceeded, "limit_exceeded"},
      {Status::kBufferTooSmall, "buffer_too_small"},
      {Status::kOutOfMemory, "out_of_memory"},
      {Status::kInternal, "internal"},
  };
  int number = 0;
  for (const auto& [s, name] : names) {
    EXPECT_EQ(static_cast<int>(s), number++) << name << ": status numbers are ABI";
    EXPECT_STREQ(status_name(s), name);
  }
  EXPECT_STREQ(status_name(static_cast<Status>(10)), "unknown_status");
  EXPECT_STREQ(status_name(static_cast<Status>(-1)), "unknown_status");
  Error ok;
  EXPECT_TRUE(ok.ok());
  EXPECT_FALSE(static_cast<bool>(ok));
  Error bad(Status::kInternal, "x");
  EXPECT_FALSE(bad.ok());
  EXPECT_TRUE(static_cast<bool>(bad));
}

TEST(Status, DTypeNamesAndVersion) {
  const char* names[] = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"};
  for (int code = 0; code < 256; ++code) {
    EXPECT_EQ(dtype_valid(static_cast<uint8_t>(code)), code >= 1 && code <= 8) << code;
  }
  for (int code = 1; code <= 8; ++code) {
    EXPECT_STREQ(dtype_name(static_cast<DType>(code)), names[code - 1]);
  }
  EXPECT_STREQ(dtype_name(static_cast<DType>(0)), "unknown");
  EXPECT_EQ(version_number(), static_cast<unsigned>(TASKCODEC_VERSION_NUMBER));
  EXPECT_EQ(std::string(version_string()), std::to_string(TASKCODEC_VERSION_MAJOR) + "." +
                                               std::to_string(TASKCODEC_VERSION_MINOR) + "." +
                                               std::to_string(TASKCODEC_VERSION_PATCH));
  EXPECT_EQ(kFormatVersion, 1u);
}

}  // namespace
}  // namespace tctest
