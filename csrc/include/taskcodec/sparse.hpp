// Sparse model updates (federated learning, gradient compression): top-k selection by
// magnitude with error feedback, value codings, index codings and the kind-2 frame
// ("sparse update", docs/format.md section 21).
//
// Every function here is deterministic: the same inputs give the same bytes on every
// machine (the CUDA port produces the same bytes). Selection contract: exactly k elements,
// those with the largest |x|, ties broken by the lower index, indices emitted ascending;
// a NaN or an infinity in the input is an error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "taskcodec/frame.hpp"
#include "taskcodec/status.hpp"

namespace taskcodec {

// ---- selection --------------------------------------------------------------------

// k = max(1, ceil(ratio * n)) for n > 0 (never above n); 0 when n == 0. ratio in (0, 1].
// ceil is taken on the double product ratio * n.
uint64_t topk_count(uint64_t n, double ratio) noexcept;

// Writes the indices of the k elements of x with the largest |x| (ties: lower index first)
// into idx_out[0..k), sorted ascending. n < 2^32, k <= n. A non-finite x is
// kInvalidArgument. threads: 0 = automatic.
Error topk_select(const float* x, size_t n, size_t k, uint32_t* idx_out, int threads = 0);

// Error feedback, step 1: acc[i] = acc[i] + update[i] (acc holds the residual on entry).
// Checks that every update and every sum is finite (kInvalidArgument otherwise).
Error ef_accumulate(const float* update, float* acc, size_t n, int threads = 0);

// ---- value codings ----------------------------------------------------------------

enum class ValueCoding : uint8_t {
  kFloat32 = 0,  // 4 bytes a value, exact
  kFloat16 = 1,  // IEEE binary16, round to nearest even, saturated to +-65504
  kInt8 = 2,     // per block of 2^block_log2 values: a float32 scale, then int8 levels
  kSign = 3,     // per block: a float32 scale (mean |v|), then one sign bit a value
  kQsgd = 4,     // per block: a float32 scale (max |v|), then int8 stochastic levels in [-s, s]
};
const char* value_coding_name(ValueCoding c) noexcept;
bool value_coding_valid(uint8_t code) noexcept;

struct ValueParams {
  ValueCoding coding = ValueCoding::kInt8;
  uint32_t block_log2 = 8;  // 0..20; values per scale block = 2^block_log2
  uint32_t levels = 16;     // QSGD: s in 1..127
  uint64_t seed = 0;        // QSGD: stream of the stochastic rounding (encoder only)
};
inline constexpr uint32_t kMaxBlockLog2 = 20;
inline constexpr uint32_t kMaxQsgdLevels = 127;

Error check_value_params(const ValueParams& p);
// Exact size of the coded values of k elements.
uint64_t value_bytes(const ValueParams& p, uint64_t k) noexcept;
// Codes v[0..k) into out (value_bytes(p, k) bytes); writes the decoder's values into
// dequant (nullable): exactly what decode_values returns. For QSGD, element j (position in
// the selection) draws its uniform from the seed and `stream` (a per-tensor number) and j.
Error encode_values(const float* v, size_t k, const ValueParams& p, uint64_t stream, uint8_t* out,
                    size_t capacity, float* dequant);
Error decode_values(const uint8_t* data, size_t len, size_t k, const ValueParams& p, float* out);

// float <-> IEEE binary16 bits (round to nearest even, saturating; NaN stays NaN).
uint16_t float_to_half(float f) noexcept;
float half_to_float(uint16_t h) noexcept;

// ---- index codings ----------------------------------------------------------------

enum class IndexCoding : uint8_t {
  kGaps = 0,    // Rice split of the gaps: high parts rANS-coded with a per-tensor table
  kBitmap = 1,  // ceil(n / 8) bytes, bit i (LSB first) set for a selected i
};
inline constexpr uint32_t kGapPrecision = 12;  // precision of the gap tables
inline constexpr uint32_t kGapLanes = 32;
inline constexpr uint32_t kMaxGapBins = 64;    // high parts >= this are rANS escapes

// Index coding of k ascending indices below n. Each appends its bytes to *out.
Error encode_index_bitmap(const uint32_t* idx, size_t k, uint64_t n, std::vector<uint8_t>* out);
Error decode_index_bitmap(const uint8_t* data, size_t len, size_t k, uint64_t n, uint32_t* idx_out);
Error encode_index_gaps(const uint32_t* idx, size_t k, uint64_t n, std::vector<uint8_t>* out);
Error decode_index_gaps(const uint8_t* data, size_t len, size_t k, uint64_t n, uint32_t* idx_out);
// Chooses the smaller of the two (the bitmap on a tie) and appends it.
Error encode_index(const uint32_t* idx, size_t k, uint64_t n, IndexCoding* chosen,
                   std::vector<uint8_t>* out);

// ---- tensor records and the kind-2 frame ------------------------------------------

inline constexpr size_t kRecordHeaderSize = 32;
inline constexpr uint64_t kDefaultMaxElements = 1ull << 31;  // dense values per frame
inline constexpr uint64_t kDefaultMaxTensors = 1ull << 16;

// One tensor of a sparse update, as parsed (pointers into the frame).
struct SparseRecord {
  uint64_t n = 0;  // dense length
  uint64_t k = 0;  // values sent
  ValueParams values;
  IndexCoding index = IndexCoding::kGaps;
  const uint8_t* index_data = nullptr;
  uint32_t index_length = 0;
  const uint8_t* value_data = nullptr;
  uint32_t value_length = 0;
};

struct SparseDecodeOptions {
  uint64_t max_tensors = kDefaultMaxTensors;
  uint64_t max_elements = kDefaultMaxElements;
  int threads = 0;
};

// Compresses one tensor: error feedback (when residual is not null: acc = residual +
// update, residual ends as acc - dequantized(sent)), top-k of k elements, value and index
// coding. Appends the record (kRecordHeaderSize + index + values + even padding) to *out.
// sent_idx / sent_val (nullable, k entries) receive the indices and dequantized values.
Error compress_tensor(const float* update, float* residual, size_t n, size_t k,
                      const ValueParams& p, uint64_t stream, std::vector<uint8_t>* out,
                      uint32_t* sent_idx = nullptr, float* sent_val = nullptr, int threads = 0);

// The coding half of compress_tensor, for a selection made elsewhere (the GPU's top-k):
// codes the values val[0..k) at the ascending indices idx[0..k) of a tensor of n elements
// into a record appended to *out, and writes the decoder's values into dequant (nullable),
// which the caller subtracts from its residual. Same bytes as compress_tensor for the same
// selection.
Error encode_selected(const uint32_t* idx, const float* val, size_t n, size_t k, const ValueParams& p,
                      uint64_t stream, std::vector<uint8_t>* out, float* dequant);

// Writes a kind-2 frame around records (each as written by compress_tensor).
Error write_sparse_frame(const std::vector<std::vector<uint8_t>>& records, const uint8_t* meta,
                         size_t meta_len, bool checksum, std::vector<uint8_t>* out);

// parse_frame (every check of the core frame) and then every record's header and lengths.
Error parse_sparse_frame(const uint8_t* data, size_t len, const SparseDecodeOptions& options,
                         FrameHeader* header, std::vector<SparseRecord>* records);

// Decodes a record's indices and values (k entries each).
Error decode_record(const SparseRecord& r, uint32_t* idx_out, float* val_out);
// dense[idx] += weight * value for every sent element (dense has r.n entries).
Error accumulate_record(const SparseRecord& r, float weight, float* dense, size_t dense_len);

}  // namespace taskcodec
