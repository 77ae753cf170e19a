#include <array>
#include <cstdlib>
#include <type_traits>

#include "simd.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TASKCODEC_X86 1
#include <immintrin.h>
#endif

namespace taskcodec::detail {

#if TASKCODEC_X86

namespace {

// For a renormalisation mask m of 8 lanes, lane i (when it reads) takes word number
// popcount(m & ((1 << i) - 1)) of the 8 words starting at the cursor.
struct alignas(32) WordLut {
  uint32_t idx[256][8];
  WordLut() {
    for (uint32_t m = 0; m < 256; ++m) {
      uint32_t k = 0;
      for (uint32_t i = 0; i < 8; ++i) {
        idx[m][i] = (m >> i & 1u) ? k++ : 0;
      }
    }
  }
};
const WordLut kWordLut;

// For a push mask m of 8 lanes, output position 8 - popcount(m) + k takes the k-th
// pushing lane, so the pushed words end right below the cursor in lane order.
struct alignas(32) PushLut {
  uint32_t idx[256][8];
  PushLut() {
    for (uint32_t m = 0; m < 256; ++m) {
      const uint32_t n = static_cast<uint32_t>(__builtin_popcount(m));
      uint32_t k = 0;
      for (uint32_t i = 0; i < 8; ++i) idx[m][i] = 0;
      for (uint32_t i = 0; i < 8; ++i) {
        if (m >> i & 1u) idx[m][8 - n + k++] = i;
      }
    }
  }
};
const PushLut kPushLut;

}  // namespace

bool simd_available() noexcept {
  static const bool ok = __builtin_cpu_supports("avx2") && std::getenv("TASKCODEC_NO_SIMD") == nullptr;
  return ok;
}

// Everything below is compiled for AVX2 and only called after simd_available().
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,popcnt"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,popcnt")
#endif

namespace {

// Eight 32-bit table loads. Hardware gathers are slow on some CPUs (AMD before Zen 4);
// eight scalar loads through the stack are cheaper there and never slower by much.
inline __m256i gather8(const uint32_t* table, __m256i idx) {
  alignas(32) uint32_t i[8];
  alignas(32) uint32_t v[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(i), idx);
  for (int k = 0; k < 8; ++k) v[k] = table[i[k]];
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(v));
}

}  // namespace

uint64_t decode_row_simd(
    const RowDecoder& rd, uint32_t precision, uint32_t shift, uint32_t* st, uint32_t mask,
    uint64_t a, uint64_t b, const uint8_t* words, size_t* pos_io, int32_t* out) noexcept {
  const int* fine_tab = reinterpret_cast<const int*>(rd.fine);
  const __m256i pmask = _mm256_set1_epi32(static_cast<int>((1u << precision) - 1u));
  const __m256i wmask = _mm256_set1_epi32(static_cast<int>((1u << shift) - 1u));
  const __m128i vshift = _mm_cvtsi32_si128(static_cast<int>(shift));
  const __m128i vprec = _mm_cvtsi32_si128(static_cast<int>(precision));
  const __m256i lo16 = _mm256_set1_epi32(0xFFFF);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i zero = _mm256_setzero_si256();
  const __m256i fine = _mm256_set1_epi32(static_cast<int>(kFineBucket));
  const __m256i esc = _mm256_set1_epi32(static_cast<int>(rd.count));
  const __m256i off = _mm256_set1_epi32(rd.offset);
  size_t pos = *pos_io;
  uint64_t j = a;
  for (; j + 8 <= b; j += 8) {
    uint32_t* sp = st + (static_cast<uint32_t>(j) & mask);
    __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sp));
    const __m256i slot = _mm256_and_si256(x, pmask);
    const __m256i e = gather8(rd.buckets, _mm256_srl_epi32(slot, vshift));
    const __m256i bound = _mm256_srli_epi32(e, 16);
    const __m256i in_bucket = _mm256_and_si256(slot, wmask);
    // sym = sym0 + (in_bucket >= bound); all values are small and non-negative.
    const __m256i sym0 = _mm256_and_si256(e, lo16);
    const __m256i ge = _mm256_cmpgt_epi32(_mm256_add_epi32(in_bucket, one), bound);
    __m256i sym = _mm256_sub_epi32(sym0, ge);
    const __m256i is_fine = _mm256_cmpeq_epi32(bound, fine);
    if (!_mm256_testz_si256(is_fine, is_fine)) {
      // Lanes in buckets with several boundaries read the bucket's direct table (the
      // 16-bit entries are gathered as 32-bit words; the table has a padding entry).
      const __m256i fidx = _mm256_add_epi32(_mm256_sll_epi32(sym0, vshift), in_bucket);
      const __m256i fsym = _mm256_mask_i32gather_epi32(sym, fine_tab, fidx, is_fine, 2);
      sym = _mm256_blendv_epi8(sym, _mm256_and_si256(fsym, lo16), is_fine);
    }
    const __m256i bad = _mm256_cmpeq_epi32(sym, esc);
    if (!_mm256_testz_si256(bad, bad)) break;
    const __m256i info = gather8(rd.info, sym);
    const __m256i freq = _mm256_and_si256(info, lo16);
    const __m256i start = _mm256_srli_epi32(info, 16);
    x = _mm256_add_epi32(_mm256_mullo_epi32(freq, _mm256_srl_epi32(x, vprec)),
                         _mm256_sub_epi32(slot, start));
    const __m256i need = _mm256_cmpeq_epi32(_mm256_srli_epi32(x, 16), zero);
    const unsigned m = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(need)));
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(words + 2 * pos)));
    w = _mm256_permutevar8x32_epi32(w, _mm256_load_si256(reinterpret_cast<const __m256i*>(kWordLut.idx[m])));
    x = _mm256_blendv_epi8(x, _mm256_or_si256(_mm256_slli_epi32(x, 16), w), need);
    pos += static_cast<size_t>(__builtin_popcount(m));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(sp), x);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j), _mm256_add_epi32(sym, off));
  }
  *pos_io = pos;
  return j;
}

namespace {

template <class T>
inline __m256i load8(const T* p) {
  if constexpr (std::is_same_v<T, int32_t>) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  } else if constexpr (std::is_same_v<T, int16_t>) {
    return _mm256_cvtepi16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  } else if constexpr (std::is_same_v<T, uint16_t>) {
    return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  } else if constexpr (std::is_same_v<T, int8_t>) {
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  } else {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  }
}

}  // namespace

template <class T>
uint64_t encode_row_simd(
    const RowEncoder& re, const uint32_t* info, const uint32_t* magic, uint32_t precision,
    const T* in, uint32_t* st, uint32_t mask, uint64_t a, uint64_t b, uint16_t* words,
    size_t* pos_io) noexcept {
  const __m256i off = _mm256_set1_epi32(re.offset);
  const __m256i count = _mm256_set1_epi32(static_cast<int>(re.count));
  const __m256i lo16 = _mm256_set1_epi32(0xFFFF);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i m_total = _mm256_set1_epi32(static_cast<int>(1u << precision));
  const __m256i exp_bias = _mm256_set1_epi32(127);
  const __m128i xmax_shift = _mm_cvtsi32_si128(static_cast<int>(32 - precision));
  size_t pos = *pos_io;
  uint64_t j = b;
  for (; j >= a + 8; j -= 8) {
    const __m256i local = _mm256_sub_epi32(load8(in + (j - 8)), off);
    // local (as unsigned) >= count <=> min(local, count) == count
    const __m256i bad = _mm256_cmpeq_epi32(_mm256_min_epu32(local, count), count);
    if (!_mm256_testz_si256(bad, bad)) break;
    uint32_t* sp = st + (static_cast<uint32_t>(j - 8) & mask);
    __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sp));
    const __m256i inf = gather8(info, local);
    const __m256i mag = gather8(magic, local);
    const __m256i freq = _mm256_and_si256(inf, lo16);
    const __m256i start = _mm256_srli_epi32(inf, 16);
    // Renormalise: lanes with x >= freq << (32 - precision) push their low 16 bits.
    const __m256i x_max = _mm256_sll_epi32(freq, xmax_shift);
    const __m256i push = _mm256_cmpeq_epi32(_mm256_max_epu32(x, x_max), x);
    const unsigned m = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(push)));
    const __m256i sel = _mm256_permutevar8x32_epi32(
        _mm256_and_si256(x, lo16), _mm256_load_si256(reinterpret_cast<const __m256i*>(kPushLut.idx[m])));
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(sel, sel), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(words + pos - 8), _mm256_castsi256_si128(packed));
    pos -= static_cast<size_t>(__builtin_popcount(m));
    x = _mm256_blendv_epi8(x, _mm256_srli_epi32(x, 16), push);
    // q = floor(x / freq) (x - 1 for freq = 1) with the Granlund-Montgomery magic.
    const __m256i even = _mm256_mul_epu32(x, mag);
    const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(mag, 32));
    const __m256i t = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
    const __m256i is_one = _mm256_cmpeq_epi32(freq, one);
    // s1 = floor(log2(freq - 1)) from the float exponent; 0 for freq = 1.
    const __m256i fexp = _mm256_srli_epi32(
        _mm256_castps_si256(_mm256_cvtepi32_ps(_mm256_sub_epi32(freq, one))), 23);
    const __m256i s1 = _mm256_andnot_si256(is_one, _mm256_sub_epi32(fexp, exp_bias));
    const __m256i q = _mm256_srlv_epi32(
        _mm256_add_epi32(t, _mm256_srli_epi32(_mm256_sub_epi32(x, t), 1)), s1);
    const __m256i bias = _mm256_add_epi32(start, _mm256_and_si256(is_one, _mm256_sub_epi32(m_total, one)));
    const __m256i cmpl = _mm256_sub_epi32(m_total, freq);
    x = _mm256_add_epi32(_mm256_add_epi32(x, bias), _mm256_mullo_epi32(q, cmpl));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(sp), x);
  }
  *pos_io = pos;
  return j;
}

#define TASKCODEC_INSTANTIATE(T)                                                                \
  template uint64_t encode_row_simd<T>(const RowEncoder&, const uint32_t*, const uint32_t*,     \
                                       uint32_t, const T*, uint32_t*, uint32_t, uint64_t,       \
                                       uint64_t, uint16_t*, size_t*) noexcept;
TASKCODEC_INSTANTIATE(int8_t)
TASKCODEC_INSTANTIATE(uint8_t)
TASKCODEC_INSTANTIATE(int16_t)
TASKCODEC_INSTANTIATE(uint16_t)
TASKCODEC_INSTANTIATE(int32_t)
#undef TASKCODEC_INSTANTIATE

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else  // no SIMD kernels for this architecture yet: the scalar path does everything

bool simd_available() noexcept { return false; }

uint64_t decode_row_simd(const RowDecoder&, uint32_t, uint32_t, uint32_t*, uint32_t, uint64_t a,
                         uint64_t, const uint8_t*, size_t*, int32_t*) noexcept {
  return a;
}

template <class T>
uint64_t encode_row_simd(const RowEncoder&, const uint32_t*, const uint32_t*, uint32_t, const T*,
                         uint32_t*, uint32_t, uint64_t, uint64_t b, uint16_t*, size_t*) noexcept {
  return b;
}
template uint64_t encode_row_simd<int8_t>(const RowEncoder&, const uint32_t*, const uint32_t*, uint32_t, const int8_t*, uint32_t*, uint32_t, uint64_t, uint64_t, uint16_t*, size_t*) noexcept;
template uint64_t encode_row_simd<uint8_t>(const RowEncoder&, const uint32_t*, const uint32_t*, uint32_t, const uint8_t*, uint32_t*, uint32_t, uint64_t, uint64_t, uint16_t*, size_t*) noexcept;
template uint64_t encode_row_simd<int16_t>(const RowEncoder&, const uint32_t*, const uint32_t*, uint32_t, const int16_t*, uint32_t*, uint32_t, uint64_t, uint64_t, uint16_t*, size_t*) noexcept;
template uint64_t encode_row_simd<uint16_t>(const RowEncoder&, const uint32_t*, const uint32_t*, uint32_t, const uint16_t*, uint32_t*, uint32_t, uint64_t, uint64_t, uint16_t*, size_t*) noexcept;
template uint64_t encode_row_simd<int32_t>(const RowEncoder&, const uint32_t*, const uint32_t*, uint32_t, const int32_t*, uint32_t*, uint32_t, uint64_t, uint64_t, uint16_t*, size_t*) noexcept;

#endif

}  // namespace taskcodec::detail
