// Value codings and index codings of sparse updates (sparse.hpp; docs/format.md section 21).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../rans/chunk.hpp"
#include "../util/bytes.hpp"
#include "taskcodec/sparse.hpp"
#include "taskcodec/table.hpp"

namespace taskcodec {
namespace {

using detail::load_le;
using detail::store_le;

Error invalid(std::string m) { return {Status::kInvalidArgument, std::move(m)}; }
Error corrupt(std::string m) { return {Status::kCorruptStream, std::move(m)}; }

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint64_t num_blocks(uint64_t k, uint32_t block_log2) {
  return (k + (1ull << block_log2) - 1) >> block_log2;
}

// Uniform in [0, 1) with 24 bits, from (seed, stream, j): splitmix64's finaliser.
float uniform24(uint64_t seed, uint64_t stream, uint64_t j) {
  uint64_t z = seed ^ (stream * 0xD1B54A32D192ED03ull);
  z += (j + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
}

bool scale_ok(float s) { return std::isfinite(s) && s >= 0.0f; }

}  // namespace

// ---- float16 -------------------------------------------------------------------------

uint16_t float_to_half(float f) noexcept {
  const uint32_t u = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u);  // NaN
  if (a >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7BFFu);  // rounds past 65504: saturate
  if (a < 0x38800000u) {  // below the smallest normal half: subnormal or zero
    if (a < 0x33000000u) return sign;  // below half of the smallest subnormal (2^-25): +-0
    const uint32_t e = a >> 23;
    const uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126u - e;  // value = m * 2^(e-150); subnormal unit 2^-24
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return static_cast<uint16_t>(sign | q);
  }
  // normal: rebias exponent, round the 13 dropped mantissa bits to nearest even
  uint32_t h = ((a >> 13) - ((127u - 15u) << 10));
  const uint32_t rem = a & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

float half_to_float(uint16_t h) noexcept {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1Fu;
  const uint32_t m = h & 0x3FFu;
  if (e == 0) {
    const float v = static_cast<float>(m) * (1.0f / 16777216.0f);  // m * 2^-24, exact
    return bits_float(float_bits(v) | sign);
  }
  if (e == 31) return bits_float(sign | 0x7F800000u | (m << 13));
  return bits_float(sign | ((e + 112u) << 23) | (m << 13));
}

// ---- values --------------------------------------------------------------------------

const char* value_coding_name(ValueCoding c) noexcept {
  switch (c) {
    case ValueCoding::kFloat32: return "float32";
    case ValueCoding::kFloat16: return "float16";
    case ValueCoding::kInt8: return "int8";
    case ValueCoding::kSign: return "sign";
    case ValueCoding::kQsgd: return "qsgd";
  }
  return "unknown";
}

bool value_coding_valid(uint8_t code) noexcept { return code <= 4; }

Error check_value_params(const ValueParams& p) {
  if (!value_coding_valid(static_cast<uint8_t>(p.coding))) return invalid("unknown value coding");
  if (p.block_log2 > kMaxBlockLog2) {
    return invalid("block_log2 " + std::to_string(p.block_log2) + " is above " + std::to_string(kMaxBlockLog2));
  }
  if (p.coding == ValueCoding::kQsgd && (p.levels < 1 || p.levels > kMaxQsgdLevels)) {
    return invalid("QSGD levels must be in 1..127, got " + std::to_string(p.levels));
  }
  return {};
}

uint64_t value_bytes(const ValueParams& p, uint64_t k) noexcept {
  const uint64_t scales = 4 * num_blocks(k, p.block_log2);
  switch (p.coding) {
    case ValueCoding::kFloat32: return 4 * k;
    case ValueCoding::kFloat16: return 2 * k;
    case ValueCoding::kInt8: return scales + k;
    case ValueCoding::kSign: return scales + (k + 7) / 8;
    case ValueCoding::kQsgd: return scales + k;
  }
  return 0;
}

Error encode_values(const float* v, size_t k, const ValueParams& p, uint64_t stream, uint8_t* out,
                    size_t capacity, float* dequant) {
  if (Error e = check_value_params(p)) return e;
  const uint64_t need = value_bytes(p, k);
  if (capacity < need) {
    return {Status::kBufferTooSmall, "values need " + std::to_string(need) + " bytes, capacity is " +
                                         std::to_string(capacity)};
  }
  for (size_t j = 0; j < k; ++j) {
    if (!std::isfinite(v[j])) return invalid("value " + std::to_string(j) + " is not finite");
  }
  const size_t block = size_t{1} << p.block_log2;
  const size_t nb = static_cast<size_t>(num_blocks(k, p.block_log2));
  switch (p.coding) {
    case ValueCoding::kFloat32:
      if (k) std::memcpy(out, v, 4 * k);
      if (dequant && k) std::memcpy(dequant, v, 4 * k);
      return {};
    case ValueCoding::kFloat16:
      for (size_t j = 0; j < k; ++j) {
        const uint16_t h = float_to_half(v[j]);
        store_le<uint16_t>(out + 2 * j, h);
        if (dequant) dequant[j] = half_to_float(h);
      }
      return {};
    case ValueCoding::kInt8:
    case ValueCoding::kQsgd: {
      const bool qsgd = p.coding == ValueCoding::kQsgd;
      const float s = static_cast<float>(p.levels);
      uint8_t* levels = out + 4 * nb;
      for (size_t b = 0; b < nb; ++b) {
        const size_t lo = b * block, hi = std::min(k, lo + block);
        float amax = 0.0f;
        for (size_t j = lo; j < hi; ++j) amax = std::max(amax, std::fabs(v[j]));
        const float scale = qsgd ? amax : amax / 127.0f;
        store_le<float>(out + 4 * b, scale);
        for (size_t j = lo; j < hi; ++j) {
          int32_t q = 0;
          if (scale > 0.0f) {
            if (qsgd) {
              const float a = std::fabs(v[j]) / scale * s;
              float l = std::floor(a);
              if (uniform24(p.seed, stream, j) < a - l) l += 1.0f;
              q = static_cast<int32_t>(std::min(l, s));
              if (v[j] < 0.0f) q = -q;
            } else {
              q = static_cast<int32_t>(std::nearbyint(v[j] / scale));
              q = std::clamp(q, -127, 127);
            }
          }
          levels[j] = static_cast<uint8_t>(static_cast<int8_t>(q));
          if (dequant) dequant[j] = qsgd ? scale * (static_cast<float>(q) / s) : static_cast<float>(q) * scale;
        }
      }
      return {};
    }
    case ValueCoding::kSign: {
      uint8_t* bits = out + 4 * nb;
      std::memset(bits, 0, (k + 7) / 8);
      for (size_t b = 0; b < nb; ++b) {
        const size_t lo = b * block, hi = std::min(k, lo + block);
        double sum = 0.0;
        for (size_t j = lo; j < hi; ++j) sum += std::fabs(static_cast<double>(v[j]));
        const float scale = static_cast<float>(sum / static_cast<double>(hi - lo));
        store_le<float>(out + 4 * b, scale);
        for (size_t j = lo; j < hi; ++j) {
          const bool neg = std::signbit(v[j]) && v[j] != 0.0f;
          if (neg) bits[j >> 3] = static_cast<uint8_t>(bits[j >> 3] | (1u << (j & 7)));
          if (dequant) dequant[j] = neg ? -scale : scale;
        }
      }
      return {};
    }
  }
  return invalid("unknown value coding");
}

Error decode_values(const uint8_t* data, size_t len, size_t k, const ValueParams& p, float* out) {
  if (Error e = check_value_params(p)) return corrupt("record: " + e.message);
  const uint64_t need = value_bytes(p, k);
  if (len != need) {
    return corrupt(std::string(value_coding_name(p.coding)) + " values of " + std::to_string(k) +
                   " elements take " + std::to_string(need) + " bytes, the record holds " + std::to_string(len));
  }
  const size_t block = size_t{1} << p.block_log2;
  const size_t nb = static_cast<size_t>(num_blocks(k, p.block_log2));
  switch (p.coding) {
    case ValueCoding::kFloat32:
      for (size_t j = 0; j < k; ++j) {
        out[j] = load_le<float>(data + 4 * j);
        if (!std::isfinite(out[j])) return corrupt("value " + std::to_string(j) + " is not finite");
      }
      return {};
    case ValueCoding::kFloat16:
      for (size_t j = 0; j < k; ++j) {
        const uint16_t h = load_le<uint16_t>(data + 2 * j);
        if ((h & 0x7C00u) == 0x7C00u) return corrupt("value " + std::to_string(j) + " is not finite");
        out[j] = half_to_float(h);
      }
      return {};
    case ValueCoding::kInt8:
    case ValueCoding::kQsgd: {
      const bool qsgd = p.coding == ValueCoding::kQsgd;
      const int32_t lim = qsgd ? static_cast<int32_t>(p.levels) : 127;
      const float s = static_cast<float>(p.levels);
      const uint8_t* levels = data + 4 * nb;
      for (size_t b = 0; b < nb; ++b) {
        const float scale = load_le<float>(data + 4 * b);
        if (!scale_ok(scale)) return corrupt("scale of block " + std::to_string(b) + " is not a finite value >= 0");
        const size_t lo = b * block, hi = std::min(k, lo + block);
        for (size_t j = lo; j < hi; ++j) {
          const int32_t q = static_cast<int8_t>(levels[j]);
          if (q < -lim || q > lim) {
            return corrupt("level " + std::to_string(q) + " of value " + std::to_string(j) +
                           " is outside +-" + std::to_string(lim));
          }
          out[j] = qsgd ? scale * (static_cast<float>(q) / s) : static_cast<float>(q) * scale;
          if (!std::isfinite(out[j])) return corrupt("value " + std::to_string(j) + " overflows float32");
        }
      }
      return {};
    }
    case ValueCoding::kSign: {
      const uint8_t* bits = data + 4 * nb;
      if (k % 8 && (bits[k / 8] >> (k % 8)) != 0) return corrupt("sign bits past the last value are not zero");
      for (size_t b = 0; b < nb; ++b) {
        const float scale = load_le<float>(data + 4 * b);
        if (!scale_ok(scale)) return corrupt("scale of block " + std::to_string(b) + " is not a finite value >= 0");
        const size_t lo = b * block, hi = std::min(k, lo + block);
        for (size_t j = lo; j < hi; ++j) out[j] = ((bits[j >> 3] >> (j & 7)) & 1u) ? -scale : scale;
      }
      return {};
    }
  }
  return corrupt("unknown value coding");
}

// ---- indices -------------------------------------------------------------------------

namespace {

Error check_indices(const uint32_t* idx, size_t k, uint64_t n) {
  if (n >= (1ull << 31)) return invalid("index coding supports tensors of fewer than 2^31 elements");
  if (k > n) return invalid("k exceeds n");
  for (size_t j = 0; j < k; ++j) {
    if (idx[j] >= n || (j && idx[j] <= idx[j - 1])) {
      return invalid("indices must be strictly ascending and below n (index " + std::to_string(j) + ")");
    }
  }
  return {};
}

// Rice parameter for gaps of mean m: about log2(m * ln 2).
uint32_t rice_parameter(uint64_t n, size_t k) {
  const double m = static_cast<double>(n - k) / static_cast<double>(k);
  const double t = m * 0.6931471805599453;
  uint32_t r = 0;
  while (r < 30 && static_cast<double>(1ull << (r + 1)) <= t) ++r;
  return r;
}

}  // namespace

Error encode_index_bitmap(const uint32_t* idx, size_t k, uint64_t n, std::vector<uint8_t>* out) {
  if (Error e = check_indices(idx, k, n)) return e;
  const size_t at = out->size();
  out->resize(at + static_cast<size_t>((n + 7) / 8), 0);
  uint8_t* bm = out->data() + at;
  for (size_t j = 0; j < k; ++j) bm[idx[j] >> 3] = static_cast<uint8_t>(bm[idx[j] >> 3] | (1u << (idx[j] & 7)));
  return {};
}

Error decode_index_bitmap(const uint8_t* data, size_t len, size_t k, uint64_t n, uint32_t* idx_out) {
  if (len != (n + 7) / 8) {
    return corrupt("bitmap of " + std::to_string(n) + " elements takes " + std::to_string((n + 7) / 8) +
                   " bytes, the record holds " + std::to_string(len));
  }
  if (n % 8 && (data[n / 8] >> (n % 8)) != 0) return corrupt("bitmap bits past the tensor's end are set");
  size_t w = 0;
  for (size_t b = 0; b < len; ++b) {
    uint32_t byte = data[b];
    while (byte) {
      const uint32_t bit = static_cast<uint32_t>(__builtin_ctz(byte));
      if (w == k) return corrupt("bitmap selects more than the record's " + std::to_string(k) + " elements");
      idx_out[w++] = static_cast<uint32_t>(b * 8 + bit);
      byte &= byte - 1;
    }
  }
  if (w != k) {
    return corrupt("bitmap selects " + std::to_string(w) + " elements, the record says " + std::to_string(k));
  }
  return {};
}

// Gap section: u8 r, u8 bins Q (1..64), u8 log2 of the lanes L (0..5), u8 0, (Q + 1) u16
// frequencies (escape last, precision kGapPrecision), u32 chunk length, the rANS chunk of
// the k high parts (L lanes), then the k low parts of r bits each, packed LSB first.
// L = the largest power of two <= k / 256, between 1 and kGapLanes (lane states cost
// 4 bytes each, so small tensors use few).
Error encode_index_gaps(const uint32_t* idx, size_t k, uint64_t n, std::vector<uint8_t>* out) {
  if (Error e = check_indices(idx, k, n)) return e;
  if (k == 0) return invalid("gap coding needs at least one index");
  const uint32_t r = rice_parameter(n, k);
  std::vector<uint32_t> hi(k);
  uint32_t qmax = 0;
  for (size_t j = 0; j < k; ++j) {
    const uint32_t g = j ? idx[j] - idx[j - 1] - 1 : idx[0];
    hi[j] = g >> r;
    qmax = std::max(qmax, hi[j]);
  }
  const uint32_t bins = std::min(kMaxGapBins, qmax + 1);
  std::vector<double> counts(bins, 0.0);
  double escaped = 0.0;
  for (uint32_t q : hi) {
    if (q < bins) counts[q] += 1.0;
    else escaped += 1.0;
  }
  std::shared_ptr<const CdfTable> table;
  const int32_t offset = 0;
  if (Error e = CdfTable::from_pmf(counts.data(), 1, bins, &offset, nullptr, &escaped, kGapPrecision, &table)) {
    return e;
  }
  uint32_t lanes_log2 = 0;
  while ((2u << lanes_log2) <= kGapLanes && (256u << (lanes_log2 + 1)) <= k) ++lanes_log2;
  detail::ChunkBuffer chunk;
  detail::RowMap rows;
  if (Error e = detail::encode_chunk(*table, hi.data(), DType::kUInt32, rows, 0, static_cast<uint32_t>(k),
                                     1u << lanes_log2, &chunk)) {
    return e;
  }
  std::vector<uint8_t>& o = *out;
  o.push_back(static_cast<uint8_t>(r));
  o.push_back(static_cast<uint8_t>(bins));
  o.push_back(static_cast<uint8_t>(lanes_log2));
  o.push_back(0);
  const uint32_t* f = table->freqs(0);
  for (uint32_t i = 0; i <= bins; ++i) detail::append_le<uint16_t>(o, static_cast<uint16_t>(f[i]));
  detail::append_le<uint32_t>(o, static_cast<uint32_t>(chunk.size()));
  o.insert(o.end(), chunk.data(), chunk.data() + chunk.size());
  const size_t at = o.size();
  o.resize(at + (static_cast<uint64_t>(k) * r + 7) / 8, 0);
  uint8_t* bits = o.data() + at;
  uint64_t pos = 0;
  for (size_t j = 0; r && j < k; ++j) {
    const uint32_t g = j ? idx[j] - idx[j - 1] - 1 : idx[0];
    const uint32_t low = g & ((1u << r) - 1u);
    for (uint32_t b = 0; b < r; ++b, ++pos) {
      if ((low >> b) & 1u) bits[pos >> 3] = static_cast<uint8_t>(bits[pos >> 3] | (1u << (pos & 7)));
    }
  }
  return {};
}

Error decode_index_gaps(const uint8_t* data, size_t len, size_t k, uint64_t n, uint32_t* idx_out) {
  if (k == 0 || k > n) return corrupt("gap coding needs 1 <= k <= n");
  detail::Cursor c(data, len);
  uint8_t r = 0, bins = 0, lanes_log2 = 0, zero = 0;
  if (!c.read(&r) || !c.read(&bins) || !c.read(&lanes_log2) || !c.read(&zero)) return corrupt("gap section is truncated");
  if (r > 30 || bins < 1 || bins > kMaxGapBins || lanes_log2 > 5 || zero != 0) {
    return corrupt("gap section header (rice " + std::to_string(r) + ", bins " + std::to_string(bins) +
                   ", lanes 2^" + std::to_string(lanes_log2) + ") is invalid");
  }
  std::vector<uint32_t> freqs(bins + 1u);
  for (auto& f : freqs) {
    uint16_t v = 0;
    if (!c.read(&v)) return corrupt("gap table is truncated");
    f = v;
  }
  std::shared_ptr<const CdfTable> table;
  const int32_t offset = 0;
  const uint32_t length = bins;
  if (Error e = CdfTable::from_freqs(freqs.data(), freqs.size(), 1, &offset, &length, kGapPrecision, &table)) {
    return corrupt("gap table: " + e.message);
  }
  uint32_t chunk_len = 0;
  if (!c.read(&chunk_len) || c.remaining() < chunk_len) return corrupt("gap chunk is truncated");
  const uint8_t* chunk = c.position();
  c.skip(chunk_len);
  const uint64_t low_bytes = (static_cast<uint64_t>(k) * r + 7) / 8;
  if (c.remaining() != low_bytes) {
    return corrupt("gap section has " + std::to_string(c.remaining()) + " bytes of low bits, " +
                   std::to_string(k) + " gaps of " + std::to_string(r) + " bits need " + std::to_string(low_bytes));
  }
  const uint8_t* bits = c.position();
  if ((static_cast<uint64_t>(k) * r) % 8 && (bits[low_bytes - 1] >> ((static_cast<uint64_t>(k) * r) % 8)) != 0) {
    return corrupt("padding bits after the gaps' low bits are not zero");
  }
  table->prepare_decoder();
  std::vector<int32_t> hi(k);
  detail::RowMap rows;
  if (Error e = detail::decode_chunk(*table, rows, 0, static_cast<uint32_t>(k), 1u << lanes_log2, chunk, chunk_len, hi.data())) {
    return e;
  }
  uint64_t pos = 0, prev = 0;
  for (size_t j = 0; j < k; ++j) {
    if (hi[j] < 0) return corrupt("gap " + std::to_string(j) + " decodes negative");
    uint64_t low = 0;
    for (uint32_t b = 0; b < r; ++b, ++pos) low |= static_cast<uint64_t>((bits[pos >> 3] >> (pos & 7)) & 1u) << b;
    const uint64_t g = (static_cast<uint64_t>(hi[j]) << r) | low;
    const uint64_t i = j ? prev + 1 + g : g;
    if (i >= n) return corrupt("index " + std::to_string(j) + " decodes to " + std::to_string(i) + ", past n = " + std::to_string(n));
    idx_out[j] = static_cast<uint32_t>(i);
    prev = i;
  }
  return {};
}

Error encode_index(const uint32_t* idx, size_t k, uint64_t n, IndexCoding* chosen, std::vector<uint8_t>* out) {
  std::vector<uint8_t> gaps;
  if (k) {
    if (Error e = encode_index_gaps(idx, k, n, &gaps)) return e;
  }
  const uint64_t bitmap = (n + 7) / 8;
  if (k == 0 || bitmap <= gaps.size()) {
    *chosen = IndexCoding::kBitmap;
    return encode_index_bitmap(idx, k, n, out);
  }
  *chosen = IndexCoding::kGaps;
  out->insert(out->end(), gaps.begin(), gaps.end());
  return {};
}

}  // namespace taskcodec
