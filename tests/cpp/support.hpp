// Helpers shared by the C++ tests: a seeded RNG, random tables and symbols, frame
// encode / decode wrappers (the reference encoder is in reference_coder.hpp).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "taskcodec/checksum.hpp"
#include "taskcodec/frame.hpp"
#include "taskcodec/rans.hpp"
#include "taskcodec/status.hpp"
#include "taskcodec/table.hpp"
#include "reference_coder.hpp"

namespace tctest {

using namespace taskcodec;  // NOLINT(google-build-using-namespace): test code only
using TablePtr = std::shared_ptr<const CdfTable>;

inline constexpr int32_t kI32Min = std::numeric_limits<int32_t>::min();
inline constexpr int32_t kI32Max = std::numeric_limits<int32_t>::max();

// gtest-friendly rendering of an Error.
inline std::string describe(const Error& e) {
  return std::string(status_name(e.status)) + (e.message.empty() ? "" : ": " + e.message);
}

#define TC_ASSERT_OK(expr)                                              \
  do {                                                                  \
    const ::taskcodec::Error tc_err_ = (expr);                          \
    ASSERT_TRUE(tc_err_.ok()) << #expr << " -> " << ::tctest::describe(tc_err_); \
  } while (0)

#define TC_EXPECT_OK(expr)                                              \
  do {                                                                  \
    const ::taskcodec::Error tc_err_ = (expr);                          \
    EXPECT_TRUE(tc_err_.ok()) << #expr << " -> " << ::tctest::describe(tc_err_); \
  } while (0)

class Rng {
 public:
  explicit Rng(uint64_t seed) : g_(seed) {}
  uint64_t u64() { return g_(); }
  uint32_t u32() { return static_cast<uint32_t>(g_() >> 32); }
  // Uniform in [0, n), n >= 1.
  uint64_t below(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(g_); }
  // Uniform in [lo, hi].
  int64_t range(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(g_); }
  double unit() { return std::uniform_real_distribution<double>(0.0, 1.0)(g_); }
  bool chance(double p) { return unit() < p; }
  std::mt19937_64& engine() { return g_; }

 private:
  std::mt19937_64 g_;
};

// A table from explicit frequencies; fails the test on error.
inline TablePtr table_from_freqs(const std::vector<std::vector<uint32_t>>& rows,
                                 const std::vector<int32_t>& offsets, uint32_t precision) {
  std::vector<uint32_t> flat;
  std::vector<uint32_t> lengths;
  for (const auto& r : rows) {
    flat.insert(flat.end(), r.begin(), r.end());
    lengths.push_back(static_cast<uint32_t>(r.size() - 1));
  }
  TablePtr t;
  const Error e = CdfTable::from_freqs(flat.data(), flat.size(), rows.size(), offsets.data(),
                                       lengths.data(), precision, &t);
  EXPECT_TRUE(e.ok()) << describe(e);
  return t;
}

// A random pmf of width k: peaked, flat, sparse (many zeros) or spiky.
inline std::vector<double> random_pmf(Rng& rng, size_t k) {
  std::vector<double> p(k, 0.0);
  const uint64_t kind = rng.below(4);
  const double center = rng.unit() * static_cast<double>(k);
  const double width = 0.5 + rng.unit() * static_cast<double>(k) / 3.0;
  for (size_t i = 0; i < k; ++i) {
    switch (kind) {
      case 0: {
        const double z = (static_cast<double>(i) - center) / width;
        p[i] = std::exp(-0.5 * z * z);
        break;
      }
      case 1: p[i] = 1.0; break;
      case 2: p[i] = rng.chance(0.3) ? rng.unit() : 0.0; break;
      default: p[i] = rng.chance(0.05) ? 1000.0 * rng.unit() : 1e-6 * rng.unit(); break;
    }
  }
  return p;
}

// A random offset such that offset + k - 1 fits in int32, sometimes at the extremes.
inline int32_t random_offset(Rng& rng, uint32_t k) {
  switch (rng.below(8)) {
    case 0: return kI32Min;
    case 1: return static_cast<int32_t>(static_cast<int64_t>(kI32Max) - k + 1);
    case 2: return 0;
    default: return static_cast<int32_t>(rng.range(-300, 300)) - static_cast<int32_t>(k / 2);
  }
}

struct TableSpec {
  size_t rows = 1;
  uint32_t precision = 12;
  uint32_t max_k = 64;
};

// A random table built with from_pmf (random lengths, offsets, escape weights).
inline TablePtr random_table(Rng& rng, const TableSpec& spec) {
  const uint32_t slots = 1u << spec.precision;
  const uint32_t kmax = std::max<uint32_t>(1, std::min(spec.max_k, slots - 1));
  std::vector<uint32_t> lengths(spec.rows);
  for (auto& l : lengths) l = static_cast<uint32_t>(1 + rng.below(kmax));
  const size_t width = *std::max_element(lengths.begin(), lengths.end());
  std::vector<double> pmf(spec.rows * width, 0.0);
  std::vector<int32_t> offsets(spec.rows);
  std::vector<double> escape(spec.rows);
  for (size_t r = 0; r < spec.rows; ++r) {
    const auto p = random_pmf(rng, lengths[r]);
    std::copy(p.begin(), p.end(), pmf.begin() + static_cast<std::ptrdiff_t>(r * width));
    offsets[r] = random_offset(rng, lengths[r]);
    escape[r] = rng.chance(0.5) ? 0.0 : rng.unit() * 0.05;
  }
  const bool with_escape = rng.chance(0.5);
  const bool trim = rng.chance(0.3);
  TablePtr t;
  const Error e = CdfTable::from_pmf(pmf.data(), spec.rows, width, offsets.data(), lengths.data(),
                                     with_escape ? escape.data() : nullptr, spec.precision, &t, trim);
  EXPECT_TRUE(e.ok()) << describe(e);
  return t;
}

// Draws one symbol of row r: usually from the row's distribution, sometimes an escape.
inline int64_t random_symbol(Rng& rng, const CdfTable& t, size_t r, double escape_rate,
                             int64_t lo = kI32Min, int64_t hi = kI32Max) {
  const int64_t off = t.offset(r);
  const uint32_t k = t.length(r);
  if (rng.chance(escape_rate)) {
    // Escapes: near the range, far away, and the int32 extremes.
    int64_t v;
    switch (rng.below(6)) {
      case 0: v = lo; break;
      case 1: v = hi; break;
      case 2: v = off - 1 - static_cast<int64_t>(rng.below(40)); break;
      case 3: v = off + k + static_cast<int64_t>(rng.below(40)); break;
      case 4: v = off - 1 - static_cast<int64_t>(rng.below(1ull << rng.below(33))); break;
      default: v = off + k + static_cast<int64_t>(rng.below(1ull << rng.below(33))); break;
    }
    return std::clamp<int64_t>(v, lo, hi);
  }
  const uint32_t m = 1u << t.precision();
  uint32_t slot = static_cast<uint32_t>(rng.below(m));
  const uint32_t* f = t.freqs(r);
  uint32_t s = 0;
  while (slot >= f[s]) slot -= f[s++];
  if (s == k) s = static_cast<uint32_t>(rng.below(k));  // the escape slot: any in-range symbol
  return std::clamp<int64_t>(off + s, lo, hi);
}

// Symbols in a typed buffer, as the encoder takes them.
struct TypedSymbols {
  DType dtype = DType::kInt32;
  std::vector<uint8_t> bytes;
  const void* data() const { return bytes.data(); }
};

inline size_t dtype_size(DType d) {
  switch (d) {
    case DType::kInt8: case DType::kUInt8: return 1;
    case DType::kInt16: case DType::kUInt16: return 2;
    case DType::kInt32: case DType::kUInt32: return 4;
    case DType::kInt64: case DType::kUInt64: return 8;
  }
  return 0;
}

// Range of values of a dtype that the coder accepts (its intersection with int32).
inline void dtype_range(DType d, int64_t* lo, int64_t* hi) {
  switch (d) {
    case DType::kInt8: *lo = -128; *hi = 127; return;
    case DType::kUInt8: *lo = 0; *hi = 255; return;
    case DType::kInt16: *lo = -32768; *hi = 32767; return;
    case DType::kUInt16: *lo = 0; *hi = 65535; return;
    case DType::kInt32: case DType::kInt64: *lo = kI32Min; *hi = kI32Max; return;
    case DType::kUInt32: case DType::kUInt64: *lo = 0; *hi = kI32Max; return;
  }
}

template <class T>
void store_as(std::vector<uint8_t>& out, const std::vector<int64_t>& v) {
  out.resize(v.size() * sizeof(T));
  for (size_t i = 0; i < v.size(); ++i) {
    const T x = static_cast<T>(v[i]);
    std::memcpy(out.data() + i * sizeof(T), &x, sizeof(T));
  }
}

inline TypedSymbols to_dtype(const std::vector<int64_t>& v, DType d) {
  TypedSymbols s;
  s.dtype = d;
  switch (d) {
    case DType::kInt8: store_as<int8_t>(s.bytes, v); break;
    case DType::kUInt8: store_as<uint8_t>(s.bytes, v); break;
    case DType::kInt16: store_as<int16_t>(s.bytes, v); break;
    case DType::kUInt16: store_as<uint16_t>(s.bytes, v); break;
    case DType::kInt32: store_as<int32_t>(s.bytes, v); break;
    case DType::kUInt32: store_as<uint32_t>(s.bytes, v); break;
    case DType::kInt64: store_as<int64_t>(s.bytes, v); break;
    case DType::kUInt64: store_as<uint64_t>(s.bytes, v); break;
  }
  return s;
}

inline constexpr DType kAllDTypes[] = {DType::kInt8,  DType::kUInt8,  DType::kInt16, DType::kUInt16,
                                       DType::kInt32, DType::kUInt32, DType::kInt64, DType::kUInt64};

// Encodes and writes a frame; the Error is returned, bytes into *out.
inline Error encode_frame(const CdfTable& t, const void* symbols, DType dtype, const FrameInput& in,
                          std::vector<uint8_t>* out) {
  static const int32_t kNoSymbols = 0;  // a valid pointer for the index of an empty tensor
  FrameEncoder enc;
  const int32_t* index = in.index.empty() ? nullptr : in.index.data();
  if (in.row_mode == kRowIndex && in.index.empty() && count_of(in.shape) == 0) index = &kNoSymbols;
  SymbolLayout layout{in.shape.data(), in.shape.size(), in.row_mode, index};
  Error e = enc.encode(t, symbols, dtype, layout, in.meta.empty() ? nullptr : in.meta.data(),
                       in.meta.size(), in.options);
  if (e) return e;
  out->assign(enc.size(), 0);
  return enc.write(out->data(), out->size());
}

// parse_frame + decode_frame into *out.
inline Error decode_bytes(const uint8_t* data, size_t len, const CdfTable& t,
                          const std::vector<int32_t>* index, std::vector<int32_t>* out,
                          const DecodeOptions& options = {}, FrameHeader* header_out = nullptr) {
  static const int32_t kNoSymbols = 0;  // a valid pointer for an empty index
  const int32_t* idx = index ? (index->empty() ? &kNoSymbols : index->data()) : nullptr;
  const size_t idx_len = index ? index->size() : 0;
  FrameHeader h;
  if (Error e = parse_frame(data, len, options, &h)) return e;
  if (Error e = check_decode(h, t, idx, idx_len)) return e;
  out->assign(static_cast<size_t>(h.num_symbols), 0);
  Error e = decode_frame(h, t, idx, idx_len, out->data(), out->size(), options);
  if (header_out) *header_out = h;
  return e;
}

inline Error decode_bytes(const std::vector<uint8_t>& f, const CdfTable& t,
                          const std::vector<int32_t>* index, std::vector<int32_t>* out,
                          const DecodeOptions& options = {}) {
  return decode_bytes(f.data(), f.size(), t, index, out, options);
}

}  // namespace tctest
