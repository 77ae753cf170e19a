#include "taskcodec/table.hpp"

#include <algorithm>
#include <climits>
#include <cstring>
#include <cmath>
#include <new>
#include <numeric>
#include <string>

#include "../util/bytes.hpp"
#include "taskcodec/checksum.hpp"

namespace taskcodec {
namespace {

constexpr uint8_t kTableMagic[4] = {'T', 'C', 'D', 'T'};
constexpr size_t kTableHeaderSize = 12;

Error invalid(std::string msg) { return {Status::kInvalidArgument, std::move(msg)}; }

Error check_common(size_t rows, uint32_t precision) {
  if (precision < 1 || precision > kMaxPrecision) {
    return invalid("precision must be between 1 and 16 bits, got " + std::to_string(precision));
  }
  if (rows < 1 || rows > kMaxTableRows) {
    return invalid("a table needs between 1 and " + std::to_string(kMaxTableRows) +
                   " rows, got " + std::to_string(rows));
  }
  return {};
}

Error check_length(size_t r, uint64_t k, uint32_t precision) {
  if (k < 1) return invalid("row " + std::to_string(r) + " has no symbols");
  if (k + 1 > (1ull << precision)) {
    return invalid("row " + std::to_string(r) + " has " + std::to_string(k) +
                   " symbols plus the escape, more than the 2^" + std::to_string(precision) +
                   " slots of its precision");
  }
  return {};
}

// Largest-remainder quantization of one row of integer weights (docs/format.md).
void quantize_row(const std::vector<uint64_t>& w, uint32_t precision, uint32_t* f) {
  const size_t t = w.size();
  const uint64_t m = 1ull << precision;
  const uint64_t spare = m - t;
  uint64_t total = 0;
  for (uint64_t v : w) total += v;
  std::vector<uint64_t> rem(t, 0);
  uint64_t used = 0;
  for (size_t i = 0; i < t; ++i) {
    const uint64_t prod = w[i] * spare;  // < 2^41 * 2^16
    f[i] = static_cast<uint32_t>(1 + prod / total);
    rem[i] = prod % total;
    used += f[i];
  }
  uint64_t left = m - used;
  if (left == 0) return;
  std::vector<uint32_t> order(t);
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(),
                   [&](uint32_t a, uint32_t b) { return rem[a] > rem[b]; });
  for (size_t i = 0; i < left; ++i) f[order[i]] += 1;
}

}  // namespace

Error CdfTable::from_pmf(const double* pmf, size_t rows, size_t width, const int32_t* offsets,
                         const uint32_t* lengths, const double* escape, uint32_t precision,
                         std::shared_ptr<const CdfTable>* out, bool trim_tails) {
  if (Error e = check_common(rows, precision)) return e;
  if (width < 1) return invalid("pmf rows need at least one entry");
  std::vector<uint32_t> lens(rows);
  uint64_t flat = 0;
  for (size_t r = 0; r < rows; ++r) {
    lens[r] = lengths ? lengths[r] : static_cast<uint32_t>(width);
    if (lens[r] > width) {
      return invalid("lengths[" + std::to_string(r) + "] = " + std::to_string(lens[r]) +
                     " exceeds the pmf width " + std::to_string(width));
    }
    if (Error e = check_length(r, lens[r], precision)) return e;
    flat += lens[r] + 1;
  }
  std::vector<uint32_t> freqs;
  freqs.reserve(flat);
  std::vector<int32_t> offs(offsets, offsets + rows);
  std::vector<uint64_t> w;
  for (size_t r = 0; r < rows; ++r) {
    const double* row = pmf + r * width;
    const size_t k = lens[r];
    const double esc = escape ? escape[r] : 0.0;
    double mx = esc;
    for (size_t i = 0; i < k; ++i) {
      const double v = row[i];
      if (!std::isfinite(v) || v < 0.0) {
        return invalid("pmf[" + std::to_string(r) + ", " + std::to_string(i) +
                       "] must be finite and >= 0, got " + std::to_string(v));
      }
      mx = std::max(mx, v);
    }
    if (!std::isfinite(esc) || esc < 0.0) {
      return invalid("escape weight of row " + std::to_string(r) + " must be finite and >= 0");
    }
    w.assign(k + 1, 1);
    if (mx > 0.0) {
      int e = 0;
      std::frexp(mx, &e);  // mx = m * 2^e, 0.5 <= m < 1: scaled weights are < 2^40
      for (size_t i = 0; i < k; ++i) w[i] = static_cast<uint64_t>(std::floor(std::ldexp(row[i], 40 - e)));
      w[k] = static_cast<uint64_t>(std::floor(std::ldexp(esc, 40 - e)));
      if (trim_tails) {
        // Bins at either end with probability below 2^-(precision + 3) cost every other
        // symbol more (each needs a slot) than escaping their rare values costs them.
        uint64_t total = 0;
        for (uint64_t v : w) total += v;
        size_t lo = 0, hi = k;
        uint64_t moved = 0;
        const auto negligible = [&](size_t i) { return (w[i] << (precision + 3)) < total; };
        while (hi - lo > 1 && negligible(lo)) moved += w[lo++];
        while (hi - lo > 1 && negligible(hi - 1)) moved += w[--hi];
        if (lo > 0 || hi < k) {
          const uint64_t esc_w = w[k] + moved;
          w.erase(w.begin() + static_cast<std::ptrdiff_t>(hi), w.end());
          w.erase(w.begin(), w.begin() + static_cast<std::ptrdiff_t>(lo));
          w.push_back(esc_w);
          offs[r] = static_cast<int32_t>(static_cast<int64_t>(offs[r]) + static_cast<int64_t>(lo));
          lens[r] = static_cast<uint32_t>(hi - lo);
        }
      }
    }
    const size_t at = freqs.size();
    freqs.resize(at + w.size());
    quantize_row(w, precision, freqs.data() + at);
  }
  return from_freqs(freqs.data(), freqs.size(), rows, offs.data(), lens.data(), precision, out);
}

Error CdfTable::from_freqs(const uint32_t* freqs, size_t freqs_len, size_t rows,
                           const int32_t* offsets, const uint32_t* lengths, uint32_t precision,
                           std::shared_ptr<const CdfTable>* out) {
  if (Error e = check_common(rows, precision)) return e;
  std::unique_ptr<CdfTable> t(new (std::nothrow) CdfTable());
  if (!t) return {Status::kOutOfMemory, "out of memory"};
  t->precision_ = precision;
  t->offsets_.assign(offsets, offsets + rows);
  t->lengths_.assign(lengths, lengths + rows);
  t->row_begin_.resize(rows + 1);
  uint64_t at = 0;
  for (size_t r = 0; r < rows; ++r) {
    if (Error e = check_length(r, lengths[r], precision)) return e;
    if (static_cast<int64_t>(offsets[r]) + lengths[r] - 1 > INT32_MAX) {
      return invalid("row " + std::to_string(r) + ": offset " + std::to_string(offsets[r]) +
                     " + " + std::to_string(lengths[r]) + " symbols run past int32");
    }
    t->row_begin_[r] = at;
    at += static_cast<uint64_t>(lengths[r]) + 1;
    t->max_length_ = std::max(t->max_length_, lengths[r]);
  }
  t->row_begin_[rows] = at;
  if (at != freqs_len) {
    return invalid("the rows need " + std::to_string(at) + " frequencies (K + 1 each), got " +
                   std::to_string(freqs_len));
  }
  t->freqs_.assign(freqs, freqs + freqs_len);
  t->enc_.resize(freqs_len);
  t->info_.resize(freqs_len);
  t->magic_.resize(freqs_len);
  const uint64_t m = 1ull << precision;
  for (size_t r = 0; r < rows; ++r) {
    uint64_t cum = 0;
    for (uint64_t i = t->row_begin_[r]; i < t->row_begin_[r + 1]; ++i) {
      const uint32_t f = t->freqs_[i];
      if (f < 1 || f >= m) {
        return invalid("frequency " + std::to_string(i - t->row_begin_[r]) + " of row " +
                       std::to_string(r) + " is " + std::to_string(f) +
                       "; every symbol needs 1 <= freq < 2^precision");
      }
      t->enc_[i] = make_enc_symbol(static_cast<uint32_t>(cum), f, precision);
      t->info_[i] = f | static_cast<uint32_t>(cum << 16);
      t->magic_[i] = gm_magic(f);
      cum += f;
      if (cum > m) break;
    }
    if (cum != m) {
      return invalid("frequencies of row " + std::to_string(r) + " sum to " + std::to_string(cum) +
                     ", expected 2^" + std::to_string(precision) + " = " + std::to_string(m));
    }
  }
  return finish(std::move(t), out);
}

Error CdfTable::finish(std::unique_ptr<CdfTable> t, std::shared_ptr<const CdfTable>* out) {
  std::vector<uint8_t>& s = t->serial_;
  const size_t rows = t->offsets_.size();
  s.reserve(kTableHeaderSize + rows * 8 + t->freqs_.size() * 2);
  s.insert(s.end(), kTableMagic, kTableMagic + 4);
  s.push_back(static_cast<uint8_t>(kTableSerialVersion));
  s.push_back(static_cast<uint8_t>(t->precision_));
  detail::append_le<uint16_t>(s, 0);
  detail::append_le<uint32_t>(s, static_cast<uint32_t>(rows));
  for (size_t r = 0; r < rows; ++r) {
    detail::append_le<int32_t>(s, t->offsets_[r]);
    detail::append_le<uint32_t>(s, t->lengths_[r]);
  }
  for (uint32_t f : t->freqs_) detail::append_le<uint16_t>(s, static_cast<uint16_t>(f));
  t->fingerprint_ = fnv1a64(s.data(), s.size());
  *out = std::shared_ptr<const CdfTable>(t.release());
  return {};
}

Error CdfTable::deserialize(const uint8_t* data, size_t len, std::shared_ptr<const CdfTable>* out) {
  const auto bad = [](std::string m) { return Error{Status::kCorruptStream, "table bytes: " + m}; };
  if (len < kTableHeaderSize) {
    return bad("need at least " + std::to_string(kTableHeaderSize) + " bytes, got " +
               std::to_string(len));
  }
  if (std::memcmp(data, kTableMagic, 4) != 0) return bad("magic is not 'TCDT'");
  if (data[4] != kTableSerialVersion) {
    return {Status::kUnsupportedVersion,
            "table bytes: serialization version " + std::to_string(data[4]) +
                " is not supported (this build reads version 1)"};
  }
  const uint32_t precision = data[5];
  if (detail::load_le<uint16_t>(data + 6) != 0) return bad("reserved field is not zero");
  const uint32_t rows = detail::load_le<uint32_t>(data + 8);
  if (rows < 1 || rows > kMaxTableRows) return bad("row count " + std::to_string(rows) + " out of range");
  const size_t rest = len - kTableHeaderSize;
  if (rest / 8 < rows) return bad("declares " + std::to_string(rows) + " rows but holds fewer");
  std::vector<int32_t> offsets(rows);
  std::vector<uint32_t> lengths(rows);
  uint64_t nfreq = 0;
  const uint8_t* p = data + kTableHeaderSize;
  for (uint32_t r = 0; r < rows; ++r, p += 8) {
    offsets[r] = detail::load_le<int32_t>(p);
    lengths[r] = detail::load_le<uint32_t>(p + 4);
    if (lengths[r] > (1u << 16)) return bad("row " + std::to_string(r) + " length out of range");
    nfreq += static_cast<uint64_t>(lengths[r]) + 1;
  }
  if (rest - rows * 8ull != nfreq * 2) {
    return bad("rows need " + std::to_string(nfreq * 2) + " bytes of frequencies, found " +
               std::to_string(rest - rows * 8ull));
  }
  std::vector<uint32_t> freqs(nfreq);
  for (uint64_t i = 0; i < nfreq; ++i) freqs[i] = detail::load_le<uint16_t>(p + 2 * i);
  Error e = from_freqs(freqs.data(), freqs.size(), rows, offsets.data(), lengths.data(), precision, out);
  if (e) return bad(e.message);
  return {};
}

void CdfTable::prepare_decoder() const {
  std::call_once(dec_once_, [this] {
    const size_t rows = offsets_.size();
    // Enough buckets that most hold at most one boundary: 4x the largest alphabet, or 2x
    // when that would not leave the bucket tables of all rows in half of a typical L2.
    uint32_t bits = 0;
    while ((1u << bits) < max_length_ + 1) ++bits;
    const uint64_t four_x_bytes = static_cast<uint64_t>(rows) * (4ull << (bits + 2));
    bucket_bits_ = std::min(precision_, bits + (four_x_bytes <= (256u << 10) ? 2 : 1));
    const uint32_t shift = precision_ - bucket_bits_;
    const uint32_t width = 1u << shift;
    const size_t nb = size_t{1} << bucket_bits_;
    dec_buckets_.assign(rows * nb, 0);
    dec_fine_.clear();
    dec_fine_begin_.assign(rows, 0);
    std::vector<uint32_t> starts;
    for (size_t r = 0; r < rows; ++r) {
      const uint32_t* f = freqs(r);
      const uint32_t k1 = lengths_[r] + 1;
      starts.assign(k1 + 1, 0);
      for (uint32_t s = 0; s < k1; ++s) starts[s + 1] = starts[s] + f[s];
      dec_fine_begin_[r] = dec_fine_.size();
      uint32_t fine_count = 0;
      uint32_t sym = 0;  // owner of the current bucket's first slot
      for (size_t b = 0; b < nb; ++b) {
        const uint32_t lo = static_cast<uint32_t>(b) << shift;
        const uint32_t hi = lo + width;
        while (starts[sym + 1] <= lo) ++sym;
        uint32_t* entry = &dec_buckets_[r * nb + b];
        if (starts[sym + 1] >= hi) {
          *entry = sym | (width << 16);  // one symbol fills the bucket
        } else if (starts[sym + 2] >= hi) {  // sym + 1 exists: starts[sym + 1] < hi <= 2^p
          *entry = sym | ((starts[sym + 1] - lo) << 16);  // exactly one boundary
        } else {
          *entry = fine_count | (kFineBucket << 16);
          uint32_t t = sym;
          for (uint32_t i = 0; i < width; ++i) {
            while (starts[t + 1] <= lo + i) ++t;
            dec_fine_.push_back(static_cast<uint16_t>(t));
          }
          ++fine_count;
        }
      }
    }
    // Padding: SIMD decoders read the 16-bit entries as 32-bit words.
    dec_fine_.push_back(0);
  });
}

}  // namespace taskcodec
