// Shared by the fuzz targets and the seed corpus generator: the fixed tables that the
// frame fuzzers decode against, the index used with index-mode frames, fingerprint
// re-stamping, and the decode oracle (a frame that decodes must be the one frame the
// encoder writes for those symbols: docs/format.md section 11).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "taskcodec/checksum.hpp"
#include "taskcodec/frame.hpp"
#include "taskcodec/status.hpp"
#include "taskcodec/table.hpp"

namespace tcfuzz {

using namespace taskcodec;  // NOLINT(google-build-using-namespace): test code only
using TablePtr = std::shared_ptr<const CdfTable>;

// Frames may claim at most this many symbols (keeps every input's memory small).
inline constexpr uint64_t kMaxSymbols = 1u << 18;

[[noreturn]] inline void fail(const char* what, const Error& e = {}) {
  std::fprintf(stderr, "fuzz oracle failed: %s (%s: %s)\n", what, status_name(e.status),
               e.message.c_str());
  std::fflush(stderr);
  std::abort();
}

inline void check_ok(const Error& e, const char* what) {
  if (e) fail(what, e);
}

inline TablePtr make_freqs(const std::vector<std::vector<uint32_t>>& rows,
                           const std::vector<int32_t>& offsets, uint32_t precision) {
  std::vector<uint32_t> flat, lengths;
  for (const auto& r : rows) {
    flat.insert(flat.end(), r.begin(), r.end());
    lengths.push_back(static_cast<uint32_t>(r.size() - 1));
  }
  TablePtr t;
  check_ok(CdfTable::from_freqs(flat.data(), flat.size(), rows.size(), offsets.data(), lengths.data(),
                                precision, &t),
           "building a fixed table");
  return t;
}

inline TablePtr make_pmf(const std::vector<double>& pmf, size_t rows, size_t width,
                         const std::vector<int32_t>& offsets, uint32_t precision, bool trim) {
  TablePtr t;
  check_ok(CdfTable::from_pmf(pmf.data(), rows, width, offsets.data(), nullptr, nullptr, precision,
                              &t, trim),
           "building a fixed table");
  return t;
}

// A handful of tables that cover the decoder's cases: tiny and wide alphabets, 1- and
// 16-bit precision, skewed rows (long runs without words), several rows, extreme offsets.
inline const std::vector<TablePtr>& fixed_tables() {
  static const std::vector<TablePtr> tables = [] {
    std::vector<TablePtr> v;
    // 0: one row, precision 12, a peaked alphabet of 16 values around 0.
    {
      std::vector<double> p(16);
      for (size_t i = 0; i < p.size(); ++i) {
        const double d = static_cast<double>(i) - 8.0;
        p[i] = 1.0 / (1.0 + d * d);
      }
      v.push_back(make_pmf(p, 1, 16, {-8}, 12, false));
    }
    // 1: precision 1: one value and the escape, half the slots each.
    v.push_back(make_freqs({{1, 1}}, {0}, 1));
    // 2: precision 16, very skewed with many rare values (fine buckets), offset at INT32_MIN.
    {
      std::vector<uint32_t> f(600, 1);
      f[0] = 65536 - 599;
      v.push_back(make_freqs({f}, {std::numeric_limits<int32_t>::min()}, 16));
    }
    // 3: four rows of different lengths and precision 14 (channel axis or index).
    {
      const size_t width = 300;
      std::vector<double> p(4 * width, 0.0);
      for (size_t r = 0; r < 4; ++r) {
        for (size_t i = 0; i < width; ++i) {
          p[r * width + i] = (r % 2) ? 1.0 : 1.0 / static_cast<double>(1 + i * (r + 1));
        }
      }
      v.push_back(make_pmf(p, 4, width, {-150, 0, 7, std::numeric_limits<int32_t>::max() - 299}, 14, true));
    }
    // 4: three rows at precision 8 with 255 values each (every slot but the escape's).
    v.push_back(make_freqs({std::vector<uint32_t>(256, 1), std::vector<uint32_t>(256, 1),
                            std::vector<uint32_t>(256, 1)},
                           {-128, 0, 1000}, 8));
    return v;
  }();
  return tables;
}

// The index used by index-mode frames of the fuzzers and their seeds.
inline std::vector<int32_t> fixed_index(uint64_t n, size_t rows) {
  std::vector<int32_t> idx(static_cast<size_t>(n));
  for (uint64_t i = 0; i < n; ++i) idx[i] = static_cast<int32_t>((i * 7 + i / 5) % rows);
  return idx;
}

inline uint32_t index_crc(const std::vector<int32_t>& idx) {
  return crc32c(reinterpret_cast<const uint8_t*>(idx.data()), idx.size() * sizeof(int32_t));
}

template <class T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <class T>
void store(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

// Makes a mutated frame pass the checks that a fuzzer cannot satisfy by mutation:
// writes the table's fingerprint, the fixed index's CRC (index mode), then the CRC32C
// trailer (when the checksum flag is set). Every other field stays as fuzzed.
inline void restamp(std::vector<uint8_t>& f, const CdfTable& t) {
  if (f.size() < kFixedHeaderSize) return;
  store<uint64_t>(f.data() + 24, t.fingerprint());
  const uint32_t ndim = f[13];
  const uint64_t n = load<uint64_t>(f.data() + 32);
  const size_t at = kFixedHeaderSize + 8u * ndim;
  if (f[14] == kRowIndex && ndim <= kMaxDims && at + 4 <= f.size() && n <= kMaxSymbols) {
    store<uint32_t>(f.data() + at, index_crc(fixed_index(n, t.rows())));
  }
  if ((load<uint16_t>(f.data() + 6) & kFlagChecksum) && f.size() >= kFixedHeaderSize + 4) {
    store<uint32_t>(f.data() + f.size() - 4, crc32c(f.data(), f.size() - 4));
  }
}

// Parses and decodes a frame against `t` (fixed index for index mode). Whatever the
// result, checks what must hold: two threads agree with one, and a frame that decodes
// is byte for byte the frame the encoder writes for the decoded symbols.
inline Error decode_and_check(const uint8_t* data, size_t len, const CdfTable& t) {
  DecodeOptions opt;
  opt.max_symbols = kMaxSymbols;
  opt.threads = 1;
  FrameHeader h;
  if (Error e = parse_frame(data, len, opt, &h)) return e;
  const size_t n = static_cast<size_t>(h.num_symbols);
  std::vector<int32_t> index;
  static const int32_t kEmpty = 0;
  const int32_t* idx = nullptr;
  size_t idx_len = 0;
  if (h.row_mode == kRowIndex) {
    index = fixed_index(n, t.rows());
    idx = index.empty() ? &kEmpty : index.data();
    idx_len = n;
  }
  std::vector<int32_t> out(n);
  const Error e = decode_frame(h, t, idx, idx_len, out.data(), out.size(), opt);
  if (h.num_chunks > 1) {
    DecodeOptions two = opt;
    two.threads = 2;
    std::vector<int32_t> out2(n);
    const Error e2 = decode_frame(h, t, idx, idx_len, out2.data(), out2.size(), two);
    if (e2.status != e.status || e2.message != e.message) fail("threads change the decode error", e2);
    if (e.ok() && out2 != out) fail("threads change the decoded symbols");
  }
  if (e) {
    if (e.message.empty()) fail("an error without a message", e);
    return e;
  }
  // Canonical: re-encode the symbols with the frame's parameters.
  EncodeOptions eo;
  eo.lanes = h.lanes;
  eo.chunk_size = h.chunk_size;
  eo.checksum = (h.flags & kFlagChecksum) != 0;
  eo.threads = 1;
  eo.kind = h.kind;
  SymbolLayout layout{h.shape.data(), h.shape.size(), h.row_mode, idx};
  FrameEncoder enc;
  check_ok(enc.encode(t, out.data(), DType::kInt32, layout, h.meta, h.meta_length, eo),
           "decoded symbols do not re-encode");
  std::vector<uint8_t> again(enc.size());
  check_ok(enc.write(again.data(), again.size()), "writing the re-encoded frame");
  again[12] = static_cast<uint8_t>(h.dtype);  // dtype is descriptive; decoding gives int32
  if (eo.checksum) {
    store<uint32_t>(again.data() + again.size() - 4, crc32c(again.data(), again.size() - 4));
  }
  if (again.size() != len || std::memcmp(again.data(), data, len) != 0) {
    fail("the decoder accepted a frame that is not the canonical coding of its symbols");
  }
  return e;
}

// Writes a frame of int32 symbols.
inline std::vector<uint8_t> encode_frame(const CdfTable& t, const std::vector<int32_t>& v,
                                         const std::vector<uint64_t>& shape, uint8_t row_mode,
                                         const EncodeOptions& o, const std::vector<uint8_t>& meta = {}) {
  std::vector<int32_t> index;
  static const int32_t kEmpty = 0;
  const int32_t* idx = nullptr;
  if (row_mode == kRowIndex) {
    index = fixed_index(v.size(), t.rows());
    idx = index.empty() ? &kEmpty : index.data();
  }
  SymbolLayout layout{shape.data(), shape.size(), row_mode, idx};
  FrameEncoder enc;
  check_ok(enc.encode(t, v.data(), DType::kInt32, layout, meta.empty() ? nullptr : meta.data(),
                      meta.size(), o),
           "encoding a seed frame");
  std::vector<uint8_t> f(enc.size());
  check_ok(enc.write(f.data(), f.size()), "writing a seed frame");
  return f;
}

}  // namespace tcfuzz
