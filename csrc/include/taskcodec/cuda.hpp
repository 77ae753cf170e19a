// The GPU coder's host API (compiled only when the CUDA kernels are built).
//
// Shape of the API (as DietGPU's): work comes in batches of chunks, every entry point takes
// an explicit CUDA stream (cudaStream_t passed as void*, so this header needs no CUDA
// headers), device pointers carry the suffix _dev, every chunk reports a status code into
// a device array, and nothing aborts the process: errors come back as taskcodec::Error.
// The kernels read and write exactly the bytes of the CPU coder (docs/format.md): the
// per-lane arithmetic is the __host__ __device__ code in rans.hpp that the CPU runs too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "taskcodec/frame.hpp"
#include "taskcodec/status.hpp"
#include "taskcodec/table.hpp"

namespace taskcodec::cuda {

// True when a CUDA driver and at least one device are present. Never throws or aborts; a
// machine without a driver simply answers false.
bool device_available() noexcept;
int device_count() noexcept;
// "NVIDIA H100 80GB HBM3 (sm_90)" or an empty string.
std::string device_name(int device);

// Per-chunk status codes the kernels write (0 is success); stable numbers.
enum class ChunkStatus : uint32_t {
  kOk = 0,
  kShortChunk = 1,        // the chunk cannot hold its lane states
  kBadInitialState = 2,   // a lane starts below 65536
  kTruncated = 3,         // the words ran out
  kBadEscapeLength = 4,   // an escape declares more than 32 bits
  kEscapeOutOfRange = 5,  // an escaped value falls outside int32
  kTrailingWords = 6,     // words left over at the end
  kBadFinalState = 7,     // a lane does not end in 65536
  kSymbolTooWide = 8,     // encode: a value does not fit int32
  kBadRow = 9,            // an index entry names no row of the table
  kNotRun = 0xFFFFFFFFu,  // the kernel never reached this chunk (launch failure)
};
const char* chunk_status_message(uint32_t code) noexcept;

// Integer tables in device memory, made once from a CdfTable and reused by every launch.
class DeviceTable {
 public:
  static Error create(std::shared_ptr<const CdfTable> table, int device,
                      std::unique_ptr<DeviceTable>* out);
  ~DeviceTable();
  DeviceTable(const DeviceTable&) = delete;
  DeviceTable& operator=(const DeviceTable&) = delete;

  const CdfTable& host() const noexcept { return *table_; }
  int device() const noexcept { return device_; }
  const void* view() const noexcept { return view_; }  // a DevTableView (kernels.cuh)
  size_t bytes() const noexcept { return bytes_; }

 private:
  DeviceTable() = default;
  std::shared_ptr<const CdfTable> table_;
  int device_ = 0;
  void* base_dev_ = nullptr;
  void* view_ = nullptr;  // host copy of the view struct
  size_t bytes_ = 0;
};

// Where a frame's symbols live and how they map to rows, on the device.
struct DeviceLayout {
  const uint64_t* shape = nullptr;  // host
  size_t ndim = 0;
  uint8_t row_mode = kRowSingle;
  const int32_t* index_dev = nullptr;  // kRowIndex: one row per symbol, on the device
  const int32_t* index_host = nullptr; // kRowIndex: the same index in host memory (CRC, checks)
};

// Upper bound of the encoded bytes of `count` symbols in one chunk (scratch sizing).
uint64_t max_chunk_bytes(uint64_t count, uint32_t lanes) noexcept;

// Encodes symbols already on the device into a whole frame (in host memory, byte for byte
// what FrameEncoder writes). Synchronises `stream` before returning.
// kernel_ms (optional) receives the device time of the coding and gather kernels alone,
// measured with CUDA events.
Error encode_frame(const DeviceTable& table, const void* symbols_dev, DType dtype,
                   const DeviceLayout& layout, const uint8_t* meta, size_t meta_len,
                   const EncodeOptions& options, void* stream, std::vector<uint8_t>* frame,
                   double* kernel_ms = nullptr);

// One frame of a decode batch: parsed (and checked against the table) on the host.
struct DecodeItem {
  const FrameHeader* header = nullptr;
  const int32_t* index_dev = nullptr;  // kRowIndex frames
  int32_t* out_dev = nullptr;          // header->num_symbols values
  // Optional: the same frame already in device memory (its first byte); its chunks are then
  // read there instead of being copied from header->payload.
  const uint8_t* frame_dev = nullptr;
  const uint8_t* frame_host = nullptr;  // the host frame's first byte, when frame_dev is set
};

// Decodes a batch of frames that share one table: copies their chunks to the device, runs
// one launch over every chunk of every frame, and reports the first failing item and chunk.
// `item_status` (optional, host) receives one code per item (the first failing chunk's).
// kernel_ms (optional) receives the decode kernel's device time (CUDA events).
Error decode_frames(const DeviceTable& table, const DecodeItem* items, size_t num_items,
                    void* stream, std::vector<uint32_t>* item_status = nullptr,
                    double* kernel_ms = nullptr);

// Per-channel affine quantization on the device: q = rint((x - zero[c]) * inv_step[c]) as
// in float32 (no fused operations), c = (i / inner) % channels; an error when a value is
// not finite or its q falls outside int32 (synchronises the stream). And back:
// x = q * step[c] + zero[c] (a product, then a sum, each rounded).
Error quantize(const float* x_dev, uint64_t n, uint64_t inner, uint32_t channels,
               const float* inv_step_dev, const float* zero_dev, int32_t* q_dev, void* stream);
Error dequantize(const int32_t* q_dev, uint64_t n, uint64_t inner, uint32_t channels,
                 const float* step_dev, const float* zero_dev, float* x_dev, void* stream);

// ---- sparse updates (federated learning): top-k with error feedback ------------------
//
// The selection contract the CPU code shares: exactly k entries, those of largest |acc|,
// ties to the lower index, indices emitted in ascending order; a NaN or infinity in acc is
// an error. acc = update, or residual + update when residual_dev is given (error
// feedback): acc is then written into residual_dev, and once the selected values have been
// coded the caller subtracts what was sent (residual_subtract), leaving
// residual = acc - sent. Indices are uint32 (n < 2^32). Synchronises the stream.
Error topk_select(const float* update_dev, float* residual_dev, uint64_t n, uint64_t k,
                  uint32_t* idx_dev, float* val_dev, void* stream, double* kernel_ms = nullptr);

// residual[idx[i]] -= sent[i] for i < k.
Error residual_subtract(float* residual_dev, const uint32_t* idx_dev, const float* sent_dev,
                        uint64_t k, void* stream);

// dense[idx[i]] += scale * val[i] for i < k (indices of one update are distinct); checks
// every index against n and reports the first bad one.
Error scatter_add(float* dense_dev, uint64_t n, const uint32_t* idx_dev, const float* val_dev,
                  uint64_t k, float scale, void* stream);

}  // namespace taskcodec::cuda
