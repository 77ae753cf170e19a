// SIMD kernels of the chunk coder, chosen at run time (no -march flags: one binary
// runs on every CPU of its architecture). They produce and read exactly the bytes of
// the scalar code; where a group of symbols needs the general path (an escape, a fine
// bucket) they stop and the scalar code takes over.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "taskcodec/table.hpp"

namespace taskcodec::detail {

// True when the AVX2 kernels can run on this CPU (and TASKCODEC_NO_SIMD is not set).
bool simd_available() noexcept;

// Decodes groups of 8 symbols of one row, starting at a (a multiple of 8, lanes >= 8),
// while a whole group fits before b. Needs 8 readable words at every group start.
// Returns where it stopped: b rounded down to a group, or the first group that needs
// the scalar path. Nothing of that group has been consumed.
uint64_t decode_row_simd(const RowDecoder& rd, uint32_t precision, uint32_t shift, uint32_t* st,
                         uint32_t mask, uint64_t a, uint64_t b, const uint8_t* words,
                         size_t* pos, int32_t* out) noexcept;

// Encodes groups of 8 symbols of one row, last group first, from b (a multiple of 8,
// lanes >= 8) down while a whole group lies at or above a. `info` and `magic` are the
// row's CdfTable::info / magic arrays. Needs 8 free words below *pos. Returns where it
// stopped: the low end of the last group it coded (b when it coded none), stopping
// before a group with a symbol that needs an escape.
template <class T>
uint64_t encode_row_simd(const RowEncoder& re, const uint32_t* info, const uint32_t* magic,
                         uint32_t precision, const T* in, uint32_t* st, uint32_t mask, uint64_t a,
                         uint64_t b, uint16_t* words, size_t* pos) noexcept;

// Types with a SIMD encoder (wider types always take the scalar path).
template <class T>
inline constexpr bool kSimdEncodable =
    std::is_same_v<T, int8_t> || std::is_same_v<T, uint8_t> || std::is_same_v<T, int16_t> ||
    std::is_same_v<T, uint16_t> || std::is_same_v<T, int32_t>;

}  // namespace taskcodec::detail
