// Integer CDF tables: one row per channel (or per entropy-model context), each with
// K in-range symbols starting at `offset` and one escape symbol. Built once in
// integer arithmetic, shared bit for bit by every encoder and decoder.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "taskcodec/rans.hpp"
#include "taskcodec/status.hpp"

namespace taskcodec {

inline constexpr uint32_t kTableSerialVersion = 1;
inline constexpr uint32_t kMaxTableRows = 1u << 20;

// What the encoder needs for one row.
struct RowEncoder {
  const EncSymbol* syms;  // K + 1 entries, the last is the escape
  int32_t offset;
  uint32_t count;  // K
};

// RowDecoder, lookup_symbol and kFineBucket live in rans.hpp (shared with the GPU).

class CdfTable {
 public:
  // Quantizes non-negative weights to integer frequencies summing to 2^precision
  // (docs/format.md, "Building tables"). pmf is rows x width (row-major); row r uses
  // its first lengths[r] entries (all `width` when lengths is null). escape (nullable)
  // holds each row's escape weight in the same units; null means "as rare as allowed".
  // With trim_tails, bins at either end of a row whose probability is below
  // 2^-(precision + 3) leave the row (offset and length shrink) and their weight goes to
  // the escape: their values are still coded exactly, as escapes.
  static Error from_pmf(const double* pmf, size_t rows, size_t width, const int32_t* offsets,
                        const uint32_t* lengths, const double* escape, uint32_t precision,
                        std::shared_ptr<const CdfTable>* out, bool trim_tails = false);

  // Takes integer frequencies as they are. freqs holds the rows back to back, row r
  // with lengths[r] + 1 entries (escape last); each row must sum to 2^precision and
  // every entry must be >= 1.
  static Error from_freqs(const uint32_t* freqs, size_t freqs_len, size_t rows,
                          const int32_t* offsets, const uint32_t* lengths, uint32_t precision,
                          std::shared_ptr<const CdfTable>* out);

  // Parses the canonical serialization written by serialize() (hostile input is fine).
  static Error deserialize(const uint8_t* data, size_t len, std::shared_ptr<const CdfTable>* out);

  uint32_t precision() const noexcept { return precision_; }
  size_t rows() const noexcept { return offsets_.size(); }
  int32_t offset(size_t r) const noexcept { return offsets_[r]; }
  uint32_t length(size_t r) const noexcept { return lengths_[r]; }
  uint32_t max_length() const noexcept { return max_length_; }
  // Frequencies of row r: length(r) + 1 entries, escape last.
  const uint32_t* freqs(size_t r) const noexcept { return freqs_.data() + row_begin_[r]; }
  uint64_t fingerprint() const noexcept { return fingerprint_; }
  // Canonical bytes; fingerprint() is FNV-1a 64 of exactly these bytes.
  const std::vector<uint8_t>& serialized() const noexcept { return serial_; }

  RowEncoder encoder_row(size_t r) const noexcept {
    return {enc_.data() + row_begin_[r], offsets_[r], lengths_[r]};
  }
  // Per symbol of row r (K + 1 entries): freq | start << 16, and gm_magic(freq).
  const uint32_t* info(size_t r) const noexcept { return info_.data() + row_begin_[r]; }
  const uint32_t* magic(size_t r) const noexcept { return magic_.data() + row_begin_[r]; }
  // Decoder tables are built on first use (thread-safe) and kept.
  void prepare_decoder() const;
  RowDecoder decoder_row(size_t r) const noexcept {
    return {dec_buckets_.data() + (r << bucket_bits_), dec_fine_.data() + dec_fine_begin_[r],
            info_.data() + row_begin_[r], offsets_[r], lengths_[r]};
  }
  // log2 of the slots per bucket (precision - bucket bits); valid after prepare_decoder().
  uint32_t bucket_shift() const noexcept { return precision_ - bucket_bits_; }

  // Flat views of every table, for copying them to a GPU. The per-symbol arrays (enc,
  // info) hold entries() values, row r's starting at row_begin(r); the decoder arrays are
  // valid after prepare_decoder().
  size_t entries() const noexcept { return freqs_.size(); }
  const EncSymbol* enc_data() const noexcept { return enc_.data(); }
  const uint32_t* info_data() const noexcept { return info_.data(); }
  const uint64_t* row_begin_data() const noexcept { return row_begin_.data(); }
  const int32_t* offsets_data() const noexcept { return offsets_.data(); }
  const uint32_t* lengths_data() const noexcept { return lengths_.data(); }
  uint32_t bucket_bits() const noexcept { return bucket_bits_; }
  const std::vector<uint32_t>& dec_buckets() const noexcept { return dec_buckets_; }
  const std::vector<uint16_t>& dec_fine() const noexcept { return dec_fine_; }
  const std::vector<size_t>& dec_fine_begin() const noexcept { return dec_fine_begin_; }

 private:
  CdfTable() = default;
  static Error finish(std::unique_ptr<CdfTable> t, std::shared_ptr<const CdfTable>* out);

  uint32_t precision_ = 0;
  uint32_t max_length_ = 0;
  std::vector<int32_t> offsets_;
  std::vector<uint32_t> lengths_;
  std::vector<uint64_t> row_begin_;
  std::vector<uint32_t> freqs_;
  std::vector<EncSymbol> enc_;
  std::vector<uint32_t> info_;
  std::vector<uint32_t> magic_;
  std::vector<uint8_t> serial_;
  uint64_t fingerprint_ = 0;

  mutable std::once_flag dec_once_;
  mutable uint32_t bucket_bits_ = 0;
  mutable std::vector<uint32_t> dec_buckets_;
  mutable std::vector<uint16_t> dec_fine_;
  mutable std::vector<size_t> dec_fine_begin_;
};

}  // namespace taskcodec
