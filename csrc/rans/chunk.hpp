// Coding of one chunk: `lanes` interleaved rANS states over a run of symbols.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "taskcodec/frame.hpp"
#include "taskcodec/table.hpp"

namespace taskcodec::detail {

// How the flat symbol index maps to a table row.
struct RowMap {
  uint8_t mode = kRowSingle;  // kRowSingle, kRowIndex, or a channel axis
  uint64_t inner = 1;         // product of the dims after the channel axis
  uint64_t channels = 1;      // size of the channel axis
  const int32_t* index = nullptr;
  uint32_t row_of(uint64_t i) const noexcept {
    if (mode == kRowSingle) return 0;
    if (mode == kRowIndex) return static_cast<uint32_t>(index[i]);
    return static_cast<uint32_t>((i / inner) % channels);
  }
  // End (exclusive) of the run of equal rows that contains i; 1 past i for an index.
  uint64_t run_end(uint64_t i) const noexcept {
    if (mode == kRowSingle) return UINT64_MAX;
    if (mode == kRowIndex) return i + 1;
    return (i / inner + 1) * inner;
  }
  // Start of the run of equal rows that contains i.
  uint64_t run_begin(uint64_t i) const noexcept {
    if (mode == kRowSingle) return 0;
    if (mode == kRowIndex) return i;
    return (i / inner) * inner;
  }
};

// A coded chunk: the words are written downward into a buffer sized for the worst
// case and left there (untouched pages of the buffer are never backed by memory).
struct ChunkBuffer {
  std::unique_ptr<uint16_t[]> words;
  size_t begin = 0;  // first word of the chunk
  size_t end = 0;    // one past the last
  const uint8_t* data() const noexcept {
    return reinterpret_cast<const uint8_t*>(words.get() + begin);
  }
  size_t size() const noexcept { return (end - begin) * 2; }
};

// Encodes symbols [begin, begin + count) of `symbols` into *out.
Error encode_chunk(const CdfTable& table, const void* symbols, DType dtype, const RowMap& rows,
                   uint64_t begin, uint32_t count, uint32_t lanes, ChunkBuffer* out);

// Decodes one chunk of `count` symbols into out[0 .. count).
Error decode_chunk(const CdfTable& table, const RowMap& rows, uint64_t begin, uint32_t count,
                   uint32_t lanes, const uint8_t* data, size_t len, int32_t* out);

}  // namespace taskcodec::detail
