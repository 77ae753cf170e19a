// Top-k selection by magnitude with error feedback, and the scatters that go with it.
//
// Selection is an exact radix select on the magnitude's bits (|x| of a finite float orders
// like its bit pattern with the sign cleared): four passes of an 8-bit histogram over the
// entries that share the prefix found so far fix the k-th largest key T. Entries with
// key > T are all selected, entries with key == T in index order until k are taken; a
// stable compaction (CUB) emits the indices in ascending order.
#include <cuda_runtime.h>

#include <cub/device/device_scan.cuh>
#include <cub/device/device_select.cuh>
#include <thrust/iterator/counting_iterator.h>

#include <string>

#include "common.cuh"
#include "taskcodec/cuda.hpp"

namespace taskcodec::cuda {
namespace {

using detail::cuda_error;
using detail::DeviceBuffer;
using detail::EventTimer;
using detail::invalid;

constexpr uint32_t kAbsMask = 0x7FFFFFFFu;
constexpr uint32_t kInfBits = 0x7F800000u;

struct SelectState {
  uint32_t prefix;
  uint32_t mask;
  uint32_t k_left;
  uint32_t bad;
  uint32_t hist[256];
};

__device__ __forceinline__ uint32_t key_of(float v) { return __float_as_uint(v) & kAbsMask; }

// One histogram pass over acc = update, or residual + update with error feedback (not
// written back yet: a bad update must leave the residual as it was). The first digit is
// mostly the exponent, so most values of a warp land in a few bins: lanes with the same bin
// are counted together (one shared-memory atomic per distinct bin and warp).
template <bool kFirst, bool kFeedback>
__global__ void hist_pass(const float* __restrict__ update, const float* __restrict__ residual, uint32_t n,
                          int shift, SelectState* st) {
  __shared__ uint32_t h[256];
  for (int b = threadIdx.x; b < 256; b += blockDim.x) h[b] = 0;
  __syncthreads();
  const uint32_t prefix = st->prefix, mask = st->mask;
  const uint32_t lane = threadIdx.x & 31;
  const uint64_t warps = static_cast<uint64_t>(gridDim.x) * (blockDim.x / 32);
  bool bad = false;
  // Every lane of a warp runs the same number of iterations (the match below needs them all).
  for (uint64_t base = (static_cast<uint64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32) * 32; base < n;
       base += warps * 32) {
    const uint64_t i = base + lane;
    uint32_t bin = 256;  // none
    if (i < n) {
      const float a = kFeedback ? __fadd_rn(residual[i], update[i]) : update[i];
      const uint32_t key = key_of(a);
      if constexpr (kFirst) bad |= key >= kInfBits;
      if ((key & mask) == prefix) bin = (key >> shift) & 255u;
    }
    const unsigned peers = __match_any_sync(0xFFFFFFFFu, bin);
    if (bin < 256 && lane == static_cast<uint32_t>(__ffs(peers) - 1)) atomicAdd(&h[bin], __popc(peers));
  }
  if constexpr (kFirst) {
    if (bad) atomicOr(&st->bad, 1u);
  }
  __syncthreads();
  for (int b = threadIdx.x; b < 256; b += blockDim.x) {
    if (h[b]) atomicAdd(&st->hist[b], h[b]);
  }
}

__global__ void pick_bin(SelectState* st, int shift) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  uint32_t cum = 0;
  for (int b = 255; b >= 0; --b) {
    const uint32_t c = st->hist[b];
    if (cum + c >= st->k_left) {
      st->prefix |= static_cast<uint32_t>(b) << shift;
      st->mask |= 0xFFu << shift;
      st->k_left -= cum;
      break;
    }
    cum += c;
  }
  for (int b = 0; b < 256; ++b) st->hist[b] = 0;
}

__global__ void commit_acc(const float* __restrict__ update, float* residual, uint32_t n) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    residual[i] = __fadd_rn(residual[i], update[i]);
  }
}

struct AtLeast {
  const float* src;
  uint32_t t;
  __device__ bool operator()(uint32_t i) const { return key_of(src[i]) >= t; }
};

__global__ void eq_flags(const float* src, const uint32_t* cand, uint32_t m, uint32_t t, uint32_t* eq) {
  for (uint32_t j = blockIdx.x * blockDim.x + threadIdx.x; j < m; j += gridDim.x * blockDim.x) {
    eq[j] = key_of(src[cand[j]]) == t ? 1u : 0u;
  }
}

__global__ void keep_flags(const float* src, const uint32_t* cand, const uint32_t* rank, uint32_t m,
                           uint32_t t, uint32_t k_left, uint8_t* keep) {
  for (uint32_t j = blockIdx.x * blockDim.x + threadIdx.x; j < m; j += gridDim.x * blockDim.x) {
    const uint32_t key = key_of(src[cand[j]]);
    keep[j] = (key > t || rank[j] < k_left) ? 1 : 0;
  }
}

__global__ void gather_values(const float* src, const uint32_t* idx, uint32_t k, float* val) {
  for (uint32_t j = blockIdx.x * blockDim.x + threadIdx.x; j < k; j += gridDim.x * blockDim.x) {
    val[j] = src[idx[j]];
  }
}

__global__ void sub_kernel(float* residual, const uint32_t* idx, const float* sent, uint32_t k) {
  for (uint32_t j = blockIdx.x * blockDim.x + threadIdx.x; j < k; j += gridDim.x * blockDim.x) {
    residual[idx[j]] = __fsub_rn(residual[idx[j]], sent[j]);
  }
}

__global__ void check_indices(uint32_t n, const uint32_t* idx, uint32_t k, uint32_t* first_bad) {
  for (uint32_t j = blockIdx.x * blockDim.x + threadIdx.x; j < k; j += gridDim.x * blockDim.x) {
    if (idx[j] >= n) atomicMin(first_bad, j);
  }
}

__global__ void add_kernel(float* dense, const uint32_t* idx, const float* val, uint32_t k, float scale) {
  for (uint32_t j = blockIdx.x * blockDim.x + threadIdx.x; j < k; j += gridDim.x * blockDim.x) {
    dense[idx[j]] = __fadd_rn(dense[idx[j]], __fmul_rn(scale, val[j]));
  }
}

unsigned grid_of(uint64_t n, unsigned cap = 132 * 16) {
  const uint64_t g = (n + 255) / 256;
  return static_cast<unsigned>(g < 1 ? 1 : (g > cap ? cap : g));
}

// Several stream-ordered device buffers freed together at the end of a call.
class Scratch {
 public:
  explicit Scratch(cudaStream_t s) : s_(s) {}
  template <class T>
  Error get(size_t count, T** out) {
    if (n_ == kMax) return {Status::kInternal, "too many scratch buffers"};
    if (Error e = bufs_[n_].allocate(count * sizeof(T), s_)) return e;
    *out = bufs_[n_++].template as<T>();
    return {};
  }

 private:
  static constexpr int kMax = 16;
  cudaStream_t s_;
  DeviceBuffer bufs_[kMax];
  int n_ = 0;
};

}  // namespace

Error topk_select(const float* update_dev, float* residual_dev, uint64_t n64, uint64_t k64,
                  uint32_t* idx_dev, float* val_dev, void* stream_v, double* kernel_ms) {
  const auto stream = static_cast<cudaStream_t>(stream_v);
  if (n64 >= (1ull << 32)) return invalid("the GPU top-k takes fewer than 2^32 values");
  if (k64 > n64) return invalid("k = " + std::to_string(k64) + " exceeds n = " + std::to_string(n64));
  if (k64 == 0) return {};
  const auto n = static_cast<uint32_t>(n64);
  const auto k = static_cast<uint32_t>(k64);
  Scratch scratch(stream);
  SelectState* st = nullptr;
  if (Error e = scratch.get(1, &st)) return e;
  SelectState init{};
  init.k_left = k;
  TC_CUDA_TRY(cudaMemcpyAsync(st, &init, sizeof init, cudaMemcpyHostToDevice, stream));
  EventTimer timer(kernel_ms != nullptr, stream);
  timer.start();
  const bool fb = residual_dev != nullptr;
  const float* src = fb ? residual_dev : update_dev;
  const unsigned grid = grid_of(n);
  for (int pass = 0; pass < 4; ++pass) {
    const int shift = 24 - 8 * pass;
    if (pass == 0 && fb) hist_pass<true, true><<<grid, 256, 0, stream>>>(update_dev, residual_dev, n, shift, st);
    else if (pass == 0) hist_pass<true, false><<<grid, 256, 0, stream>>>(update_dev, residual_dev, n, shift, st);
    else if (fb) hist_pass<false, true><<<grid, 256, 0, stream>>>(update_dev, residual_dev, n, shift, st);
    else hist_pass<false, false><<<grid, 256, 0, stream>>>(update_dev, residual_dev, n, shift, st);
    TC_CUDA_TRY(cudaGetLastError());
    pick_bin<<<1, 32, 0, stream>>>(st, shift);
    TC_CUDA_TRY(cudaGetLastError());
  }
  SelectState host{};
  TC_CUDA_TRY(cudaMemcpyAsync(&host, st, 4 * sizeof(uint32_t), cudaMemcpyDeviceToHost, stream));
  TC_CUDA_TRY(cudaStreamSynchronize(stream));
  if (host.bad) return invalid("the update holds a NaN or an infinity (the residual is unchanged)");
  const uint32_t t = host.prefix;
  if (fb) {
    commit_acc<<<grid, 256, 0, stream>>>(update_dev, residual_dev, n);
    TC_CUDA_TRY(cudaGetLastError());
  }
  // Candidates: every entry with key >= T, in index order: exactly k unless entries tie
  // at T, when the ties past the first k_left are dropped below.
  uint32_t* cand = nullptr;
  uint32_t* count = nullptr;
  if (Error e = scratch.get(n, &cand)) return e;
  if (Error e = scratch.get(1, &count)) return e;
  thrust::counting_iterator<uint32_t> iota(0u);
  size_t temp_bytes = 0;
  TC_CUDA_TRY(cub::DeviceSelect::If(nullptr, temp_bytes, iota, cand, count, n, AtLeast{src, t}, stream));
  uint8_t* temp = nullptr;
  if (Error e = scratch.get(temp_bytes, &temp)) return e;
  TC_CUDA_TRY(cub::DeviceSelect::If(temp, temp_bytes, iota, cand, count, n, AtLeast{src, t}, stream));
  uint32_t m = 0;
  TC_CUDA_TRY(cudaMemcpyAsync(&m, count, sizeof m, cudaMemcpyDeviceToHost, stream));
  TC_CUDA_TRY(cudaStreamSynchronize(stream));
  if (m < k) return {Status::kInternal, "top-k selection found fewer candidates than k"};
  if (m == k) {
    TC_CUDA_TRY(cudaMemcpyAsync(idx_dev, cand, k * sizeof(uint32_t), cudaMemcpyDeviceToDevice, stream));
  } else {
    uint32_t *eq = nullptr, *rank = nullptr;
    uint8_t* keep = nullptr;
    if (Error e = scratch.get(m, &eq)) return e;
    if (Error e = scratch.get(m, &rank)) return e;
    if (Error e = scratch.get(m, &keep)) return e;
    eq_flags<<<grid_of(m), 256, 0, stream>>>(src, cand, m, t, eq);
    size_t scan_bytes = 0;
    TC_CUDA_TRY(cub::DeviceScan::ExclusiveSum(nullptr, scan_bytes, eq, rank, m, stream));
    uint8_t* scan_temp = nullptr;
    if (Error e = scratch.get(scan_bytes, &scan_temp)) return e;
    TC_CUDA_TRY(cub::DeviceScan::ExclusiveSum(scan_temp, scan_bytes, eq, rank, m, stream));
    keep_flags<<<grid_of(m), 256, 0, stream>>>(src, cand, rank, m, t, host.k_left, keep);
    size_t flag_bytes = 0;
    TC_CUDA_TRY(cub::DeviceSelect::Flagged(nullptr, flag_bytes, cand, keep, idx_dev, count, m, stream));
    uint8_t* flag_temp = nullptr;
    if (Error e = scratch.get(flag_bytes, &flag_temp)) return e;
    TC_CUDA_TRY(cub::DeviceSelect::Flagged(flag_temp, flag_bytes, cand, keep, idx_dev, count, m, stream));
  }
  gather_values<<<grid_of(k), 256, 0, stream>>>(src, idx_dev, k, val_dev);
  TC_CUDA_TRY(cudaGetLastError());
  timer.stop();
  TC_CUDA_TRY(cudaStreamSynchronize(stream));
  timer.read(kernel_ms);
  return {};
}

Error residual_subtract(float* residual_dev, const uint32_t* idx_dev, const float* sent_dev, uint64_t k,
                        void* stream_v) {
  if (k >= (1ull << 32)) return invalid("k must be below 2^32");
  if (k == 0) return {};
  const auto stream = static_cast<cudaStream_t>(stream_v);
  sub_kernel<<<grid_of(k), 256, 0, stream>>>(residual_dev, idx_dev, sent_dev, static_cast<uint32_t>(k));
  TC_CUDA_TRY(cudaGetLastError());
  return {};
}

Error scatter_add(float* dense_dev, uint64_t n, const uint32_t* idx_dev, const float* val_dev, uint64_t k,
                  float scale, void* stream_v) {
  if (n >= (1ull << 32) || k >= (1ull << 32)) return invalid("n and k must be below 2^32");
  if (k == 0) return {};
  const auto stream = static_cast<cudaStream_t>(stream_v);
  Scratch scratch(stream);
  uint32_t* bad = nullptr;
  if (Error e = scratch.get(1, &bad)) return e;
  TC_CUDA_TRY(cudaMemsetAsync(bad, 0xFF, sizeof(uint32_t), stream));
  // Every index is checked before anything is added: a bad update changes nothing.
  check_indices<<<grid_of(k), 256, 0, stream>>>(static_cast<uint32_t>(n), idx_dev, static_cast<uint32_t>(k), bad);
  TC_CUDA_TRY(cudaGetLastError());
  uint32_t first = 0;
  TC_CUDA_TRY(cudaMemcpyAsync(&first, bad, sizeof first, cudaMemcpyDeviceToHost, stream));
  TC_CUDA_TRY(cudaStreamSynchronize(stream));
  if (first != 0xFFFFFFFFu) {
    return {Status::kCorruptStream, "entry " + std::to_string(first) + " of the update names an index "
                                        "outside the " + std::to_string(n) + " entries of the tensor"};
  }
  add_kernel<<<grid_of(k), 256, 0, stream>>>(dense_dev, idx_dev, val_dev, static_cast<uint32_t>(k), scale);
  TC_CUDA_TRY(cudaGetLastError());
  return {};
}

}  // namespace taskcodec::cuda
