// CUDA kernels of the rANS coder: one chunk per warp, one lane state per thread (lanes
// 32 s + t live in thread t for lane counts above 32; threads t >= lanes idle below 32).
//
// The format's word stream is shared by all lanes of a chunk in symbol order, so a warp
// that codes 32 consecutive symbols at once finds each thread's word position with a
// ballot and a population count (DietGPU's scheme). A group that holds an escape (rare:
// values outside their row) is coded one lane after the other, in symbol order, so the
// bytes stay exactly those of the CPU coder. All arithmetic is rans.hpp's.
#pragma once

#include <cstdint>

#include "taskcodec/cuda.hpp"
#include "taskcodec/rans.hpp"

namespace taskcodec::cuda::detail {

// The tables of one CdfTable in device memory.
struct DevTableView {
  const EncSymbol* enc;       // entries
  const uint32_t* info;       // entries: freq | start << 16
  const uint64_t* row_begin;  // rows
  const int32_t* offsets;     // rows
  const uint32_t* lengths;    // rows
  const uint32_t* buckets;    // rows << bucket_bits
  const uint16_t* fine;
  const uint64_t* fine_begin;  // rows
  uint32_t rows;
  uint32_t precision;
  uint32_t bucket_bits;
};

// One chunk to code. Positions are the symbol's index in its frame, below 2^32.
struct ChunkJob {
  const void* symbols;    // encode: the frame's symbols (typed by the launch), symbol 0
  const uint8_t* data;    // decode: the chunk's bytes
  uint64_t len;           // decode: their count
  int32_t* out;           // decode: the frame's output, symbol 0
  const int32_t* index;   // kRowIndex: the frame's index, symbol 0
  uint64_t scratch;       // encode: first word of this chunk's scratch region
  uint64_t cap;           // encode: words in that region
  uint32_t begin;         // first symbol of the chunk
  uint32_t count;         // symbols in the chunk
  FastDiv inner;          // channel mode: row = (i / inner) % channels
  FastDiv channels;
  uint32_t lanes;
  uint32_t row_mode;
};

constexpr int kWarpsPerBlock = 4;
constexpr uint32_t kMaxSub = kMaxLanes / 32;  // lane states per thread

__device__ __forceinline__ uint32_t row_of(const ChunkJob& job, uint32_t i, uint32_t rows,
                                           bool* bad) {
  if (job.row_mode == kRowSingle) return 0;
  if (job.row_mode == kRowIndex) {
    const int32_t r = __ldg(job.index + i);
    if (r < 0 || static_cast<uint32_t>(r) >= rows) {
      *bad = true;
      return 0;
    }
    return static_cast<uint32_t>(r);
  }
  const uint32_t q = fast_div(i, job.inner);
  return q - fast_div(q, job.channels) * job.channels.d;
}

__device__ __forceinline__ RowDecoder decoder_row(const DevTableView& t, uint32_t r) {
  RowDecoder rd;
  rd.buckets = t.buckets + (static_cast<uint64_t>(r) << t.bucket_bits);
  rd.fine = t.fine + __ldg(t.fine_begin + r);
  rd.info = t.info + __ldg(t.row_begin + r);
  rd.offset = __ldg(t.offsets + r);
  rd.count = __ldg(t.lengths + r);
  return rd;
}

__device__ __forceinline__ uint16_t load_word(const uint8_t* words, uint64_t pos) {
  // Little-endian 16-bit word; the chunk may start at any even or odd byte.
  return static_cast<uint16_t>(words[2 * pos] | (static_cast<uint16_t>(words[2 * pos + 1]) << 8));
}

// Hint that a line will be read soon (the word stream and the symbols are read in order).
__device__ __forceinline__ void prefetch_l2(const void* p) {
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

__device__ __forceinline__ uint32_t load_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

// Which chunk a thread's warp codes, and how its threads map to lanes.
struct WarpLanes {
  uint32_t tid;     // thread in the warp
  uint32_t active;  // threads with a lane: min(lanes, 32)
  uint32_t sub;     // lane states per thread: lanes / 32, at least 1
  unsigned amask;   // the active threads
};

__device__ __forceinline__ uint32_t warp_index() { return blockIdx.x * kWarpsPerBlock + threadIdx.x / 32; }

__device__ __forceinline__ WarpLanes warp_lanes(uint32_t lanes) {
  WarpLanes g;
  g.tid = threadIdx.x & 31;
  g.active = lanes < 32 ? lanes : 32;
  g.sub = lanes > 32 ? lanes / 32 : 1;
  g.amask = g.active == 32 ? 0xFFFFFFFFu : ((1u << g.active) - 1u);
  return g;
}

// ------------------------------------------------------------------------- decode

__global__ void decode_chunks(DevTableView t, const ChunkJob* jobs, uint32_t num_jobs,
                              uint32_t* status) {
  const uint32_t w = warp_index();
  if (w >= num_jobs) return;
  const ChunkJob job = jobs[w];
  const uint32_t lanes = job.lanes;
  const WarpLanes g0 = warp_lanes(lanes);
  const uint32_t tid = g0.tid, active = g0.active, sub = g0.sub;
  if (tid >= active) return;
  const unsigned amask = g0.amask;
  const unsigned lt_mask = (1u << tid) - 1u;
  const uint32_t precision = t.precision;
  const uint32_t pmask = (1u << precision) - 1u;
  const uint32_t shift = t.precision - t.bucket_bits;

  if (job.len < 4ull * lanes || (job.len - 4ull * lanes) % 2 != 0) {
    if (tid == 0) status[w] = static_cast<uint32_t>(ChunkStatus::kShortChunk);
    return;
  }
  uint32_t x[kMaxSub];
  bool bad = false;
#pragma unroll
  for (uint32_t s = 0; s < kMaxSub; ++s) {
    if (s < sub) {
      x[s] = load_u32(job.data + 4 * (s * 32 + tid));
      bad |= x[s] < kRansLow;
    }
  }
  if (__any_sync(amask, bad)) {
    if (tid == 0) status[w] = static_cast<uint32_t>(ChunkStatus::kBadInitialState);
    return;
  }
  const uint8_t* words = job.data + 4ull * lanes;
  const uint64_t nwords = (job.len - 4ull * lanes) / 2;
  uint64_t pos = 0;
  uint32_t err = 0;

  for (uint32_t g = 0; g < job.count; g += lanes) {
#pragma unroll
    for (uint32_t s = 0; s < kMaxSub; ++s) {
      if (s >= sub) break;
      const uint32_t j = g + s * 32 + tid;  // chunk-local symbol
      const bool live = j < job.count;
      bool bad_row = false;
      const uint32_t row = live ? row_of(job, job.begin + j, t.rows, &bad_row) : 0;
      if (__any_sync(amask, bad_row)) {
        err = static_cast<uint32_t>(ChunkStatus::kBadRow);
        break;
      }
      const RowDecoder rd = decoder_row(t, row);
      uint32_t xs = x[s];
      const uint32_t sym = lookup_symbol(rd, xs & pmask, shift);
      const uint32_t info = __ldg(rd.info + sym);
      if (live) xs = dec_update(xs, info & 0xFFFFu, info >> 16, precision);
      const bool need = live && dec_needs_word(xs);
      const bool esc = live && sym == rd.count;
      if (__ballot_sync(amask, esc) == 0) {
        const unsigned need_mask = __ballot_sync(amask, need);
        const uint32_t total = __popc(need_mask);
        if (pos + total > nwords) {
          err = static_cast<uint32_t>(ChunkStatus::kTruncated);
          break;
        }
        if (need) xs = dec_shift_in(xs, load_word(words, pos + __popc(need_mask & lt_mask)));
        pos += total;
        if (live) job.out[job.begin + j] = rd.offset + static_cast<int32_t>(sym);
      } else {
        // Lane by lane, in symbol order.
        for (uint32_t l = 0; l < active; ++l) {
          uint32_t e = 0;
          if (tid == l && live) {
            if (need) {
              if (pos >= nwords) e = static_cast<uint32_t>(ChunkStatus::kTruncated);
              else xs = dec_shift_in(xs, load_word(words, pos++));
            }
            int32_t value = rd.offset + static_cast<int32_t>(sym);
            if (!e && esc) {
              uint32_t piece[3] = {0, 0, 0};  // header, low, high
              uint32_t bits[3] = {kEscapeHeaderBits, 0, 0};
              for (int k = 0; k < 3 && !e; ++k) {
                if (k == 1) {
                  const uint32_t nbits = escape_header_nbits(piece[0]);
                  if (nbits > kMaxEscapeBits) {
                    e = static_cast<uint32_t>(ChunkStatus::kBadEscapeLength);
                    break;
                  }
                  bits[1] = escape_low_bits(nbits);
                  bits[2] = escape_high_bits(nbits);
                }
                if (!bits[k]) continue;
                piece[k] = dec_uniform_value(xs, bits[k]);
                xs = dec_uniform_update(xs, bits[k]);
                if (dec_needs_word(xs)) {
                  if (pos >= nwords) e = static_cast<uint32_t>(ChunkStatus::kTruncated);
                  else xs = dec_shift_in(xs, load_word(words, pos++));
                }
              }
              if (!e && !escape_join(escape_header_sign(piece[0]), escape_header_nbits(piece[0]),
                                     piece[1], piece[2], rd.offset, rd.count, &value)) {
                e = static_cast<uint32_t>(ChunkStatus::kEscapeOutOfRange);
              }
            }
            if (!e) job.out[job.begin + j] = value;
          }
          pos = __shfl_sync(amask, pos, l);
          e = __shfl_sync(amask, e, l);
          if (e) {
            err = e;
            break;
          }
        }
        if (err) break;
      }
      x[s] = xs;
    }
    if (err) break;
  }
  if (!err && pos != nwords) err = static_cast<uint32_t>(ChunkStatus::kTrailingWords);
  if (!err) {
    bool off = false;
#pragma unroll
    for (uint32_t s = 0; s < kMaxSub; ++s) {
      if (s < sub) off |= x[s] != kRansLow;
    }
    if (__any_sync(amask, off)) err = static_cast<uint32_t>(ChunkStatus::kBadFinalState);
  }
  if (tid == 0) status[w] = err;
}

// ------------------------------------------------------------------------- encode

template <class T>
__device__ __forceinline__ bool fits_i32(T v) {
  if constexpr (sizeof(T) < 4) {
    return true;
  } else if constexpr (static_cast<T>(-1) < static_cast<T>(0)) {
    return v >= static_cast<T>(INT32_MIN) && v <= static_cast<T>(INT32_MAX);
  } else {
    return v <= static_cast<T>(INT32_MAX);
  }
}

// One symbol pushed by one thread alone (the escape path): as the CPU's encode_escape /
// enc_symbol_step, words written downward from pos.
__device__ __forceinline__ void push_uniform(uint32_t& x, uint32_t value, uint32_t bits,
                                             uint16_t* words, uint64_t& pos) {
  const bool push = enc_must_push(x, uniform_x_max(bits));
  if (push) words[--pos] = static_cast<uint16_t>(x);
  x = enc_uniform_update(enc_after_push(x, push), value, bits);
}

template <class T>
__global__ void encode_chunks(DevTableView t, const ChunkJob* jobs, uint32_t num_jobs,
                              uint16_t* scratch, uint64_t* first_word, uint32_t* status) {
  const uint32_t w = warp_index();
  if (w >= num_jobs) return;
  const ChunkJob job = jobs[w];
  const uint32_t lanes = job.lanes;
  const WarpLanes g0 = warp_lanes(lanes);
  const uint32_t tid = g0.tid, active = g0.active, sub = g0.sub;
  if (tid >= active) return;
  const unsigned amask = g0.amask;
  const unsigned gt_mask = tid == 31 ? 0u : ~((2u << tid) - 1u);
  const T* in = static_cast<const T*>(job.symbols);
  uint16_t* words = scratch + job.scratch;
  uint64_t pos = job.cap;
  uint32_t err = 0;

  uint32_t x[kMaxSub];
#pragma unroll
  for (uint32_t s = 0; s < kMaxSub; ++s) x[s] = kRansLow;

  if (job.count > 0) {
    for (int64_t g = static_cast<int64_t>((job.count - 1) / lanes) * lanes; g >= 0; g -= lanes) {
#pragma unroll
      for (int s = kMaxSub - 1; s >= 0; --s) {
        if (static_cast<uint32_t>(s) >= sub) continue;
        const uint32_t j = static_cast<uint32_t>(g) + s * 32 + tid;
        const bool live = j < job.count;
        if (tid == 0 && s == 0 && g >= 4096) prefetch_l2(in + job.begin + static_cast<uint32_t>(g) - 4096);
        bool bad_row = false;
        T v = 0;
        uint32_t row = 0;
        if (live) {
          v = in[job.begin + j];
          row = row_of(job, job.begin + j, t.rows, &bad_row);
        }
        const bool wide = live && !fits_i32(v);
        if (__any_sync(amask, bad_row || wide)) {
          err = static_cast<uint32_t>(__any_sync(amask, bad_row) ? ChunkStatus::kBadRow
                                                                  : ChunkStatus::kSymbolTooWide);
          break;
        }
        const int32_t offset = __ldg(t.offsets + row);
        const uint32_t count = __ldg(t.lengths + row);
        const uint64_t rb = __ldg(t.row_begin + row);
        const uint64_t local = static_cast<uint64_t>(static_cast<int64_t>(v)) -
                               static_cast<uint64_t>(static_cast<int64_t>(offset));
        const bool in_range = local < count;
        uint32_t xs = x[s];
        if (__ballot_sync(amask, live && !in_range) == 0) {
          EncSymbol e{};
          if (live) e = t.enc[rb + local];
          const bool push = live && enc_must_push(xs, e.x_max);
          const unsigned push_mask = __ballot_sync(amask, push);
          if (push) words[pos - 1 - __popc(push_mask & gt_mask)] = static_cast<uint16_t>(xs);
          pos -= __popc(push_mask);
          if (live) xs = enc_update(enc_after_push(xs, push), e);
        } else {
          // Lane by lane, in reverse symbol order (the CPU's order).
          for (int l = static_cast<int>(active) - 1; l >= 0; --l) {
            if (static_cast<int>(tid) == l && live) {
              if (in_range) {
                const EncSymbol e = t.enc[rb + local];
                const bool push = enc_must_push(xs, e.x_max);
                if (push) words[--pos] = static_cast<uint16_t>(xs);
                xs = enc_update(enc_after_push(xs, push), e);
              } else {
                uint32_t sign;
                uint64_t d;
                escape_split(static_cast<int64_t>(v), offset, count, &sign, &d);
                const uint32_t nbits = bit_length(d);
                const uint32_t lo_bits = escape_low_bits(nbits);
                const uint32_t hi_bits = escape_high_bits(nbits);
                if (hi_bits) {
                  push_uniform(xs, static_cast<uint32_t>(d >> 16) & ((1u << hi_bits) - 1u), hi_bits,
                               words, pos);
                }
                if (lo_bits) {
                  push_uniform(xs, static_cast<uint32_t>(d) & ((1u << lo_bits) - 1u), lo_bits, words,
                               pos);
                }
                push_uniform(xs, escape_header(sign, nbits), kEscapeHeaderBits, words, pos);
                const EncSymbol e = t.enc[rb + count];
                const bool push = enc_must_push(xs, e.x_max);
                if (push) words[--pos] = static_cast<uint16_t>(xs);
                xs = enc_update(enc_after_push(xs, push), e);
              }
            }
            pos = __shfl_sync(amask, pos, l);
          }
        }
        x[s] = xs;
      }
      if (err) break;
    }
  }
  if (!err) {
    // Flush: lane 0's state first, each as a little-endian u32 (two words, low first).
    pos -= 2ull * lanes;
#pragma unroll
    for (uint32_t s = 0; s < kMaxSub; ++s) {
      if (s < sub) {
        const uint32_t lane = s * 32 + tid;
        words[pos + 2 * lane] = static_cast<uint16_t>(x[s]);
        words[pos + 2 * lane + 1] = static_cast<uint16_t>(x[s] >> 16);
      }
    }
  }
  if (tid == 0) {
    status[w] = err;
    first_word[w] = pos;
  }
}

// Copies every chunk's words from its scratch region to its place in the payload.
__global__ void gather_chunks(const uint16_t* scratch, const ChunkJob* jobs, const uint64_t* first_word,
                              const uint64_t* dest_word, uint32_t num_jobs, uint16_t* payload) {
  const uint32_t c = blockIdx.x;
  if (c >= num_jobs) return;
  const uint64_t begin = jobs[c].scratch + first_word[c];
  const uint64_t n = jobs[c].cap - first_word[c];
  const uint64_t dst = dest_word[c];
  for (uint64_t i = threadIdx.x; i < n; i += blockDim.x) payload[dst + i] = scratch[begin + i];
}

// ------------------------------------------------------------------------- quantize

__global__ void quantize_kernel(const float* x, uint64_t n, FastDiv inner, FastDiv channels,
                                const float* inv_step, const float* zero, int32_t* q,
                                uint32_t* status) {
  for (uint64_t i = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<uint64_t>(gridDim.x) * blockDim.x) {
    const uint32_t k = fast_div(static_cast<uint32_t>(i), inner);
    const uint32_t c = k - fast_div(k, channels) * channels.d;
    const float y = rintf(__fmul_rn(__fsub_rn(x[i], __ldg(zero + c)), __ldg(inv_step + c)));
    // Finite and inside int32 (2^31 is exactly representable; NaN fails both compares).
    if (!(y >= -2147483648.0f && y < 2147483648.0f)) {
      *status = 1;
      q[i] = 0;
    } else {
      q[i] = static_cast<int32_t>(y);
    }
  }
}

__global__ void dequantize_kernel(const int32_t* q, uint64_t n, FastDiv inner, FastDiv channels,
                                  const float* step, const float* zero, float* x) {
  for (uint64_t i = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<uint64_t>(gridDim.x) * blockDim.x) {
    const uint32_t k = fast_div(static_cast<uint32_t>(i), inner);
    const uint32_t c = k - fast_div(k, channels) * channels.d;
    x[i] = __fadd_rn(__fmul_rn(static_cast<float>(q[i]), __ldg(step + c)), __ldg(zero + c));
  }
}

}  // namespace taskcodec::cuda::detail
