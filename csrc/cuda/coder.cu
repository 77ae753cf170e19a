// Host side of the GPU coder: device tables, frame encode and batched frame decode.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "common.cuh"
#include "kernels.cuh"
#include "taskcodec/checksum.hpp"

namespace taskcodec::cuda {
namespace {

using detail::ChunkJob;
using detail::DevTableView;
using detail::kWarpsPerBlock;

using detail::cuda_error;
using detail::DeviceBuffer;
using detail::EventTimer;
using detail::invalid;

Error chunk_error(uint32_t code, const std::string& where) {
  const Status s = code == static_cast<uint32_t>(ChunkStatus::kSymbolTooWide) ||
                           code == static_cast<uint32_t>(ChunkStatus::kBadRow)
                       ? Status::kInvalidArgument
                       : Status::kCorruptStream;
  return {s, where + ": " + chunk_status_message(code)};
}

bool fill_layout(const uint64_t* shape, size_t ndim, uint8_t row_mode, ChunkJob* job, Error* err) {
  job->row_mode = row_mode;
  job->inner = make_fast_div(1);
  job->channels = make_fast_div(1);
  if (row_mode != kRowSingle && row_mode != kRowIndex) {
    uint64_t inner = 1;
    for (size_t i = row_mode + 1; i < ndim; ++i) inner *= shape[i];
    if (inner == 0) inner = 1;
    if (inner > UINT32_MAX || shape[row_mode] > UINT32_MAX || shape[row_mode] == 0) {
      *err = invalid("the GPU coder handles shapes whose channel run and channel count fit 32 bits");
      return false;
    }
    job->inner = make_fast_div(static_cast<uint32_t>(inner));
    job->channels = make_fast_div(static_cast<uint32_t>(shape[row_mode]));
  }
  return true;
}

size_t grid_for(size_t jobs) { return (jobs + kWarpsPerBlock - 1) / kWarpsPerBlock; }

}  // namespace

const char* chunk_status_message(uint32_t code) noexcept {
  switch (static_cast<ChunkStatus>(code)) {
    case ChunkStatus::kOk: return "ok";
    case ChunkStatus::kShortChunk: return "the chunk cannot hold its lane states and whole words";
    case ChunkStatus::kBadInitialState: return "a lane starts in a state below the minimum 65536";
    case ChunkStatus::kTruncated: return "chunk data ends early";
    case ChunkStatus::kBadEscapeLength: return "an escape declares more than 32 bits";
    case ChunkStatus::kEscapeOutOfRange: return "an escaped symbol is outside int32";
    case ChunkStatus::kTrailingWords: return "words are left over after the last symbol";
    case ChunkStatus::kBadFinalState: return "a lane does not end in state 65536";
    case ChunkStatus::kSymbolTooWide: return "a symbol does not fit in int32";
    case ChunkStatus::kBadRow: return "an index entry names no row of the table";
    case ChunkStatus::kNotRun: return "the kernel did not run";
  }
  return "unknown chunk status";
}

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

bool device_available() noexcept { return device_count() > 0; }

std::string device_name(int device) {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, device) != cudaSuccess) {
    cudaGetLastError();
    return {};
  }
  return std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ")";
}

uint64_t max_chunk_bytes(uint64_t count, uint32_t lanes) noexcept {
  return 2 * (count * kMaxWordsPerSymbol + 2ull * lanes + 8);
}

// ---------------------------------------------------------------- tables

Error DeviceTable::create(std::shared_ptr<const CdfTable> table, int device,
                          std::unique_ptr<DeviceTable>* out) {
  if (!table) return invalid("no table");
  TC_CUDA_TRY(cudaSetDevice(device));
  table->prepare_decoder();
  const CdfTable& t = *table;
  const size_t rows = t.rows();
  std::vector<uint64_t> fine_begin(t.dec_fine_begin().begin(), t.dec_fine_begin().end());
  // One allocation, each array aligned to 16 bytes.
  struct Part {
    const void* src;
    size_t bytes;
    size_t at;
  };
  std::vector<Part> parts = {
      {t.enc_data(), t.entries() * sizeof(EncSymbol), 0},
      {t.info_data(), t.entries() * sizeof(uint32_t), 0},
      {t.row_begin_data(), rows * sizeof(uint64_t), 0},
      {t.offsets_data(), rows * sizeof(int32_t), 0},
      {t.lengths_data(), rows * sizeof(uint32_t), 0},
      {t.dec_buckets().data(), t.dec_buckets().size() * sizeof(uint32_t), 0},
      {t.dec_fine().data(), t.dec_fine().size() * sizeof(uint16_t), 0},
      {fine_begin.data(), fine_begin.size() * sizeof(uint64_t), 0},
  };
  size_t total = 0;
  for (auto& p : parts) {
    p.at = total;
    total += (p.bytes + 15) & ~size_t{15};
  }
  std::vector<uint8_t> staging(total, 0);
  for (const auto& p : parts) {
    if (p.bytes) std::memcpy(staging.data() + p.at, p.src, p.bytes);
  }
  std::unique_ptr<DeviceTable> dt(new DeviceTable());
  dt->table_ = std::move(table);
  dt->device_ = device;
  dt->bytes_ = total;
  TC_CUDA_TRY(cudaMalloc(&dt->base_dev_, total ? total : 1));
  TC_CUDA_TRY(cudaMemcpy(dt->base_dev_, staging.data(), total, cudaMemcpyHostToDevice));
  auto* base = static_cast<uint8_t*>(dt->base_dev_);
  auto* v = new DevTableView{};
  v->enc = reinterpret_cast<const EncSymbol*>(base + parts[0].at);
  v->info = reinterpret_cast<const uint32_t*>(base + parts[1].at);
  v->row_begin = reinterpret_cast<const uint64_t*>(base + parts[2].at);
  v->offsets = reinterpret_cast<const int32_t*>(base + parts[3].at);
  v->lengths = reinterpret_cast<const uint32_t*>(base + parts[4].at);
  v->buckets = reinterpret_cast<const uint32_t*>(base + parts[5].at);
  v->fine = reinterpret_cast<const uint16_t*>(base + parts[6].at);
  v->fine_begin = reinterpret_cast<const uint64_t*>(base + parts[7].at);
  v->rows = static_cast<uint32_t>(rows);
  v->precision = t.precision();
  v->bucket_bits = t.bucket_bits();
  dt->view_ = v;
  *out = std::move(dt);
  return {};
}

DeviceTable::~DeviceTable() {
  if (base_dev_) cudaFree(base_dev_);
  delete static_cast<DevTableView*>(view_);
}

// ---------------------------------------------------------------- encode

namespace {

template <class T>
void launch_encode(const DevTableView& v, const ChunkJob* jobs_dev, uint32_t n, uint16_t* scratch,
                   uint64_t* first, uint32_t* status, cudaStream_t stream) {
  detail::encode_chunks<T><<<grid_for(n), 32 * kWarpsPerBlock, 0, stream>>>(v, jobs_dev, n, scratch,
                                                                            first, status);
}

}  // namespace

Error encode_frame(const DeviceTable& table, const void* symbols_dev, DType dtype,
                   const DeviceLayout& layout, const uint8_t* meta, size_t meta_len,
                   const EncodeOptions& options, void* stream_v, std::vector<uint8_t>* frame,
                   double* kernel_ms) {
  const CdfTable& t = table.host();
  const auto stream = static_cast<cudaStream_t>(stream_v);
  if (layout.row_mode == kRowIndex && (!layout.index_dev || !layout.index_host)) {
    return invalid("an index is required on the device and on the host");
  }
  SymbolLayout host_layout{layout.shape, layout.ndim, layout.row_mode, layout.index_host};
  std::vector<uint8_t> header;
  uint64_t n = 0;
  uint32_t nc = 0;
  if (Error e = build_frame_header(t, dtype, host_layout, meta, meta_len, options, &header, &n, &nc)) {
    return e;
  }
  if (n > UINT32_MAX) return invalid("the GPU coder takes frames of fewer than 2^32 symbols");
  TC_CUDA_TRY(cudaSetDevice(table.device()));
  ChunkJob proto{};
  Error lerr;
  if (!fill_layout(layout.shape, layout.ndim, layout.row_mode, &proto, &lerr)) return lerr;
  proto.symbols = symbols_dev;
  proto.index = layout.index_dev;
  proto.lanes = options.lanes;
  std::vector<ChunkJob> jobs(nc, proto);
  uint64_t words = 0;
  for (uint32_t c = 0; c < nc; ++c) {
    const uint64_t begin = static_cast<uint64_t>(c) * options.chunk_size;
    jobs[c].begin = static_cast<uint32_t>(begin);
    jobs[c].count = static_cast<uint32_t>(std::min<uint64_t>(options.chunk_size, n - begin));
    jobs[c].scratch = words;
    jobs[c].cap = max_chunk_bytes(jobs[c].count, options.lanes) / 2;
    words += jobs[c].cap;
  }
  std::vector<uint64_t> sizes(nc);
  std::vector<uint8_t> payload;
  if (nc) {
    DeviceBuffer jobs_dev, scratch, first, status, dest, out;
    if (Error e = jobs_dev.allocate(nc * sizeof(ChunkJob), stream)) return e;
    if (Error e = scratch.allocate(words * 2, stream)) return e;
    if (Error e = first.allocate(nc * sizeof(uint64_t), stream)) return e;
    if (Error e = status.allocate(nc * sizeof(uint32_t), stream)) return e;
    TC_CUDA_TRY(cudaMemcpyAsync(jobs_dev.as<void>(), jobs.data(), nc * sizeof(ChunkJob),
                                cudaMemcpyHostToDevice, stream));
    TC_CUDA_TRY(cudaMemsetAsync(status.as<void>(), 0xFF, nc * sizeof(uint32_t), stream));
    const auto& v = *static_cast<const DevTableView*>(table.view());
    auto* jd = jobs_dev.as<ChunkJob>();
    auto* sc = scratch.as<uint16_t>();
    auto* fw = first.as<uint64_t>();
    auto* stt = status.as<uint32_t>();
    EventTimer timer(kernel_ms != nullptr, stream);
    timer.start();
    switch (dtype) {
      case DType::kInt8: launch_encode<int8_t>(v, jd, nc, sc, fw, stt, stream); break;
      case DType::kUInt8: launch_encode<uint8_t>(v, jd, nc, sc, fw, stt, stream); break;
      case DType::kInt16: launch_encode<int16_t>(v, jd, nc, sc, fw, stt, stream); break;
      case DType::kUInt16: launch_encode<uint16_t>(v, jd, nc, sc, fw, stt, stream); break;
      case DType::kInt32: launch_encode<int32_t>(v, jd, nc, sc, fw, stt, stream); break;
      case DType::kUInt32: launch_encode<uint32_t>(v, jd, nc, sc, fw, stt, stream); break;
      case DType::kInt64: launch_encode<int64_t>(v, jd, nc, sc, fw, stt, stream); break;
      case DType::kUInt64: launch_encode<uint64_t>(v, jd, nc, sc, fw, stt, stream); break;
    }
    TC_CUDA_TRY(cudaGetLastError());
    std::vector<uint32_t> st(nc);
    std::vector<uint64_t> fwh(nc);
    TC_CUDA_TRY(cudaMemcpyAsync(st.data(), stt, nc * sizeof(uint32_t), cudaMemcpyDeviceToHost, stream));
    TC_CUDA_TRY(cudaMemcpyAsync(fwh.data(), fw, nc * sizeof(uint64_t), cudaMemcpyDeviceToHost, stream));
    TC_CUDA_TRY(cudaStreamSynchronize(stream));
    for (uint32_t c = 0; c < nc; ++c) {
      if (st[c]) return chunk_error(st[c], "chunk " + std::to_string(c));
    }
    std::vector<uint64_t> dest_words(nc);
    uint64_t total_words = 0;
    for (uint32_t c = 0; c < nc; ++c) {
      dest_words[c] = total_words;
      const uint64_t w = jobs[c].cap - fwh[c];
      sizes[c] = 2 * w;
      total_words += w;
    }
    if (Error e = dest.allocate(nc * sizeof(uint64_t), stream)) return e;
    if (Error e = out.allocate(total_words * 2, stream)) return e;
    TC_CUDA_TRY(cudaMemcpyAsync(dest.as<void>(), dest_words.data(), nc * sizeof(uint64_t),
                                cudaMemcpyHostToDevice, stream));
    detail::gather_chunks<<<nc, 256, 0, stream>>>(sc, jd, fw, dest.as<uint64_t>(), nc, out.as<uint16_t>());
    TC_CUDA_TRY(cudaGetLastError());
    timer.stop();
    payload.resize(total_words * 2);
    TC_CUDA_TRY(cudaMemcpyAsync(payload.data(), out.as<void>(), payload.size(), cudaMemcpyDeviceToHost,
                                stream));
    TC_CUDA_TRY(cudaStreamSynchronize(stream));
    timer.read(kernel_ms);
  }
  return assemble_frame(header, sizes.data(), nc, payload.data(), payload.size(), options.checksum, frame);
}

// ---------------------------------------------------------------- decode

Error decode_frames(const DeviceTable& table, const DecodeItem* items, size_t num_items,
                    void* stream_v, std::vector<uint32_t>* item_status, double* kernel_ms) {
  const auto stream = static_cast<cudaStream_t>(stream_v);
  const CdfTable& t = table.host();
  if (item_status) item_status->assign(num_items, 0);
  // Every frame's chunks back to back in one host buffer, then one copy.
  std::vector<ChunkJob> jobs;
  std::vector<uint32_t> job_item;
  uint64_t payload_bytes = 0;
  for (size_t i = 0; i < num_items; ++i) {
    const FrameHeader* h = items[i].header;
    if (!h) return invalid("decode item " + std::to_string(i) + " has no header");
    if (h->fingerprint != t.fingerprint() || h->precision != t.precision()) {
      return {Status::kTableMismatch, "decode item " + std::to_string(i) + " was coded with another table"};
    }
    if (h->num_symbols > UINT32_MAX) {
      return invalid("the GPU coder takes frames of fewer than 2^32 symbols");
    }
    if (h->row_mode == kRowIndex && !items[i].index_dev) {
      return invalid("decode item " + std::to_string(i) + " needs its index on the device");
    }
    if (h->num_symbols && !items[i].out_dev) return invalid("decode item " + std::to_string(i) + " has no output");
    if (items[i].frame_dev && !items[i].frame_host) {
      return invalid("decode item " + std::to_string(i) + " gives a device frame without its host copy");
    }
    if (!items[i].frame_dev) payload_bytes += h->payload_length;
  }
  std::vector<uint8_t> staging(payload_bytes);
  uint64_t at = 0;
  for (size_t i = 0; i < num_items; ++i) {
    const FrameHeader* h = items[i].header;
    ChunkJob proto{};
    Error lerr;
    if (!fill_layout(h->shape.data(), h->shape.size(), h->row_mode, &proto, &lerr)) return lerr;
    proto.out = items[i].out_dev;
    proto.index = items[i].index_dev;
    proto.lanes = h->lanes;
    const bool resident = items[i].frame_dev != nullptr;
    if (!resident && h->payload_length) std::memcpy(staging.data() + at, h->payload, h->payload_length);
    uint64_t chunk_at = resident ? static_cast<uint64_t>(h->payload - items[i].frame_host) : at;
    for (uint32_t c = 0; c < h->num_chunks; ++c) {
      ChunkJob j = proto;
      const uint64_t begin = static_cast<uint64_t>(c) * h->chunk_size;
      j.begin = static_cast<uint32_t>(begin);
      j.count = static_cast<uint32_t>(std::min<uint64_t>(h->chunk_size, h->num_symbols - begin));
      uint32_t len = 0;
      std::memcpy(&len, h->directory + 4ull * c, 4);  // little-endian hosts only (as the CPU coder)
      j.len = len;
      // Offset into the staged payload (or the resident frame) until the address is known.
      j.scratch = chunk_at;
      j.data = resident ? items[i].frame_dev : nullptr;
      chunk_at += len;
      jobs.push_back(j);
      job_item.push_back(static_cast<uint32_t>(i));
    }
    if (!resident) at += h->payload_length;
  }
  if (jobs.empty()) return {};
  TC_CUDA_TRY(cudaSetDevice(table.device()));
  DeviceBuffer payload, jobs_dev, status;
  if (Error e = payload.allocate(payload_bytes, stream)) return e;
  for (auto& j : jobs) j.data = (j.data ? j.data : payload.as<uint8_t>()) + j.scratch;
  const uint32_t nj = static_cast<uint32_t>(jobs.size());
  if (Error e = jobs_dev.allocate(nj * sizeof(ChunkJob), stream)) return e;
  if (Error e = status.allocate(nj * sizeof(uint32_t), stream)) return e;
  TC_CUDA_TRY(cudaMemcpyAsync(payload.as<void>(), staging.data(), payload_bytes, cudaMemcpyHostToDevice, stream));
  TC_CUDA_TRY(cudaMemcpyAsync(jobs_dev.as<void>(), jobs.data(), nj * sizeof(ChunkJob), cudaMemcpyHostToDevice,
                              stream));
  TC_CUDA_TRY(cudaMemsetAsync(status.as<void>(), 0xFF, nj * sizeof(uint32_t), stream));
  const auto& v = *static_cast<const DevTableView*>(table.view());
  EventTimer timer(kernel_ms != nullptr, stream);
  timer.start();
  detail::decode_chunks<<<grid_for(nj), 32 * kWarpsPerBlock, 0, stream>>>(v, jobs_dev.as<ChunkJob>(), nj,
                                                                           status.as<uint32_t>());
  TC_CUDA_TRY(cudaGetLastError());
  timer.stop();
  std::vector<uint32_t> st(nj);
  TC_CUDA_TRY(cudaMemcpyAsync(st.data(), status.as<void>(), nj * sizeof(uint32_t), cudaMemcpyDeviceToHost,
                              stream));
  TC_CUDA_TRY(cudaStreamSynchronize(stream));
  timer.read(kernel_ms);
  Error first;
  std::vector<uint32_t> chunk_of_item(num_items, 0);
  for (uint32_t k = 0, c = 0; k < nj; ++k) {
    const uint32_t i = job_item[k];
    c = (k == 0 || job_item[k - 1] != i) ? 0 : c + 1;
    if (st[k] && item_status && (*item_status)[i] == 0) (*item_status)[i] = st[k];
    if (st[k] && !first) {
      first = chunk_error(st[k], (num_items > 1 ? "item " + std::to_string(i) + ", " : std::string()) +
                                     "chunk " + std::to_string(c));
    }
  }
  return first;
}

// ---------------------------------------------------------------- quantize

namespace {
bool quant_layout(uint64_t n, uint64_t inner, uint32_t channels, FastDiv* fi, FastDiv* fc, Error* err) {
  if (n > UINT32_MAX) {
    *err = invalid("the GPU quantizer takes fewer than 2^32 values per call");
    return false;
  }
  if (channels == 0 || inner == 0 || inner > UINT32_MAX) {
    *err = invalid("channels and inner extent must be positive and fit 32 bits");
    return false;
  }
  *fi = make_fast_div(static_cast<uint32_t>(inner));
  *fc = make_fast_div(channels);
  return true;
}
unsigned quant_grid(uint64_t n) {
  return static_cast<unsigned>(std::min<uint64_t>((n + 255) / 256, 132ull * 32));
}
}  // namespace

Error quantize(const float* x_dev, uint64_t n, uint64_t inner, uint32_t channels,
               const float* inv_step_dev, const float* zero_dev, int32_t* q_dev, void* stream_v) {
  const auto stream = static_cast<cudaStream_t>(stream_v);
  FastDiv fi, fc;
  Error err;
  if (!quant_layout(n, inner, channels, &fi, &fc, &err)) return err;
  if (n == 0) return {};
  DeviceBuffer status;
  if (Error e = status.allocate(sizeof(uint32_t), stream)) return e;
  TC_CUDA_TRY(cudaMemsetAsync(status.as<void>(), 0, sizeof(uint32_t), stream));
  detail::quantize_kernel<<<quant_grid(n), 256, 0, stream>>>(x_dev, n, fi, fc, inv_step_dev, zero_dev, q_dev,
                                                             status.as<uint32_t>());
  TC_CUDA_TRY(cudaGetLastError());
  uint32_t st = 0;
  TC_CUDA_TRY(cudaMemcpyAsync(&st, status.as<void>(), sizeof st, cudaMemcpyDeviceToHost, stream));
  TC_CUDA_TRY(cudaStreamSynchronize(stream));
  if (st) return invalid("a value is not finite or quantizes outside int32");
  return {};
}

Error dequantize(const int32_t* q_dev, uint64_t n, uint64_t inner, uint32_t channels,
                 const float* step_dev, const float* zero_dev, float* x_dev, void* stream_v) {
  const auto stream = static_cast<cudaStream_t>(stream_v);
  FastDiv fi, fc;
  Error err;
  if (!quant_layout(n, inner, channels, &fi, &fc, &err)) return err;
  if (n == 0) return {};
  detail::dequantize_kernel<<<quant_grid(n), 256, 0, stream>>>(q_dev, n, fi, fc, step_dev, zero_dev, x_dev);
  TC_CUDA_TRY(cudaGetLastError());
  return {};
}

}  // namespace taskcodec::cuda
