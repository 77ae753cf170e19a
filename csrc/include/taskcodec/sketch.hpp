// Count sketches of model updates (FetchSGD, Rothchild et al., ICML 2020): a rows x cols
// float table to which element i adds sign_r(i) * x[i] in bucket h_r(i) of every row r.
// Sketching is linear: the sum of the sketches of several vectors is the sketch of their
// sum, so sketches can be summed under secure aggregation and queried afterwards.
//
// Hashes: z = splitmix64(row_seed(seed, r) + i * 0x9E3779B97F4A7C15) per row and element;
// bucket = ((z >> 32) * cols) >> 32, sign = (z & 1) ? -1 : +1, with
// row_seed(seed, r) = splitmix64(seed + r). Integers only: the same seed gives the same
// buckets and signs on every machine. Accumulation runs over i in ascending order in each
// row, so a sketch is the same bytes for the same input on every run and thread count.
#pragma once

#include <cstddef>
#include <cstdint>

#include "taskcodec/status.hpp"

namespace taskcodec {

inline constexpr uint32_t kMaxSketchRows = 32;
inline constexpr uint64_t kMaxSketchCols = 1ull << 31;

struct SketchShape {
  uint32_t rows = 5;   // 1..kMaxSketchRows
  uint64_t cols = 0;   // 1..kMaxSketchCols
  uint64_t seed = 0;   // hash family
};

Error check_sketch_shape(const SketchShape& s);

// table[r * cols + h_r(i)] += sign_r(i) * x[i] for i < n, every row r (the table is added to,
// not cleared). A non-finite x[i] is kInvalidArgument and leaves the table unchanged.
// threads: 0 = automatic (one thread a row at most).
Error sketch_accumulate(const float* x, size_t n, const SketchShape& s, float* table, int threads = 0);

// out[i] = median over rows of sign_r(i) * table[r * cols + h_r(i)] (mean of the two middle
// values for an even row count): the sketch's estimate of element i of what was sketched.
Error sketch_query(const float* table, size_t n, const SketchShape& s, float* out, int threads = 0);

}  // namespace taskcodec
