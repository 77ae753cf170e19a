// The frame: a versioned, self-describing container around rANS-coded chunks
// (docs/format.md is the normative description).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "taskcodec/status.hpp"
#include "taskcodec/table.hpp"

namespace taskcodec {

inline constexpr uint8_t kMagic[4] = {'T', 'C', 'D', 'C'};
inline constexpr size_t kFixedHeaderSize = 48;
inline constexpr size_t kMaxDims = 16;
inline constexpr uint16_t kFlagChecksum = 1u << 0;
inline constexpr uint16_t kKnownFlags = kFlagChecksum;
inline constexpr uint32_t kMaxLanes = 256;
inline constexpr uint32_t kMaxMetaBytes = 1u << 20;
inline constexpr uint8_t kRowSingle = 0xFF;  // every symbol uses row 0
inline constexpr uint8_t kRowIndex = 0xFE;   // rows come from a caller index array
inline constexpr uint32_t kDefaultLanes = 32;
inline constexpr uint32_t kDefaultChunkSize = 1u << 20;
inline constexpr uint64_t kDefaultMaxSymbols = 1ull << 28;
// The most words one symbol can add to a chunk: escape symbol, escape header, two pieces.
inline constexpr uint32_t kMaxWordsPerSymbol = 4;

enum class FrameKind : uint8_t { kSymbols = 1, kSparseUpdate = 2 };

// Element type of the symbols given to the encoder (recorded in the frame).
enum class DType : uint8_t {
  kInt8 = 1, kUInt8 = 2, kInt16 = 3, kUInt16 = 4, kInt32 = 5, kUInt32 = 6, kInt64 = 7, kUInt64 = 8,
};
const char* dtype_name(DType d) noexcept;
bool dtype_valid(uint8_t code) noexcept;

struct FrameHeader {
  uint8_t version = 0;
  FrameKind kind = FrameKind::kSymbols;
  uint16_t flags = 0;
  uint32_t header_length = 0;
  DType dtype = DType::kInt32;
  uint8_t row_mode = kRowSingle;  // channel axis, kRowSingle or kRowIndex
  uint32_t precision = 0;
  uint32_t lanes = 0;
  uint32_t chunk_size = 0;
  uint64_t fingerprint = 0;
  uint64_t num_symbols = 0;
  uint32_t num_chunks = 0;
  std::vector<uint64_t> shape;
  uint32_t index_checksum = 0;    // with kRowIndex: CRC32C of the index (int32 LE)
  const uint8_t* meta = nullptr;  // points into the frame
  uint32_t meta_length = 0;
  const uint8_t* directory = nullptr;  // num_chunks little-endian u32 lengths
  const uint8_t* payload = nullptr;    // first chunk
  uint64_t payload_length = 0;
};

namespace detail {
struct ChunkBuffer;
}

struct EncodeOptions {
  uint32_t lanes = kDefaultLanes;
  uint32_t chunk_size = kDefaultChunkSize;
  bool checksum = true;
  int threads = 0;  // 0: automatic (one thread for small inputs)
  FrameKind kind = FrameKind::kSymbols;
};

struct DecodeOptions {
  uint64_t max_symbols = kDefaultMaxSymbols;
  int threads = 0;
};

// Rows of the symbols: row_mode is a channel axis (< shape.size()), kRowSingle or kRowIndex.
struct SymbolLayout {
  const uint64_t* shape = nullptr;
  size_t ndim = 0;
  uint8_t row_mode = kRowSingle;
  const int32_t* index = nullptr;  // with kRowIndex: one row per symbol
};

// Encodes into internal per-chunk buffers; size() then tells the exact frame size and
// write() copies the frame into caller memory. Thread-compatible, not thread-safe.
class FrameEncoder {
 public:
  FrameEncoder();
  ~FrameEncoder();
  FrameEncoder(const FrameEncoder&) = delete;
  FrameEncoder& operator=(const FrameEncoder&) = delete;
  Error encode(const CdfTable& table, const void* symbols, DType dtype, const SymbolLayout& layout,
               const uint8_t* meta, size_t meta_len, const EncodeOptions& options);
  size_t size() const noexcept { return size_; }
  Error write(uint8_t* out, size_t capacity) const;

 private:
  std::vector<uint8_t> header_;
  std::vector<detail::ChunkBuffer> chunks_;
  bool checksum_ = true;
  size_t size_ = 0;
};

// The header of a frame (everything before the chunk directory) after validating the
// options and the layout; num_symbols and num_chunks follow from the shape and options.
// FrameEncoder and the GPU encoder share it.
Error build_frame_header(const CdfTable& table, DType dtype, const SymbolLayout& layout,
                        const uint8_t* meta, size_t meta_len, const EncodeOptions& options,
                        std::vector<uint8_t>* header, uint64_t* num_symbols, uint32_t* num_chunks);

// A whole frame from its header, the byte size of every chunk and the chunks back to back
// (the CRC32C trailer is added when `checksum`).
Error assemble_frame(const std::vector<uint8_t>& header, const uint64_t* chunk_sizes,
                     uint32_t num_chunks, const uint8_t* payload, size_t payload_len, bool checksum,
                     std::vector<uint8_t>* out);

// Validates everything that can be checked without the table: magic, version, flags,
// CRC, lengths, the chunk directory and the caller's limits. Never reads out of bounds.
Error parse_frame(const uint8_t* data, size_t len, const DecodeOptions& options, FrameHeader* out);

// Checks that a parsed frame fits this table and index (fingerprint, layout), before
// any output is allocated.
Error check_decode(const FrameHeader& header, const CdfTable& table, const int32_t* index,
                   size_t index_len);

// Decodes a parsed frame into out (num_symbols int32 values).
Error decode_frame(const FrameHeader& header, const CdfTable& table, const int32_t* index,
                   size_t index_len, int32_t* out, size_t out_len, const DecodeOptions& options);

// Checks that a layout fits a table: the channel axis matches the row count, or every
// index entry names a row, or the table has one row.
Error check_layout(const CdfTable& table, const SymbolLayout& layout, uint64_t num_symbols);

}  // namespace taskcodec
