// Count sketch accumulation and queries (sketch.hpp).
#include "taskcodec/sketch.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "../util/parallel.hpp"

namespace taskcodec {
namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;
constexpr size_t kParallelMin = 1u << 18;  // elements; below this one thread
constexpr size_t kQueryChunk = 1u << 16;

inline uint64_t splitmix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

inline uint64_t row_seed(uint64_t seed, uint32_t r) { return splitmix64(seed + r); }

inline void hash(uint64_t rs, size_t i, uint64_t cols, uint64_t* bucket, float* sign) {
  const uint64_t z = splitmix64(rs + static_cast<uint64_t>(i) * kGolden);
  *bucket = ((z >> 32) * cols) >> 32;
  *sign = (z & 1u) ? -1.0f : 1.0f;
}

}  // namespace

Error check_sketch_shape(const SketchShape& s) {
  if (s.rows < 1 || s.rows > kMaxSketchRows) {
    return {Status::kInvalidArgument,
            "sketch rows must be in 1.." + std::to_string(kMaxSketchRows) + ", got " + std::to_string(s.rows)};
  }
  if (s.cols < 1 || s.cols > kMaxSketchCols) {
    return {Status::kInvalidArgument,
            "sketch columns must be in 1..2^31, got " + std::to_string(s.cols)};
  }
  return {};
}

Error sketch_accumulate(const float* x, size_t n, const SketchShape& s, float* table, int threads) {
  if (Error e = check_sketch_shape(s)) return e;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) {
      return {Status::kInvalidArgument, "update[" + std::to_string(i) + "] = " + std::to_string(x[i]) +
                                            " is not finite; it cannot be sketched"};
    }
  }
  const int t = detail::resolve_threads(threads, s.rows, n >= kParallelMin);
  return detail::parallel_for(s.rows, t, [&](size_t r) -> Error {
    const uint64_t rs = row_seed(s.seed, static_cast<uint32_t>(r));
    float* row = table + r * s.cols;
    for (size_t i = 0; i < n; ++i) {
      uint64_t b;
      float sg;
      hash(rs, i, s.cols, &b, &sg);
      row[b] += sg * x[i];
    }
    return {};
  });
}

Error sketch_query(const float* table, size_t n, const SketchShape& s, float* out, int threads) {
  if (Error e = check_sketch_shape(s)) return e;
  uint64_t rs[kMaxSketchRows];
  for (uint32_t r = 0; r < s.rows; ++r) rs[r] = row_seed(s.seed, r);
  const size_t chunks = (n + kQueryChunk - 1) / kQueryChunk;
  const int t = detail::resolve_threads(threads, chunks, n >= kParallelMin);
  return detail::parallel_for(chunks, t, [&](size_t c) -> Error {
    float v[kMaxSketchRows];
    const size_t end = std::min(n, (c + 1) * kQueryChunk);
    const size_t mid = s.rows / 2;
    for (size_t i = c * kQueryChunk; i < end; ++i) {
      for (uint32_t r = 0; r < s.rows; ++r) {
        uint64_t b;
        float sg;
        hash(rs[r], i, s.cols, &b, &sg);
        v[r] = sg * table[r * s.cols + b];
      }
      std::nth_element(v, v + mid, v + s.rows);
      float m = v[mid];
      if ((s.rows & 1u) == 0) m = 0.5f * (m + *std::max_element(v, v + mid));
      out[i] = m;
    }
    return {};
  });
}

}  // namespace taskcodec
