// Little-endian loads and stores, and a bounds-checked reader for untrusted bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace taskcodec::detail {

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "taskcodec's core assumes a little-endian CPU (x86_64, aarch64, CUDA devices)"
#endif

template <class T>
inline T load_le(const uint8_t* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <class T>
inline void store_le(uint8_t* p, T v) noexcept {
  std::memcpy(p, &v, sizeof(T));
}

template <class T>
inline void append_le(std::vector<uint8_t>& out, T v) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}

// Reads fixed-size fields; every read is checked against the end of the buffer.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t len) noexcept : p_(data), end_(data + len) {}
  size_t remaining() const noexcept { return static_cast<size_t>(end_ - p_); }
  const uint8_t* position() const noexcept { return p_; }
  template <class T>
  bool read(T* v) noexcept {
    if (remaining() < sizeof(T)) return false;
    std::memcpy(v, p_, sizeof(T));
    p_ += sizeof(T);
    return true;
  }
  bool skip(size_t n) noexcept {
    if (remaining() < n) return false;
    p_ += n;
    return true;
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

}  // namespace taskcodec::detail
