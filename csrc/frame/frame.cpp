#include "taskcodec/frame.hpp"

#include <cstdio>
#include <cstring>
#include <string>

#include "../rans/chunk.hpp"
#include "../util/bytes.hpp"
#include "../util/parallel.hpp"
#include "taskcodec/checksum.hpp"
#include "taskcodec/version.hpp"

namespace taskcodec {
namespace {

using detail::load_le;
using detail::RowMap;

constexpr uint64_t kLargeInput = 1ull << 20;  // symbols; below this one thread is used

std::string hex64(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

Error corrupt(std::string m) { return {Status::kCorruptStream, std::move(m)}; }
Error invalid(std::string m) { return {Status::kInvalidArgument, std::move(m)}; }

bool is_pow2(uint32_t v) { return v && !(v & (v - 1)); }

// CRC32C of an index array as little-endian int32 values (the frame's index check).
uint32_t index_checksum(const int32_t* index, uint64_t n) {
  return crc32c(reinterpret_cast<const uint8_t*>(index), static_cast<size_t>(n) * sizeof(int32_t));
}

// Product of dims, false on overflow past 2^63.
bool shape_product(const uint64_t* shape, size_t ndim, uint64_t* n) {
  uint64_t p = 1;
  bool zero = false;
  for (size_t i = 0; i < ndim; ++i) {
    if (shape[i] == 0) zero = true;
  }
  if (zero) {
    *n = 0;
    return true;
  }
  for (size_t i = 0; i < ndim; ++i) {
    if (shape[i] > (1ull << 63) / p) return false;
    p *= shape[i];
  }
  *n = p;
  return true;
}

RowMap make_row_map(const uint64_t* shape, size_t ndim, uint8_t mode, const int32_t* index) {
  RowMap m;
  m.mode = mode;
  m.index = index;
  if (mode != kRowSingle && mode != kRowIndex) {
    m.channels = shape[mode];
    m.inner = 1;
    for (size_t i = mode + 1; i < ndim; ++i) m.inner *= shape[i];
    if (m.inner == 0) m.inner = 1;
  }
  return m;
}

std::string mode_name(uint8_t mode) {
  if (mode == kRowSingle) return "a single row";
  if (mode == kRowIndex) return "an explicit row index";
  return "channel axis " + std::to_string(mode);
}

}  // namespace

Error check_layout(const CdfTable& table, const SymbolLayout& layout, uint64_t num_symbols) {
  const uint8_t mode = layout.row_mode;
  if (mode == kRowSingle) {
    if (table.rows() != 1) {
      return invalid("the table has " + std::to_string(table.rows()) +
                     " rows; give a channel axis or an index to say which row codes each symbol");
    }
    return {};
  }
  if (mode == kRowIndex) {
    if (!layout.index) return invalid("an index array is required");
    const int32_t* idx = layout.index;
    const int64_t rows = static_cast<int64_t>(table.rows());
    for (uint64_t i = 0; i < num_symbols; ++i) {
      if (idx[i] < 0 || idx[i] >= rows) {
        return invalid("index[" + std::to_string(i) + "] = " + std::to_string(idx[i]) +
                       " is not a row of a table with " + std::to_string(rows) + " rows");
      }
    }
    return {};
  }
  if (mode >= layout.ndim) {
    return invalid("channel axis " + std::to_string(mode) + " is out of range for " +
                   std::to_string(layout.ndim) + " dims");
  }
  if (layout.shape[mode] != table.rows()) {
    return invalid("axis " + std::to_string(mode) + " has " + std::to_string(layout.shape[mode]) +
                   " channels but the table has " + std::to_string(table.rows()) + " rows");
  }
  return {};
}

FrameEncoder::FrameEncoder() = default;
FrameEncoder::~FrameEncoder() = default;

Error build_frame_header(const CdfTable& table, DType dtype, const SymbolLayout& layout,
                        const uint8_t* meta, size_t meta_len, const EncodeOptions& options,
                        std::vector<uint8_t>* header, uint64_t* num_symbols, uint32_t* num_chunks) {
  header->clear();
  if (!is_pow2(options.lanes) || options.lanes > kMaxLanes) {
    return invalid("lanes must be a power of two between 1 and 256, got " + std::to_string(options.lanes));
  }
  if (options.chunk_size < 1) return invalid("chunk_size must be at least 1");
  if (options.kind != FrameKind::kSymbols && options.kind != FrameKind::kSparseUpdate) {
    return invalid("unknown frame kind " + std::to_string(static_cast<int>(options.kind)));
  }
  if (layout.ndim > kMaxDims) {
    return invalid("at most " + std::to_string(kMaxDims) + " dims are supported, got " +
                   std::to_string(layout.ndim));
  }
  if (meta_len > kMaxMetaBytes) {
    return invalid("meta is " + std::to_string(meta_len) + " bytes; at most " +
                   std::to_string(kMaxMetaBytes) + " are allowed");
  }
  if (!dtype_valid(static_cast<uint8_t>(dtype))) return invalid("unknown symbol dtype");
  uint64_t n = 0;
  if (!shape_product(layout.shape, layout.ndim, &n)) return invalid("the shape has more than 2^63 elements");
  if (Error e = check_layout(table, layout, n)) return e;
  const uint64_t nc64 = (n + options.chunk_size - 1) / options.chunk_size;
  if (nc64 > UINT32_MAX) return invalid("too many chunks; raise chunk_size");
  const uint32_t nc = static_cast<uint32_t>(nc64);

  const bool indexed = layout.row_mode == kRowIndex;
  const uint32_t header_length =
      static_cast<uint32_t>(kFixedHeaderSize + 8 * layout.ndim + (indexed ? 4 : 0) + meta_len);
  std::vector<uint8_t>& h = *header;
  h.reserve(header_length + 4ull * nc);
  h.insert(h.end(), kMagic, kMagic + 4);
  h.push_back(static_cast<uint8_t>(kFormatVersion));
  h.push_back(static_cast<uint8_t>(options.kind));
  detail::append_le<uint16_t>(h, options.checksum ? kFlagChecksum : 0);
  detail::append_le<uint32_t>(h, header_length);
  h.push_back(static_cast<uint8_t>(dtype));
  h.push_back(static_cast<uint8_t>(layout.ndim));
  h.push_back(layout.row_mode);
  h.push_back(static_cast<uint8_t>(table.precision()));
  detail::append_le<uint16_t>(h, static_cast<uint16_t>(options.lanes));
  detail::append_le<uint16_t>(h, 0);
  detail::append_le<uint32_t>(h, options.chunk_size);
  detail::append_le<uint64_t>(h, table.fingerprint());
  detail::append_le<uint64_t>(h, n);
  detail::append_le<uint32_t>(h, nc);
  detail::append_le<uint32_t>(h, static_cast<uint32_t>(meta_len));
  for (size_t i = 0; i < layout.ndim; ++i) detail::append_le<uint64_t>(h, layout.shape[i]);
  if (indexed) detail::append_le<uint32_t>(h, index_checksum(layout.index, n));
  if (meta_len) h.insert(h.end(), meta, meta + meta_len);
  *num_symbols = n;
  *num_chunks = nc;
  return {};
}

Error assemble_frame(const std::vector<uint8_t>& header, const uint64_t* chunk_sizes,
                     uint32_t num_chunks, const uint8_t* payload, size_t payload_len, bool checksum,
                     std::vector<uint8_t>* out) {
  uint64_t total = 0;
  for (uint32_t c = 0; c < num_chunks; ++c) {
    if (chunk_sizes[c] > UINT32_MAX) return invalid("a chunk grew past 4 GiB; lower chunk_size");
    total += chunk_sizes[c];
  }
  if (total != payload_len) {
    return invalid("chunk sizes add up to " + std::to_string(total) + " bytes, payload is " +
                   std::to_string(payload_len));
  }
  out->resize(header.size() + 4ull * num_chunks + payload_len + (checksum ? 4 : 0));
  uint8_t* p = out->data();
  if (!header.empty()) std::memcpy(p, header.data(), header.size());
  p += header.size();
  for (uint32_t c = 0; c < num_chunks; ++c, p += 4) {
    detail::store_le<uint32_t>(p, static_cast<uint32_t>(chunk_sizes[c]));
  }
  if (payload_len) std::memcpy(p, payload, payload_len);
  p += payload_len;
  if (checksum) detail::store_le<uint32_t>(p, crc32c(out->data(), static_cast<size_t>(p - out->data())));
  return {};
}

Error FrameEncoder::encode(const CdfTable& table, const void* symbols, DType dtype,
                           const SymbolLayout& layout, const uint8_t* meta, size_t meta_len,
                           const EncodeOptions& options) {
  chunks_.clear();
  header_.clear();
  size_ = 0;
  uint64_t n = 0;
  uint32_t nc = 0;
  if (Error e = build_frame_header(table, dtype, layout, meta, meta_len, options, &header_, &n, &nc)) {
    return e;
  }
  checksum_ = options.checksum;
  const RowMap rows = make_row_map(layout.shape, layout.ndim, layout.row_mode, layout.index);
  chunks_.resize(nc);
  const int threads = detail::resolve_threads(options.threads, nc, n >= kLargeInput);
  Error err = detail::parallel_for(nc, threads, [&](size_t c) -> Error {
    const uint64_t begin = static_cast<uint64_t>(c) * options.chunk_size;
    const uint32_t count = static_cast<uint32_t>(std::min<uint64_t>(options.chunk_size, n - begin));
    return detail::encode_chunk(table, symbols, dtype, rows, begin, count, options.lanes, &chunks_[c]);
  });
  if (err) {
    chunks_.clear();
    header_.clear();
    return err;
  }
  size_ = header_.size() + 4ull * nc + (checksum_ ? 4 : 0);
  for (const auto& c : chunks_) {
    if (c.size() > UINT32_MAX) return invalid("a chunk grew past 4 GiB; lower chunk_size");
    size_ += c.size();
  }
  return {};
}

Error FrameEncoder::write(uint8_t* out, size_t capacity) const {
  if (capacity < size_) {
    return {Status::kBufferTooSmall,
            "frame needs " + std::to_string(size_) + " bytes, capacity is " + std::to_string(capacity)};
  }
  if (header_.empty()) return invalid("nothing has been encoded");
  uint8_t* p = out;
  std::memcpy(p, header_.data(), header_.size());
  p += header_.size();
  for (const auto& c : chunks_) {
    detail::store_le<uint32_t>(p, static_cast<uint32_t>(c.size()));
    p += 4;
  }
  for (const auto& c : chunks_) {
    if (c.size()) std::memcpy(p, c.data(), c.size());
    p += c.size();
  }
  if (checksum_) {
    detail::store_le<uint32_t>(p, crc32c(out, static_cast<size_t>(p - out)));
  }
  return {};
}

Error parse_frame(const uint8_t* data, size_t len, const DecodeOptions& options, FrameHeader* out) {
  if (data == nullptr && len != 0) return invalid("null frame buffer");
  if (len < kFixedHeaderSize) {
    return corrupt("frame is " + std::to_string(len) + " bytes; the fixed header alone is " +
                   std::to_string(kFixedHeaderSize));
  }
  if (std::memcmp(data, kMagic, 4) != 0) return corrupt("not a taskcodec frame (magic is not 'TCDC')");
  FrameHeader h;
  h.version = data[4];
  if (h.version != kFormatVersion) {
    return {Status::kUnsupportedVersion, "frame format version " + std::to_string(h.version) +
                                             " is not supported; this build reads version " +
                                             std::to_string(kFormatVersion)};
  }
  h.flags = load_le<uint16_t>(data + 6);
  if (h.flags & ~kKnownFlags) return corrupt("unknown flag bits " + hex32(h.flags & ~kKnownFlags));
  size_t body_end = len;
  if (h.flags & kFlagChecksum) {
    if (len < kFixedHeaderSize + 4) return corrupt("frame too short for its CRC32C trailer");
    body_end = len - 4;
    const uint32_t stored = load_le<uint32_t>(data + body_end);
    const uint32_t actual = crc32c(data, body_end);
    if (stored != actual) {
      return {Status::kChecksumMismatch,
              "CRC32C of the frame is " + hex32(actual) + " but its trailer says " + hex32(stored)};
    }
  }
  const uint8_t kind = data[5];
  if (kind != static_cast<uint8_t>(FrameKind::kSymbols) &&
      kind != static_cast<uint8_t>(FrameKind::kSparseUpdate)) {
    return corrupt("unknown frame kind " + std::to_string(kind));
  }
  h.kind = static_cast<FrameKind>(kind);
  h.header_length = load_le<uint32_t>(data + 8);
  if (!dtype_valid(data[12])) return corrupt("unknown dtype code " + std::to_string(data[12]));
  h.dtype = static_cast<DType>(data[12]);
  const uint32_t ndim = data[13];
  if (ndim > kMaxDims) return corrupt("frame declares " + std::to_string(ndim) + " dims; at most 16");
  h.row_mode = data[14];
  if (h.row_mode != kRowSingle && h.row_mode != kRowIndex && h.row_mode >= ndim) {
    return corrupt("channel axis " + std::to_string(h.row_mode) + " is out of range for " +
                   std::to_string(ndim) + " dims");
  }
  h.precision = data[15];
  if (h.precision < 1 || h.precision > kMaxPrecision) {
    return corrupt("precision " + std::to_string(h.precision) + " is outside 1..16");
  }
  const uint16_t lanes_field = load_le<uint16_t>(data + 16);
  h.lanes = lanes_field;
  if (!is_pow2(h.lanes) || h.lanes > kMaxLanes) {
    return corrupt("lane count " + std::to_string(lanes_field) + " is not a power of two up to 256");
  }
  if (load_le<uint16_t>(data + 18) != 0) return corrupt("reserved header bytes are not zero");
  h.chunk_size = load_le<uint32_t>(data + 20);
  if (h.chunk_size == 0) return corrupt("chunk size is zero");
  h.fingerprint = load_le<uint64_t>(data + 24);
  h.num_symbols = load_le<uint64_t>(data + 32);
  h.num_chunks = load_le<uint32_t>(data + 40);
  h.meta_length = load_le<uint32_t>(data + 44);
  if (h.meta_length > kMaxMetaBytes) {
    return corrupt("meta block of " + std::to_string(h.meta_length) + " bytes exceeds the 1 MiB limit");
  }
  const bool indexed = h.row_mode == kRowIndex;
  const uint64_t want_header = kFixedHeaderSize + 8ull * ndim + (indexed ? 4 : 0) + h.meta_length;
  if (h.header_length != want_header) {
    return corrupt("header length field says " + std::to_string(h.header_length) +
                   " bytes but ndim, row mode and meta length give " + std::to_string(want_header));
  }
  if (want_header > body_end) {
    return corrupt("header of " + std::to_string(want_header) + " bytes does not fit in a frame of " +
                   std::to_string(body_end) + " bytes");
  }
  h.shape.resize(ndim);
  for (uint32_t i = 0; i < ndim; ++i) h.shape[i] = load_le<uint64_t>(data + kFixedHeaderSize + 8 * i);
  uint64_t n = 0;
  if (!shape_product(h.shape.data(), ndim, &n) || n != h.num_symbols) {
    return corrupt("shape does not multiply out to the declared " + std::to_string(h.num_symbols) +
                   " symbols");
  }
  if (h.num_symbols > options.max_symbols) {
    return {Status::kLimitExceeded, "frame holds " + std::to_string(h.num_symbols) +
                                        " symbols, more than max_symbols = " +
                                        std::to_string(options.max_symbols)};
  }
  const uint64_t want_chunks = (h.num_symbols + h.chunk_size - 1) / h.chunk_size;
  if (want_chunks != h.num_chunks) {
    return corrupt("frame declares " + std::to_string(h.num_chunks) + " chunks but " +
                   std::to_string(h.num_symbols) + " symbols in chunks of " +
                   std::to_string(h.chunk_size) + " need " + std::to_string(want_chunks));
  }
  if (indexed) h.index_checksum = load_le<uint32_t>(data + kFixedHeaderSize + 8ull * ndim);
  h.meta = data + kFixedHeaderSize + 8ull * ndim + (indexed ? 4 : 0);
  const uint64_t after_header = body_end - want_header;
  if (after_header / 4 < h.num_chunks) {
    return corrupt("frame declares " + std::to_string(h.num_chunks) + " chunks but only " +
                   std::to_string(after_header / 4) + " directory entries fit");
  }
  h.directory = data + want_header;
  h.payload = h.directory + 4ull * h.num_chunks;
  h.payload_length = after_header - 4ull * h.num_chunks;
  uint64_t total = 0;
  const uint64_t min_chunk = 4ull * h.lanes;
  for (uint32_t c = 0; c < h.num_chunks; ++c) {
    const uint32_t cl = load_le<uint32_t>(h.directory + 4ull * c);
    if (cl < min_chunk || (cl - min_chunk) % 2 != 0) {
      return corrupt("chunk " + std::to_string(c) + " is " + std::to_string(cl) +
                     " bytes; a chunk holds " + std::to_string(min_chunk) +
                     " bytes of lane states plus whole 16-bit words");
    }
    total += cl;
  }
  if (total != h.payload_length) {
    return corrupt("chunk directory adds up to " + std::to_string(total) + " bytes but the frame holds " +
                   std::to_string(h.payload_length) + " bytes of chunks");
  }
  *out = std::move(h);
  return {};
}

Error check_decode(const FrameHeader& h, const CdfTable& table, const int32_t* index,
                    size_t index_len) {
  if (h.kind != FrameKind::kSymbols) return invalid("frame holds a sparse update, not symbols");
  if (h.fingerprint != table.fingerprint()) {
    return {Status::kTableMismatch, "frame was coded with table fingerprint " + hex64(h.fingerprint) +
                                        " but the given table has " + hex64(table.fingerprint())};
  }
  if (h.precision != table.precision()) {
    return corrupt("frame precision " + std::to_string(h.precision) +
                   " disagrees with its table's " + std::to_string(table.precision()));
  }
  if (h.row_mode == kRowIndex) {
    if (!index) return invalid("frame was coded with an explicit row index; pass the same index");
    if (index_len != h.num_symbols) {
      return invalid("index has " + std::to_string(index_len) + " entries, frame has " +
                     std::to_string(h.num_symbols) + " symbols");
    }
  } else if (index) {
    return invalid("frame was coded with " + mode_name(h.row_mode) + ", not with an index");
  }
  SymbolLayout layout{h.shape.data(), h.shape.size(), h.row_mode, index};
  if (Error e = check_layout(table, layout, h.num_symbols)) {
    if (h.row_mode == kRowIndex) return e;
    return corrupt("frame layout does not fit its table: " + e.message);
  }
  if (h.row_mode == kRowIndex) {
    const uint32_t got = index_checksum(index, index_len);
    if (got != h.index_checksum) {
      return {Status::kTableMismatch, "the index differs from the one the frame was coded with "
                                      "(CRC32C " + hex32(got) + ", frame says " +
                                          hex32(h.index_checksum) + ")"};
    }
  }
  return {};
}

Error decode_frame(const FrameHeader& h, const CdfTable& table, const int32_t* index,
                   size_t index_len, int32_t* out, size_t out_len, const DecodeOptions& options) {
  if (Error e = check_decode(h, table, index, index_len)) return e;
  if (out_len != h.num_symbols) {
    return {Status::kBufferTooSmall, "output holds " + std::to_string(out_len) + " values, frame has " +
                                         std::to_string(h.num_symbols)};
  }
  table.prepare_decoder();
  const RowMap rows = make_row_map(h.shape.data(), h.shape.size(), h.row_mode, index);
  std::vector<uint64_t> starts(h.num_chunks + 1ull, 0);
  for (uint32_t c = 0; c < h.num_chunks; ++c) {
    starts[c + 1] = starts[c] + load_le<uint32_t>(h.directory + 4ull * c);
  }
  const int threads = detail::resolve_threads(options.threads, h.num_chunks, h.num_symbols >= kLargeInput);
  return detail::parallel_for(h.num_chunks, threads, [&](size_t c) -> Error {
    const uint64_t begin = static_cast<uint64_t>(c) * h.chunk_size;
    const uint32_t count = static_cast<uint32_t>(std::min<uint64_t>(h.chunk_size, h.num_symbols - begin));
    Error e = detail::decode_chunk(table, rows, begin, count, h.lanes, h.payload + starts[c],
                                   starts[c + 1] - starts[c], out + begin);
    if (e) e.message = "chunk " + std::to_string(c) + ": " + e.message;
    return e;
  });
}

}  // namespace taskcodec
