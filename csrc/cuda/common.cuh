// Shared host-side helpers of the CUDA sources: CUDA errors as taskcodec::Error.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "taskcodec/status.hpp"

namespace taskcodec::cuda::detail {

inline Error cuda_error(cudaError_t e, const char* what) {
  return {Status::kInternal, std::string("CUDA error in ") + what + ": " + cudaGetErrorName(e) + " (" +
                                 cudaGetErrorString(e) + ")"};
}

inline Error invalid(std::string m) { return {Status::kInvalidArgument, std::move(m)}; }

}  // namespace taskcodec::cuda::detail

#define TC_CUDA_TRY(expr)                                                                   \
  do {                                                                                      \
    const cudaError_t tc_err_ = (expr);                                                     \
    if (tc_err_ != cudaSuccess) return ::taskcodec::cuda::detail::cuda_error(tc_err_, #expr); \
  } while (0)

namespace taskcodec::cuda::detail {

// Device memory owned for the duration of one call (stream-ordered).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() {
    if (ptr_) cudaFreeAsync(ptr_, stream_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  Error allocate(size_t bytes, cudaStream_t stream) {
    stream_ = stream;
    if (bytes == 0) bytes = 1;
    TC_CUDA_TRY(cudaMallocAsync(&ptr_, bytes, stream));
    return {};
  }
  template <class T>
  T* as() const noexcept {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

// Device time between two events recorded around kernels on a stream.
class EventTimer {
 public:
  explicit EventTimer(bool on, cudaStream_t stream) : on_(on), stream_(stream) {
    if (on_) {
      cudaEventCreate(&a_);
      cudaEventCreate(&b_);
    }
  }
  ~EventTimer() {
    if (on_) {
      cudaEventDestroy(a_);
      cudaEventDestroy(b_);
    }
  }
  void start() {
    if (on_) cudaEventRecord(a_, stream_);
  }
  void stop() {
    if (on_) cudaEventRecord(b_, stream_);
  }
  // After the stream has been synchronised.
  void read(double* ms) {
    if (!on_ || !ms) return;
    float f = 0;
    cudaEventElapsedTime(&f, a_, b_);
    *ms = f;
  }

 private:
  bool on_;
  cudaStream_t stream_;
  cudaEvent_t a_{}, b_{};
};

}  // namespace taskcodec::cuda::detail
