// encode / decode / read_header bindings. Buffers in and out, the GIL released while
// the core works.
#include <cctype>
#include <cstring>

#include "common.hpp"
#include "taskcodec/frame.hpp"

namespace taskcodec::py_bindings {

namespace {

DType dtype_of(const py::buffer_info& info) {
  const std::string& f = info.format;
  const char c = f.empty() ? '?' : f.back();
  const bool is_signed = c == 'b' || c == 'h' || c == 'i' || c == 'l' || c == 'q';
  const bool is_unsigned = c == 'B' || c == 'H' || c == 'I' || c == 'L' || c == 'Q';
  if (!is_signed && !is_unsigned) {
    throw CoreError(Status::kInvalidArgument,
                    "symbols must be an integer array, got buffer format '" + f + "'");
  }
  switch (info.itemsize) {
    case 1: return is_signed ? DType::kInt8 : DType::kUInt8;
    case 2: return is_signed ? DType::kInt16 : DType::kUInt16;
    case 4: return is_signed ? DType::kInt32 : DType::kUInt32;
    case 8: return is_signed ? DType::kInt64 : DType::kUInt64;
    default: break;
  }
  throw CoreError(Status::kInvalidArgument, "unsupported integer size " + std::to_string(info.itemsize));
}

bool c_contiguous(const py::buffer_info& info) {
  py::ssize_t expect = info.itemsize;
  for (py::ssize_t d = info.ndim; d-- > 0;) {
    if (info.shape[d] != 1 && info.strides[d] != expect) return false;
    expect *= info.shape[d];
  }
  return true;
}

py::buffer_info byte_view(const py::buffer& b, const char* what) {
  py::buffer_info info = b.request();
  if (info.itemsize != 1 || !c_contiguous(info)) {
    throw CoreError(Status::kInvalidArgument, std::string(what) + " must be a contiguous byte buffer");
  }
  return info;
}

py::bytes encode(const py::buffer& symbols, const PyTable& table, int row_mode,
                 const py::object& index, const py::bytes& meta, uint32_t lanes,
                 uint32_t chunk_size, bool checksum, int threads, int kind) {
  py::buffer_info info = symbols.request();
  if (!c_contiguous(info)) throw CoreError(Status::kInvalidArgument, "symbols must be C-contiguous");
  const DType dtype = dtype_of(info);
  std::vector<uint64_t> shape(info.shape.begin(), info.shape.end());
  SymbolLayout layout{shape.data(), shape.size(), static_cast<uint8_t>(row_mode), nullptr};
  py::array_t<int32_t, py::array::c_style | py::array::forcecast> idx;
  if (!index.is_none()) {
    idx = index.cast<py::array_t<int32_t, py::array::c_style | py::array::forcecast>>();
    if (static_cast<uint64_t>(idx.size()) != static_cast<uint64_t>(info.size)) {
      throw CoreError(Status::kInvalidArgument, "index must have one entry per symbol");
    }
    layout.index = idx.data();
  }
  const std::string meta_s = meta;  // small, copied
  EncodeOptions opt;
  opt.lanes = lanes;
  opt.chunk_size = chunk_size;
  opt.checksum = checksum;
  opt.threads = threads;
  opt.kind = static_cast<FrameKind>(kind);
  FrameEncoder enc;
  {
    py::gil_scoped_release nogil;
    check(enc.encode(*table.t, info.ptr, dtype, layout,
                     reinterpret_cast<const uint8_t*>(meta_s.data()), meta_s.size(), opt));
  }
  PyObject* out = PyBytes_FromStringAndSize(nullptr, static_cast<py::ssize_t>(enc.size()));
  if (!out) throw py::error_already_set();
  py::bytes result = py::reinterpret_steal<py::bytes>(out);
  {
    py::gil_scoped_release nogil;
    check(enc.write(reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(out)), enc.size()));
  }
  return result;
}

py::dict header_dict(const FrameHeader& h, size_t len) {
  py::dict d;
  d["version"] = h.version;
  d["kind"] = static_cast<int>(h.kind);
  d["flags"] = h.flags;
  d["checksum"] = (h.flags & kFlagChecksum) != 0;
  d["dtype"] = dtype_name(h.dtype);
  py::tuple shape(h.shape.size());
  for (size_t i = 0; i < h.shape.size(); ++i) shape[i] = h.shape[i];
  d["shape"] = shape;
  d["row_mode"] = h.row_mode;
  d["precision"] = h.precision;
  d["lanes"] = h.lanes;
  d["chunk_size"] = h.chunk_size;
  d["fingerprint"] = h.fingerprint;
  d["num_symbols"] = h.num_symbols;
  d["num_chunks"] = h.num_chunks;
  d["meta"] = py::bytes(reinterpret_cast<const char*>(h.meta), h.meta_length);
  d["index_checksum"] = h.row_mode == kRowIndex ? py::object(py::int_(h.index_checksum)) : py::none();
  d["header_length"] = h.header_length;
  d["payload_length"] = h.payload_length;
  d["frame_length"] = len;
  return d;
}

py::dict read_header(const py::buffer& blob, uint64_t max_symbols) {
  py::buffer_info info = byte_view(blob, "frame");
  FrameHeader h;
  DecodeOptions opt;
  opt.max_symbols = max_symbols;
  {
    py::gil_scoped_release nogil;
    check(parse_frame(static_cast<const uint8_t*>(info.ptr), static_cast<size_t>(info.size), opt, &h));
  }
  return header_dict(h, static_cast<size_t>(info.size));
}

py::array_t<int32_t> decode(const py::buffer& blob, const PyTable& table, const py::object& index,
                            uint64_t max_symbols, int threads, const py::object& out_obj) {
  py::buffer_info info = byte_view(blob, "frame");
  FrameHeader h;
  DecodeOptions opt;
  opt.max_symbols = max_symbols;
  opt.threads = threads;
  {
    py::gil_scoped_release nogil;
    check(parse_frame(static_cast<const uint8_t*>(info.ptr), static_cast<size_t>(info.size), opt, &h));
  }
  py::array_t<int32_t, py::array::c_style | py::array::forcecast> idx;
  const int32_t* idx_ptr = nullptr;
  size_t idx_len = 0;
  if (!index.is_none()) {
    idx = index.cast<py::array_t<int32_t, py::array::c_style | py::array::forcecast>>();
    idx_ptr = idx.data();
    idx_len = static_cast<size_t>(idx.size());
    bool same = static_cast<size_t>(idx.ndim()) == h.shape.size();
    for (size_t d = 0; same && d < h.shape.size(); ++d) {
      same = static_cast<uint64_t>(idx.shape(static_cast<py::ssize_t>(d))) == h.shape[d];
    }
    if (!same) throw CoreError(Status::kInvalidArgument, "index does not have the frame's shape");
  }
  // Everything about the frame is validated before the output is allocated.
  check(check_decode(h, *table.t, idx_ptr, idx_len));
  py::array_t<int32_t> out;
  if (out_obj.is_none()) {
    std::vector<py::ssize_t> shape(h.shape.begin(), h.shape.end());
    out = py::array_t<int32_t>(shape);
  } else {
    // A caller-owned output (reused between calls, no allocation or first-touch cost).
    if (!py::isinstance<py::array_t<int32_t>>(out_obj)) {
      throw CoreError(Status::kInvalidArgument, "out must be a numpy int32 array");
    }
    out = out_obj.cast<py::array_t<int32_t>>();
    bool same = static_cast<size_t>(out.ndim()) == h.shape.size();
    for (size_t d = 0; same && d < h.shape.size(); ++d) {
      same = static_cast<uint64_t>(out.shape(static_cast<py::ssize_t>(d))) == h.shape[d];
    }
    if (!same) throw CoreError(Status::kInvalidArgument, "out does not have the frame's shape");
    if (!(out.flags() & py::array::c_style) || !out.writeable()) {
      throw CoreError(Status::kInvalidArgument, "out must be C-contiguous and writeable");
    }
  }
  {
    py::gil_scoped_release nogil;
    check(decode_frame(h, *table.t, idx_ptr, idx_len, out.mutable_data(),
                       static_cast<size_t>(h.num_symbols), opt));
  }
  return out;
}

}  // namespace

void register_codec(py::module_& m) {
  m.def("encode", &encode, py::arg("symbols"), py::arg("table"), py::arg("row_mode"),
        py::arg("index"), py::arg("meta"), py::arg("lanes"), py::arg("chunk_size"),
        py::arg("checksum"), py::arg("threads"), py::arg("kind"));
  m.def("decode", &decode, py::arg("blob"), py::arg("table"), py::arg("index"),
        py::arg("max_symbols"), py::arg("threads"), py::arg("out") = py::none());
  m.def("read_header", &read_header, py::arg("blob"), py::arg("max_symbols"));
}

}  // namespace taskcodec::py_bindings
