// libFuzzer target: bytes -> table parameters, layout, coder options and symbols ->
// encode -> decode. Aborts unless the decoded symbols equal the input, the frame equals
// the independent reference encoder's bytes (tests/cpp/reference_coder.hpp), and one and
// two encoder threads write the same bytes. Values that do not fit int32 must be refused
// with invalid_argument.
#include <limits>

#include "fuzz_common.hpp"
#include "reference_coder.hpp"

using namespace tcfuzz;

namespace {

class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  uint8_t u8() {
    if (!n_) return 0;
    --n_;
    return *p_++;
  }
  uint16_t u16() { return static_cast<uint16_t>(u8() | (u8() << 8)); }
  uint32_t u32() { return static_cast<uint32_t>(u16() | (static_cast<uint32_t>(u16()) << 16)); }
  size_t left() const { return n_; }
  const uint8_t* here() const { return p_; }
  void skip(size_t k) {
    p_ += k;
    n_ -= k;
  }

 private:
  const uint8_t* p_;
  size_t n_;
};

size_t dtype_bytes(DType d) {
  switch (d) {
    case DType::kInt8: case DType::kUInt8: return 1;
    case DType::kInt16: case DType::kUInt16: return 2;
    case DType::kInt32: case DType::kUInt32: return 4;
    case DType::kInt64: case DType::kUInt64: return 8;
  }
  return 1;
}

// Value i of a raw typed buffer as int64, and whether it is an int32 value.
bool value_at(const uint8_t* p, DType d, size_t i, int64_t* v) {
  const uint8_t* q = p + i * dtype_bytes(d);
  switch (d) {
    case DType::kInt8: *v = load<int8_t>(q); return true;
    case DType::kUInt8: *v = load<uint8_t>(q); return true;
    case DType::kInt16: *v = load<int16_t>(q); return true;
    case DType::kUInt16: *v = load<uint16_t>(q); return true;
    case DType::kInt32: *v = load<int32_t>(q); return true;
    case DType::kUInt32: *v = load<uint32_t>(q); return *v <= std::numeric_limits<int32_t>::max();
    case DType::kInt64: {
      *v = load<int64_t>(q);
      return *v >= std::numeric_limits<int32_t>::min() && *v <= std::numeric_limits<int32_t>::max();
    }
    case DType::kUInt64: {
      const uint64_t u = load<uint64_t>(q);
      *v = static_cast<int64_t>(u & 0x7FFFFFFFFFFFFFFFull);
      return u <= static_cast<uint64_t>(std::numeric_limits<int32_t>::max());
    }
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  // ---- table
  const uint32_t precision = 1 + in.u8() % 16;
  const uint8_t layout_byte = in.u8();
  const uint32_t mode = layout_byte % 3;  // 0 single row, 1 index, 2 channel axis
  const size_t rows = mode == 0 ? 1 : 1 + (layout_byte >> 2) % 4;
  const uint32_t kmax = std::min<uint32_t>((1u << precision) - 1, 300);
  std::vector<uint32_t> lengths(rows);
  std::vector<int32_t> offsets(rows);
  for (size_t r = 0; r < rows; ++r) {
    lengths[r] = 1 + in.u16() % kmax;
    const uint8_t kind = in.u8();
    int64_t off;
    if (kind < 16) off = std::numeric_limits<int32_t>::min();
    else if (kind < 32) off = int64_t{std::numeric_limits<int32_t>::max()} - lengths[r] + 1;
    else off = static_cast<int8_t>(in.u8()) * int64_t{(kind & 0x0F) + 1};
    offsets[r] = static_cast<int32_t>(off);
  }
  const size_t width = *std::max_element(lengths.begin(), lengths.end());
  std::vector<double> pmf(rows * width, 0.0);
  std::vector<double> escape(rows);
  for (size_t r = 0; r < rows; ++r) {
    // A weight byte per bin, repeated over long rows; squared for some skew.
    const uint8_t w0 = in.u8(), w1 = in.u8(), w2 = in.u8();
    for (size_t i = 0; i < lengths[r]; ++i) {
      const uint8_t b = (i % 3 == 0) ? w0 : (i % 3 == 1) ? w1 : w2;
      pmf[r * width + i] = static_cast<double>(b) * b + (i == 0 ? 0.5 : 0.0);
    }
    escape[r] = in.u8();
  }
  const uint8_t flags = in.u8();
  TablePtr t;
  check_ok(CdfTable::from_pmf(pmf.data(), rows, width, offsets.data(), lengths.data(),
                              (flags & 1) ? escape.data() : nullptr, precision, &t, (flags & 2) != 0),
           "from_pmf on valid weights");

  // ---- coder options and layout
  tctest::FrameInput fi;
  fi.options.lanes = 1u << (in.u8() % 9);
  const uint16_t cs = in.u16();
  fi.options.chunk_size = (cs & 0x8000) ? kDefaultChunkSize : 1u + cs % 700;
  fi.options.checksum = (flags & 4) != 0;
  fi.options.threads = 1;
  const DType dtype = static_cast<DType>(1 + in.u8() % 8);
  const size_t esize = dtype_bytes(dtype) + (mode == 1 ? 1 : 0);  // index mode: one index byte each
  size_t n = in.left() / esize;
  const uint8_t axis = in.u8() % 3;
  const size_t front = 1 + in.u8() % 4;
  n = std::min(n, in.left() / esize);
  if (mode == 0) {
    fi.row_mode = kRowSingle;
    fi.shape = {n};
  } else if (mode == 1) {
    fi.row_mode = kRowIndex;
    fi.shape = {n};
  } else {
    // A 3-D shape with the channel axis of size `rows`; the other two take the symbols.
    const size_t per = n / rows;
    const size_t a = std::min(front, std::max<size_t>(per, 1));
    const size_t b = per / a;
    n = rows * a * b;
    std::vector<uint64_t> shape = {a, b, b};
    shape[axis] = rows;
    shape[(axis + 1) % 3] = a;
    shape[(axis + 2) % 3] = b;
    fi.row_mode = axis;
    fi.shape = shape;
  }
  const uint8_t* raw = in.here();
  std::vector<int64_t> values(n);
  bool all_fit = true;
  for (size_t i = 0; i < n; ++i) all_fit &= value_at(raw, dtype, i, &values[i]);
  if (mode == 1) {
    const uint8_t* ib = raw + n * dtype_bytes(dtype);
    fi.index.resize(n);
    for (size_t i = 0; i < n; ++i) fi.index[i] = static_cast<int32_t>(ib[i] % rows);
  }
  // Exact-size copy of the typed symbols, so ASan sees any overread by the encoder.
  std::vector<uint8_t> typed(raw, raw + n * dtype_bytes(dtype));

  // ---- encode
  static const int32_t kEmpty = 0;
  const int32_t* idx = mode == 1 ? (fi.index.empty() ? &kEmpty : fi.index.data()) : nullptr;
  SymbolLayout layout{fi.shape.data(), fi.shape.size(), fi.row_mode, idx};
  FrameEncoder enc;
  const Error e = enc.encode(*t, typed.empty() ? nullptr : typed.data(), dtype, layout, nullptr, 0,
                             fi.options);
  if (!all_fit) {
    if (e.status != Status::kInvalidArgument) fail("a value outside int32 was not refused", e);
    return 0;
  }
  check_ok(e, "encoding valid symbols");
  std::vector<uint8_t> frame(enc.size());
  check_ok(enc.write(frame.data(), frame.size()), "write");
  if (frame != tctest::reference_frame(*t, values, dtype, fi)) {
    fail("the frame differs from the reference encoder's");
  }
  // Two threads write the same bytes.
  if (fi.options.chunk_size < n) {
    EncodeOptions two = fi.options;
    two.threads = 2;
    FrameEncoder enc2;
    check_ok(enc2.encode(*t, typed.empty() ? nullptr : typed.data(), dtype, layout, nullptr, 0, two),
             "encoding with two threads");
    std::vector<uint8_t> frame2(enc2.size());
    check_ok(enc2.write(frame2.data(), frame2.size()), "write");
    if (frame2 != frame) fail("two encoder threads wrote other bytes");
  }

  // ---- decode
  DecodeOptions dopt;
  dopt.max_symbols = n;
  FrameHeader h;
  check_ok(parse_frame(frame.data(), frame.size(), dopt, &h), "parsing a fresh frame");
  std::vector<int32_t> out(n);
  check_ok(decode_frame(h, *t, idx, mode == 1 ? n : 0, out.data(), out.size(), dopt),
           "decoding a fresh frame");
  for (size_t i = 0; i < n; ++i) {
    if (out[i] != values[i]) fail("round trip changed a symbol");
  }
  return 0;
}
