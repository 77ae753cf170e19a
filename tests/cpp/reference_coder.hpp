// An independent reference encoder of the frame format (docs/format.md, sections 3 and
// 7-10), written from the document with plain division and no precomputed reciprocals.
// The C++ tests and the round-trip fuzz target compare the library's bytes against it.
// No test framework here, so that fuzz targets can include it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "taskcodec/checksum.hpp"
#include "taskcodec/frame.hpp"
#include "taskcodec/rans.hpp"
#include "taskcodec/table.hpp"

namespace tctest {

using namespace taskcodec;  // NOLINT(google-build-using-namespace): test code only

// Row of flat symbol i for a layout (mirrors the format's row rules).
inline size_t row_of(const std::vector<uint64_t>& shape, uint8_t row_mode, const int32_t* index,
                     uint64_t i) {
  if (row_mode == kRowSingle) return 0;
  if (row_mode == kRowIndex) return static_cast<size_t>(index[i]);
  uint64_t inner = 1;
  for (size_t d = row_mode + 1u; d < shape.size(); ++d) inner *= shape[d];
  if (inner == 0) inner = 1;
  return static_cast<size_t>((i / inner) % shape[row_mode]);
}

inline uint64_t count_of(const std::vector<uint64_t>& shape) {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  return n;
}

struct FrameInput {
  std::vector<uint64_t> shape;
  uint8_t row_mode = kRowSingle;
  std::vector<int32_t> index;  // with kRowIndex
  std::vector<uint8_t> meta;
  EncodeOptions options;
};

// Encodes one chunk exactly as the format describes, with plain division: symbols are
// coded in reverse, symbol j of the chunk in lane j mod lanes; words go on a stack; the
// lanes' final states are flushed (lane 0 first in the output).
inline std::vector<uint8_t> reference_chunk(const CdfTable& t, const std::vector<int64_t>& values,
                                            const std::vector<size_t>& rows, uint32_t lanes) {
  const uint32_t p = t.precision();
  std::vector<uint32_t> st(lanes, kRansLow);
  std::vector<uint16_t> pushed;  // in push order
  std::vector<std::vector<uint32_t>> starts(t.rows());  // cumulative frequencies, per row on use
  auto put = [&](uint32_t& x, uint32_t freq, uint32_t start, uint32_t prec) {
    const uint64_t x_max = static_cast<uint64_t>(freq) << (32 - prec);
    if (x >= x_max) {
      pushed.push_back(static_cast<uint16_t>(x & 0xFFFFu));
      x >>= 16;
    }
    x = ((x / freq) << prec) + (x % freq) + start;
  };
  for (size_t j = values.size(); j-- > 0;) {
    const size_t r = rows[j];
    uint32_t& x = st[j % lanes];
    const int64_t v = values[j];
    const int64_t o = t.offset(r);
    const uint32_t k = t.length(r);
    const uint32_t* f = t.freqs(r);
    uint32_t sym;
    if (v >= o && v < o + k) {
      sym = static_cast<uint32_t>(v - o);
    } else {
      sym = k;
      const uint32_t sign = v < o ? 0u : 1u;
      const uint64_t d = v < o ? static_cast<uint64_t>(o - 1 - v) : static_cast<uint64_t>(v - o - k);
      uint32_t nbits = 0;
      for (uint64_t dd = d; dd; dd >>= 1) ++nbits;
      const uint32_t rest = nbits ? nbits - 1 : 0;
      const uint32_t lo_bits = std::min<uint32_t>(rest, 16);
      const uint32_t hi_bits = rest - lo_bits;
      if (hi_bits) put(x, 1, static_cast<uint32_t>(d >> 16) & ((1u << hi_bits) - 1u), hi_bits);
      if (lo_bits) put(x, 1, static_cast<uint32_t>(d) & ((1u << lo_bits) - 1u), lo_bits);
      put(x, 1, (sign << 6) | nbits, kEscapeHeaderBits);
    }
    std::vector<uint32_t>& cum = starts[r];
    if (cum.empty()) {
      cum.assign(k + 1, 0);
      for (uint32_t s = 1; s <= k; ++s) cum[s] = cum[s - 1] + f[s - 1];
    }
    put(x, f[sym], cum[sym], p);
  }
  std::vector<uint8_t> out;
  for (uint32_t l = 0; l < lanes; ++l) {
    for (int b = 0; b < 4; ++b) out.push_back(static_cast<uint8_t>(st[l] >> (8 * b)));
  }
  for (size_t i = pushed.size(); i-- > 0;) {
    out.push_back(static_cast<uint8_t>(pushed[i]));
    out.push_back(static_cast<uint8_t>(pushed[i] >> 8));
  }
  return out;
}

template <class T>
void put_le(std::vector<uint8_t>& out, T v) {
  for (size_t b = 0; b < sizeof(T); ++b) out.push_back(static_cast<uint8_t>(static_cast<uint64_t>(v) >> (8 * b)));
}

// A whole frame, written field by field from the format (header, directory, chunks, CRC).
inline std::vector<uint8_t> reference_frame(const CdfTable& t, const std::vector<int64_t>& values,
                                            DType dtype, const FrameInput& in) {
  const uint64_t n = values.size();
  const uint32_t cs = in.options.chunk_size;
  const uint32_t nc = static_cast<uint32_t>((n + cs - 1) / cs);
  std::vector<uint8_t> f = {'T', 'C', 'D', 'C', 1, static_cast<uint8_t>(in.options.kind)};
  put_le<uint16_t>(f, in.options.checksum ? 1 : 0);
  const bool indexed = in.row_mode == kRowIndex;
  put_le<uint32_t>(f, static_cast<uint32_t>(48 + 8 * in.shape.size() + (indexed ? 4 : 0) + in.meta.size()));
  f.push_back(static_cast<uint8_t>(dtype));
  f.push_back(static_cast<uint8_t>(in.shape.size()));
  f.push_back(in.row_mode);
  f.push_back(static_cast<uint8_t>(t.precision()));
  put_le<uint16_t>(f, static_cast<uint16_t>(in.options.lanes));
  put_le<uint16_t>(f, 0);
  put_le<uint32_t>(f, cs);
  put_le<uint64_t>(f, t.fingerprint());
  put_le<uint64_t>(f, n);
  put_le<uint32_t>(f, nc);
  put_le<uint32_t>(f, static_cast<uint32_t>(in.meta.size()));
  for (uint64_t d : in.shape) put_le<uint64_t>(f, d);
  if (indexed) {
    // index_check: CRC32C of the index as little-endian int32 values.
    std::vector<uint8_t> idx;
    for (int32_t r : in.index) put_le<uint32_t>(idx, static_cast<uint32_t>(r));
    put_le<uint32_t>(f, crc32c_portable(idx.data(), idx.size()));
  }
  f.insert(f.end(), in.meta.begin(), in.meta.end());
  std::vector<std::vector<uint8_t>> chunks;
  for (uint32_t c = 0; c < nc; ++c) {
    const uint64_t b = static_cast<uint64_t>(c) * cs;
    const uint64_t e = std::min<uint64_t>(n, b + cs);
    std::vector<int64_t> v(values.begin() + static_cast<std::ptrdiff_t>(b),
                           values.begin() + static_cast<std::ptrdiff_t>(e));
    std::vector<size_t> rows;
    for (uint64_t i = b; i < e; ++i) {
      rows.push_back(row_of(in.shape, in.row_mode, in.index.empty() ? nullptr : in.index.data(), i));
    }
    chunks.push_back(reference_chunk(t, v, rows, in.options.lanes));
  }
  for (const auto& c : chunks) put_le<uint32_t>(f, static_cast<uint32_t>(c.size()));
  for (const auto& c : chunks) f.insert(f.end(), c.begin(), c.end());
  if (in.options.checksum) put_le<uint32_t>(f, crc32c_portable(f.data(), f.size()));
  return f;
}

}  // namespace tctest
