#include "chunk.hpp"
#include "simd.hpp"

#include <algorithm>
#include <array>
#include <utility>
#include <limits>
#include <new>
#include <string>
#include <type_traits>

#include "../util/bytes.hpp"
#include "taskcodec/rans.hpp"

namespace taskcodec::detail {
namespace {

#if defined(__GNUC__) || defined(__clang__)
#define TASKCODEC_NOINLINE __attribute__((noinline))
#define TASKCODEC_LIKELY(x) __builtin_expect(!!(x), 1)
#define TASKCODEC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define TASKCODEC_NOINLINE
#define TASKCODEC_LIKELY(x) (x)
#define TASKCODEC_UNLIKELY(x) (x)
#endif

constexpr uint32_t kBlock = 256;  // symbols per bounds check in the decoder's fast loop

template <class T>
bool fits_i32(T v) {
  if constexpr (std::is_signed_v<T>) {
    return v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max();
  } else {
    return v <= static_cast<T>(std::numeric_limits<int32_t>::max());
  }
}

// Position of v in a row starting at `offset`; values below the row wrap to large numbers,
// so one unsigned compare with the row length tests "in range" (no signed overflow).
template <class T>
inline uint64_t local_index(T v, int32_t offset) {
  return static_cast<uint64_t>(static_cast<int64_t>(v)) -
         static_cast<uint64_t>(static_cast<int64_t>(offset));
}

// One in-range encoding step: push the low word when needed (the slot below pos is always
// free, so it is written unconditionally), then the state update. Branchless.
inline uint32_t enc_symbol_step(uint32_t x, const EncSymbol& e, uint16_t* words, size_t& pos) {
  const uint32_t push = enc_must_push(x, e.x_max);
  words[pos - 1] = static_cast<uint16_t>(x);
  pos -= push;
  const uint32_t m = 0u - push;  // select x >> 16 or x
  return enc_update(((x >> 16) & m) | (x & ~m), e);
}

// Decoder renormalisation when a word is known to be readable at pos. Branchless: it
// happens at random, about every few symbols.
inline uint32_t dec_renorm_unchecked(uint32_t x, const uint8_t* words, size_t& pos) {
  const uint32_t need = dec_needs_word(x);
  const uint32_t m = 0u - need;
  const uint32_t y = dec_shift_in(x, load_le<uint16_t>(words + 2 * pos));
  pos += need;
  return (y & m) | (x & ~m);
}

// ---------------------------------------------------------------- encoder

struct EncState {
  uint32_t* st;
  uint16_t* words;  // stack growing down
  size_t pos;
};

inline void push_uniform(uint32_t& x, uint32_t value, uint32_t bits, EncState& s) {
  const bool push = enc_must_push(x, uniform_x_max(bits));
  if (push) s.words[--s.pos] = static_cast<uint16_t>(x);
  x = enc_uniform_update(enc_after_push(x, push), value, bits);
}

template <class T>
TASKCODEC_NOINLINE Error encode_escape(T value, RowEncoder re, uint32_t& x, EncState& s,
                                       uint64_t at) {
  if (!fits_i32(value)) {
    return {Status::kInvalidArgument, "symbol " + std::to_string(at) + " = " +
                                          std::to_string(value) + " does not fit in int32"};
  }
  uint32_t sign;
  uint64_t d;
  escape_split(static_cast<int64_t>(value), re.offset, re.count, &sign, &d);
  const uint32_t nbits = bit_length(d);
  const uint32_t lo_bits = escape_low_bits(nbits);
  const uint32_t hi_bits = escape_high_bits(nbits);
  // Pushed in reverse of the decoding order: high piece, low piece, header, symbol.
  if (hi_bits) push_uniform(x, static_cast<uint32_t>(d >> 16) & ((1u << hi_bits) - 1u), hi_bits, s);
  if (lo_bits) push_uniform(x, static_cast<uint32_t>(d) & ((1u << lo_bits) - 1u), lo_bits, s);
  push_uniform(x, escape_header(sign, nbits), kEscapeHeaderBits, s);
  const EncSymbol& e = re.syms[re.count];
  const bool push = enc_must_push(x, e.x_max);
  if (push) s.words[--s.pos] = static_cast<uint16_t>(x);
  x = enc_update(enc_after_push(x, push), e);
  return {};
}

// Encodes chunk-local symbols [a, b) in reverse, row given by row_of(j).
template <class T, class RowFn>
Error encode_run(const T* in, uint64_t a, uint64_t b, uint32_t mask, RowFn row_of, EncState& s,
                 uint64_t begin) {
  uint32_t* const st = s.st;
  uint16_t* const words = s.words;
  size_t pos = s.pos;
  for (uint64_t j = b; j-- > a;) {
    const RowEncoder re = row_of(j);
    const uint32_t lane = static_cast<uint32_t>(j) & mask;
    uint32_t x = st[lane];
    const T v = in[j];
    const uint64_t local = local_index(v, re.offset);
    if (TASKCODEC_LIKELY(local < re.count && fits_i32(v))) {
      x = enc_symbol_step(x, re.syms[local], words, pos);
    } else {
      uint32_t xe = x;
      EncState se{st, words, pos};
      if (Error err = encode_escape(v, re, xe, se, begin + j)) return err;
      x = xe;
      pos = se.pos;
    }
    st[lane] = x;
  }
  s.pos = pos;
  return {};
}

// Hot loop for a run of symbols that share one row, in reverse. Stops at the first
// symbol (from the end) that needs an escape and returns one past its index (a when
// the run finished).
template <class T>
TASKCODEC_NOINLINE uint64_t encode_fixed_fast(const RowEncoder re, const T* in, uint32_t* st,
                                              uint32_t mask, uint64_t a, uint64_t b,
                                              uint16_t* words, size_t* pos_io) {
  const EncSymbol* const syms = re.syms;
  const uint64_t count = re.count;
  size_t pos = *pos_io;
  uint64_t j = b;
  for (; j > a; --j) {
    const T v = in[j - 1];
    const uint64_t local = local_index(v, re.offset);
    if (TASKCODEC_UNLIKELY(local >= count || !fits_i32(v))) break;
    const uint32_t lane = static_cast<uint32_t>(j - 1) & mask;
    st[lane] = enc_symbol_step(st[lane], syms[local], words, pos);
  }
  *pos_io = pos;
  return j;
}

template <class T>
Error encode_chunk_t(const CdfTable& table, const T* symbols, const RowMap& rows, uint64_t begin,
                     uint32_t count, uint32_t lanes, ChunkBuffer* out) {
  const size_t cap = static_cast<size_t>(count) * kMaxWordsPerSymbol + 2 * lanes + 8;
  out->words.reset(new (std::nothrow) uint16_t[cap]);  // not value-initialised
  if (!out->words) return {Status::kOutOfMemory, "out of memory for a chunk buffer"};
  uint32_t st[kMaxLanes];
  std::fill_n(st, lanes, kRansLow);
  EncState s{st, out->words.get(), cap};
  const uint32_t mask = lanes - 1;
  const T* in = symbols + begin;
  if (rows.mode == kRowIndex) {
    const int32_t* idx = rows.index + begin;
    auto row_of = [&](uint64_t j) { return table.encoder_row(static_cast<size_t>(idx[j])); };
    if (Error e = encode_run(in, 0, count, mask, row_of, s, begin)) return e;
  } else {
    uint64_t b = count;
    while (b > 0) {
      const uint64_t g = begin + b - 1;
      const uint64_t a = std::max<uint64_t>(rows.run_begin(g), begin) - begin;
      const RowEncoder re = table.encoder_row(rows.row_of(g));
      auto row_of = [re](uint64_t) { return re; };
      const size_t row = rows.row_of(g);
      const bool simd = kSimdEncodable<T> && mask >= 7 && simd_available();
      while (b > a) {
        if constexpr (kSimdEncodable<T>) {
          if (simd && (b & 7) == 0 && b >= a + 8) {
            const uint64_t stop = encode_row_simd<T>(re, table.info(row), table.magic(row),
                                                     table.precision(), in, st, mask, a, b,
                                                     s.words, &s.pos);
            if (stop != b) {
              b = stop;
              continue;
            }
          }
        }
        // Scalar down to the next group boundary (or a), stopping at an escape.
        const uint64_t lim = std::max<uint64_t>(a, (b - 1) & ~uint64_t{7});
        const uint64_t stop = encode_fixed_fast<T>(re, in, st, mask, lim, b, s.words, &s.pos);
        if (stop == lim) {
          b = lim;
          continue;
        }
        b = stop;
        if (Error e = encode_run(in, b - 1, b, mask, row_of, s, begin)) return e;  // the escape
        --b;
      }
    }
  }
  // Flush: the decoder reads lane 0's state first, as a little-endian u32.
  for (uint32_t l = lanes; l-- > 0;) {
    s.words[--s.pos] = static_cast<uint16_t>(st[l] >> 16);
    s.words[--s.pos] = static_cast<uint16_t>(st[l]);
  }
  // The words are in memory in little-endian order already (little-endian CPUs only).
  out->begin = s.pos;
  out->end = cap;
  return {};
}

// ---------------------------------------------------------------- decoder

struct DecState {
  uint32_t* st;
  const uint8_t* words;
  size_t nwords;
  size_t pos;
};

Error truncated(uint64_t at) {
  return {Status::kCorruptStream,
          "chunk data ends early while decoding symbol " + std::to_string(at)};
}

inline bool pull_uniform(uint32_t& x, uint32_t bits, DecState& s, uint32_t* value) {
  *value = dec_uniform_value(x, bits);
  x = dec_uniform_update(x, bits);
  if (dec_needs_word(x)) {
    if (s.pos >= s.nwords) return false;
    x = dec_shift_in(x, load_le<uint16_t>(s.words + 2 * s.pos++));
  }
  return true;
}

// Called after the escape symbol has been decoded and renormalised.
TASKCODEC_NOINLINE Error decode_escape(int32_t offset, uint32_t count, uint32_t& x, DecState& s,
                                       uint64_t at, int32_t* value) {
  uint32_t header = 0, lo = 0, hi = 0;
  if (!pull_uniform(x, kEscapeHeaderBits, s, &header)) return truncated(at);
  const uint32_t sign = escape_header_sign(header);
  const uint32_t nbits = escape_header_nbits(header);
  if (nbits > kMaxEscapeBits) {
    return {Status::kCorruptStream, "escape of symbol " + std::to_string(at) + " declares " +
                                        std::to_string(nbits) + " bits; at most 32 are valid"};
  }
  const uint32_t lo_bits = escape_low_bits(nbits);
  const uint32_t hi_bits = escape_high_bits(nbits);
  if (lo_bits && !pull_uniform(x, lo_bits, s, &lo)) return truncated(at);
  if (hi_bits && !pull_uniform(x, hi_bits, s, &hi)) return truncated(at);
  if (!escape_join(sign, nbits, lo, hi, offset, count, value)) {
    return {Status::kCorruptStream, "escaped symbol " + std::to_string(at) + " is outside int32"};
  }
  return {};
}

// Decodes chunk-local symbols [a, b). Unchecked: the caller guarantees enough words.
// Nothing of the hot state has its address taken, so it stays in registers; the
// escape path works on copies.
template <bool kChecked, class RowFn>
Error decode_run(uint64_t a, uint64_t b, uint32_t mask, uint32_t precision, uint32_t shift,
                 RowFn row_of, DecState& s, int32_t* out, uint64_t begin) {
  uint32_t* const st = s.st;
  const uint8_t* const words = s.words;
  const size_t nwords = s.nwords;
  size_t pos = s.pos;
  const uint32_t pmask = (1u << precision) - 1u;
  for (uint64_t j = a; j < b; ++j) {
    const RowDecoder rd = row_of(j);
    const uint32_t lane = static_cast<uint32_t>(j) & mask;
    uint32_t x = st[lane];
    const uint32_t slot = x & pmask;
    const uint32_t sym = lookup_symbol(rd, slot, shift);
    const uint32_t info = rd.info[sym];
    x = dec_update(x, info & 0xFFFFu, info >> 16, precision);
    if constexpr (kChecked) {
      if (dec_needs_word(x)) {
        if (pos >= nwords) return truncated(begin + j);
        x = dec_shift_in(x, load_le<uint16_t>(words + 2 * pos++));
      }
    } else {
      // Branchless: the renormalisation is taken about half of the time at random.
      x = dec_renorm_unchecked(x, words, pos);
    }
    if (TASKCODEC_LIKELY(sym != rd.count)) {
      out[j] = rd.offset + static_cast<int32_t>(sym);
    } else {
      uint32_t xe = x;
      DecState se{st, words, nwords, pos};
      if (Error e = decode_escape(rd.offset, rd.count, xe, se, begin + j, out + j)) return e;
      x = xe;
      pos = se.pos;
    }
    st[lane] = x;
  }
  s.pos = pos;
  return {};
}

// Hot loop for a run of symbols that share one row, with enough words guaranteed for
// every symbol (kMaxWordsPerSymbol each). Stops before an escape symbol and returns its
// chunk-local index (b when the run finished). The precision is a template argument so
// that the state shifts are constants.
template <uint32_t P>
TASKCODEC_NOINLINE uint64_t decode_fixed_fast(const RowDecoder rd, uint32_t shift, uint32_t* st,
                                              uint32_t mask, uint64_t a, uint64_t b,
                                              const uint8_t* words, size_t* pos_io, int32_t* out) {
  const uint32_t* const info_tab = rd.info;
  const int32_t offset = rd.offset;
  const uint32_t esc = rd.count;
  size_t pos = *pos_io;
  uint64_t j = a;
  for (; j < b; ++j) {
    const uint32_t lane = static_cast<uint32_t>(j) & mask;
    uint32_t x = st[lane];
    const uint32_t slot = x & ((1u << P) - 1u);
    const uint32_t sym = lookup_symbol(rd, slot, shift);
    if (TASKCODEC_UNLIKELY(sym == esc)) break;
    const uint32_t info = info_tab[sym];
    x = dec_update(x, info & 0xFFFFu, info >> 16, P);
    st[lane] = dec_renorm_unchecked(x, words, pos);
    out[j] = offset + static_cast<int32_t>(sym);
  }
  *pos_io = pos;
  return j;
}

using DecodeFastFn = uint64_t (*)(const RowDecoder, uint32_t, uint32_t*, uint32_t, uint64_t,
                                  uint64_t, const uint8_t*, size_t*, int32_t*);

template <uint32_t... P>
constexpr std::array<DecodeFastFn, sizeof...(P)> decode_fast_table(std::integer_sequence<uint32_t, P...>) {
  return {&decode_fixed_fast<P + 1>...};
}

DecodeFastFn decode_fast_for(uint32_t precision) {
  static constexpr auto table = decode_fast_table(std::make_integer_sequence<uint32_t, kMaxPrecision>{});
  return table[precision - 1];
}

template <class RowFn>
Error decode_span(uint64_t a, uint64_t b, uint32_t mask, uint32_t precision, uint32_t shift,
                  RowFn row_of, DecState& s, int32_t* out, uint64_t begin, bool fixed_row) {
  while (a < b) {
    uint64_t e = std::min<uint64_t>(b, a + kBlock);
    Error err;
    if (s.nwords - s.pos >= kMaxWordsPerSymbol * (e - a)) {
      if (fixed_row) {
        // SIMD groups of 8 where possible, the scalar kernel up to the next group
        // boundary otherwise, and the general code for an escape.
        const RowDecoder rd = row_of(a);
        const bool simd = mask >= 7 && simd_available();
        const DecodeFastFn scalar = decode_fast_for(precision);
        uint64_t j = a;
        while (j < e) {
          if (simd && (j & 7) == 0 && j + 8 <= e) {
            const uint64_t stop = decode_row_simd(rd, precision, shift, s.st, mask, j, e, s.words, &s.pos, out);
            if (stop != j) {
              j = stop;
              continue;
            }
          }
          const uint64_t lim = std::min<uint64_t>(e, (j | 7) + 1);
          const uint64_t stop = scalar(rd, shift, s.st, mask, j, lim, s.words, &s.pos, out);
          if (stop < lim) {
            if (Error err2 = decode_run<false>(stop, stop + 1, mask, precision, shift, row_of, s, out, begin)) {
              return err2;
            }
            j = stop + 1;
          } else {
            j = lim;
          }
        }
        a = e;
        continue;
      }
      err = decode_run<false>(a, e, mask, precision, shift, row_of, s, out, begin);
    } else {
      err = decode_run<true>(a, e, mask, precision, shift, row_of, s, out, begin);
    }
    if (err) return err;
    a = e;
  }
  return {};
}

Error decode_chunk_t(const CdfTable& table, const RowMap& rows, uint64_t begin, uint32_t count,
                     uint32_t lanes, const uint8_t* data, size_t len, int32_t* out) {
  const size_t state_bytes = 4ull * lanes;
  if (len < state_bytes || (len - state_bytes) % 2 != 0) {
    return {Status::kCorruptStream, "chunk of " + std::to_string(len) + " bytes cannot hold " +
                                        std::to_string(lanes) +
                                        " 4-byte lane states followed by 16-bit words"};
  }
  uint32_t st[kMaxLanes];
  for (uint32_t l = 0; l < lanes; ++l) {
    st[l] = load_le<uint32_t>(data + 4 * l);
    if (st[l] < kRansLow) {
      return {Status::kCorruptStream, "lane " + std::to_string(l) + " starts in state " +
                                          std::to_string(st[l]) + ", below the minimum 65536"};
    }
  }
  DecState s{st, data + state_bytes, (len - state_bytes) / 2, 0};
  const uint32_t mask = lanes - 1;
  const uint32_t precision = table.precision();
  const uint32_t shift = table.bucket_shift();
  if (rows.mode == kRowIndex) {
    const int32_t* idx = rows.index + begin;
    auto row_of = [&](uint64_t j) { return table.decoder_row(static_cast<size_t>(idx[j])); };
    if (Error e = decode_span(0, count, mask, precision, shift, row_of, s, out, begin, false)) return e;
  } else {
    uint64_t a = 0;
    while (a < count) {
      const uint64_t g = begin + a;
      const uint64_t b = std::min<uint64_t>(rows.run_end(g) - begin, count);
      const RowDecoder rd = table.decoder_row(rows.row_of(g));
      auto row_of = [rd](uint64_t) { return rd; };
      if (Error e = decode_span(a, b, mask, precision, shift, row_of, s, out, begin, true)) return e;
      a = b;
    }
  }
  if (s.pos != s.nwords) {
    return {Status::kCorruptStream, "chunk holds " + std::to_string(s.nwords) +
                                        " words but decoding used " + std::to_string(s.pos)};
  }
  for (uint32_t l = 0; l < lanes; ++l) {
    if (st[l] != kRansLow) {
      return {Status::kCorruptStream, "lane " + std::to_string(l) + " ends in state " +
                                          std::to_string(st[l]) + " instead of 65536"};
    }
  }
  return {};
}

}  // namespace

Error encode_chunk(const CdfTable& table, const void* symbols, DType dtype, const RowMap& rows,
                   uint64_t begin, uint32_t count, uint32_t lanes, ChunkBuffer* out) {
  switch (dtype) {
    case DType::kInt8: return encode_chunk_t(table, static_cast<const int8_t*>(symbols), rows, begin, count, lanes, out);
    case DType::kUInt8: return encode_chunk_t(table, static_cast<const uint8_t*>(symbols), rows, begin, count, lanes, out);
    case DType::kInt16: return encode_chunk_t(table, static_cast<const int16_t*>(symbols), rows, begin, count, lanes, out);
    case DType::kUInt16: return encode_chunk_t(table, static_cast<const uint16_t*>(symbols), rows, begin, count, lanes, out);
    case DType::kInt32: return encode_chunk_t(table, static_cast<const int32_t*>(symbols), rows, begin, count, lanes, out);
    case DType::kUInt32: return encode_chunk_t(table, static_cast<const uint32_t*>(symbols), rows, begin, count, lanes, out);
    case DType::kInt64: return encode_chunk_t(table, static_cast<const int64_t*>(symbols), rows, begin, count, lanes, out);
    case DType::kUInt64: return encode_chunk_t(table, static_cast<const uint64_t*>(symbols), rows, begin, count, lanes, out);
  }
  return {Status::kInvalidArgument, "unknown symbol dtype"};
}

Error decode_chunk(const CdfTable& table, const RowMap& rows, uint64_t begin, uint32_t count,
                   uint32_t lanes, const uint8_t* data, size_t len, int32_t* out) {
  return decode_chunk_t(table, rows, begin, count, lanes, data, len, out);
}

}  // namespace taskcodec::detail
