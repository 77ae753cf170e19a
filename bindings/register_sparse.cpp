// Sparse-update bindings (tc.fl): top-k, error feedback, records and kind-2 frames.
// Buffers in (float32, C-contiguous), bytes out, the GIL released while the core works.
#include <cstring>
#include <string>
#include <vector>

#include "common.hpp"
#include "taskcodec/sketch.hpp"
#include "taskcodec/sparse.hpp"

namespace taskcodec::py_bindings {

namespace {

using F32 = py::array_t<float, py::array::c_style>;

// A float32, C-contiguous numpy array, refused otherwise (no silent copies of residuals).
F32 f32_view(const py::handle& obj, const char* what, bool writeable) {
  if (!py::isinstance<F32>(obj)) {
    throw CoreError(Status::kInvalidArgument, std::string(what) + " must be a float32 numpy array");
  }
  F32 a = py::reinterpret_borrow<F32>(obj);
  if (!(a.flags() & py::array::c_style)) {
    throw CoreError(Status::kInvalidArgument, std::string(what) + " must be C-contiguous");
  }
  if (writeable && !a.writeable()) throw CoreError(Status::kInvalidArgument, std::string(what) + " must be writeable");
  return a;
}

ValueParams value_params(int coding, uint32_t block_log2, uint32_t levels, uint64_t seed) {
  ValueParams p;
  if (coding < 0 || !value_coding_valid(static_cast<uint8_t>(coding))) {
    throw CoreError(Status::kInvalidArgument, "unknown value coding " + std::to_string(coding));
  }
  p.coding = static_cast<ValueCoding>(coding);
  p.block_log2 = block_log2;
  p.levels = levels;
  p.seed = seed;
  check(check_value_params(p));
  return p;
}

py::tuple compress_tensor_py(const py::object& update, const py::object& residual, uint64_t k, int coding,
                             uint32_t block_log2, uint32_t levels, uint64_t seed, uint64_t stream, int threads) {
  F32 u = f32_view(update, "update", false);
  F32 r;
  float* rp = nullptr;
  if (!residual.is_none()) {
    r = f32_view(residual, "residual", true);
    if (r.size() != u.size()) throw CoreError(Status::kInvalidArgument, "residual and update differ in size");
    rp = r.mutable_data();
  }
  const ValueParams p = value_params(coding, block_log2, levels, seed);
  std::vector<uint8_t> rec;
  if (k > static_cast<uint64_t>(u.size())) throw CoreError(Status::kInvalidArgument, "k exceeds the tensor's size");
  py::array_t<uint32_t> idx(static_cast<py::ssize_t>(k));
  uint32_t* ip = idx.mutable_data();
  {
    py::gil_scoped_release nogil;
    check(compress_tensor(u.data(), rp, static_cast<size_t>(u.size()), static_cast<size_t>(k), p, stream, &rec,
                          ip, nullptr, threads));
  }
  // The record, and the indices it sends (DGC's momentum masking needs them).
  return py::make_tuple(py::bytes(reinterpret_cast<const char*>(rec.data()), rec.size()), idx);
}

// A record from a selection made elsewhere (the GPU path): (record, dequantized values).
py::tuple encode_selected_py(const py::array_t<uint32_t, py::array::c_style | py::array::forcecast>& idx,
                             const py::object& values, uint64_t n, int coding, uint32_t block_log2,
                             uint32_t levels, uint64_t seed, uint64_t stream) {
  F32 v = f32_view(values, "values", false);
  if (static_cast<uint64_t>(idx.size()) != static_cast<uint64_t>(v.size())) {
    throw CoreError(Status::kInvalidArgument, "one value per selected index");
  }
  const ValueParams p = value_params(coding, block_log2, levels, seed);
  std::vector<uint8_t> rec;
  py::array_t<float> deq(v.size());
  float* dp = deq.mutable_data();
  {
    py::gil_scoped_release nogil;
    check(encode_selected(idx.data(), v.data(), static_cast<size_t>(n), static_cast<size_t>(v.size()), p, stream,
                          &rec, dp));
  }
  return py::make_tuple(py::bytes(reinterpret_cast<const char*>(rec.data()), rec.size()), deq);
}

py::bytes write_frame_py(const py::list& records, const py::bytes& meta, bool checksum) {
  std::vector<std::vector<uint8_t>> recs;
  recs.reserve(records.size());
  for (const auto& item : records) {
    const std::string s = py::cast<py::bytes>(item);
    recs.emplace_back(s.begin(), s.end());
  }
  const std::string m = meta;
  std::vector<uint8_t> out;
  {
    py::gil_scoped_release nogil;
    check(write_sparse_frame(recs, reinterpret_cast<const uint8_t*>(m.data()), m.size(), checksum, &out));
  }
  return py::bytes(reinterpret_cast<const char*>(out.data()), out.size());
}

struct Parsed {
  py::buffer_info info;
  FrameHeader header;
  std::vector<SparseRecord> records;
};

void parse(const py::buffer& blob, uint64_t max_tensors, uint64_t max_elements, int threads, Parsed* p) {
  p->info = blob.request();
  if (p->info.itemsize != 1 || p->info.ndim != 1) {
    throw CoreError(Status::kInvalidArgument, "frame must be a contiguous byte buffer");
  }
  SparseDecodeOptions opt;
  opt.max_tensors = max_tensors;
  opt.max_elements = max_elements;
  opt.threads = threads;
  py::gil_scoped_release nogil;
  check(parse_sparse_frame(static_cast<const uint8_t*>(p->info.ptr), static_cast<size_t>(p->info.size), opt,
                           &p->header, &p->records));
}

py::tuple read_py(const py::buffer& blob, uint64_t max_tensors, uint64_t max_elements) {
  Parsed p;
  parse(blob, max_tensors, max_elements, 1, &p);
  py::list recs;
  for (const auto& r : p.records) {
    py::dict d;
    d["n"] = r.n;
    d["k"] = r.k;
    d["values"] = value_coding_name(r.values.coding);
    d["index"] = r.index == IndexCoding::kGaps ? "gaps" : "bitmap";
    d["block_log2"] = r.values.block_log2;
    d["levels"] = r.values.levels;
    d["index_bytes"] = r.index_length;
    d["value_bytes"] = r.value_length;
    recs.append(d);
  }
  py::bytes meta(reinterpret_cast<const char*>(p.header.meta), p.header.meta_length);
  return py::make_tuple(meta, recs, (p.header.flags & kFlagChecksum) != 0);
}

py::list decode_py(const py::buffer& blob, uint64_t max_tensors, uint64_t max_elements) {
  Parsed p;
  parse(blob, max_tensors, max_elements, 1, &p);
  py::list out;
  for (const auto& r : p.records) {
    py::array_t<uint32_t> idx(static_cast<py::ssize_t>(r.k));
    py::array_t<float> val(static_cast<py::ssize_t>(r.k));
    uint32_t* ip = idx.mutable_data();
    float* vp = val.mutable_data();
    {
      py::gil_scoped_release nogil;
      check(decode_record(r, ip, vp));
    }
    out.append(py::make_tuple(idx, val));
  }
  return out;
}

void accumulate_py(const py::buffer& blob, const py::list& dense, float weight, uint64_t max_tensors,
                   uint64_t max_elements) {
  Parsed p;
  parse(blob, max_tensors, max_elements, 1, &p);
  if (dense.size() != p.records.size()) {
    throw CoreError(Status::kInvalidArgument, "the frame holds " + std::to_string(p.records.size()) +
                                                  " tensors, " + std::to_string(dense.size()) + " buffers given");
  }
  std::vector<F32> bufs;
  for (const auto& d : dense) bufs.push_back(f32_view(d, "dense buffer", true));
  for (size_t t = 0; t < bufs.size(); ++t) {
    if (static_cast<uint64_t>(bufs[t].size()) != p.records[t].n) {
      throw CoreError(Status::kInvalidArgument, "dense buffer " + std::to_string(t) + " holds " +
                                                    std::to_string(bufs[t].size()) + " values, the tensor has " +
                                                    std::to_string(p.records[t].n));
    }
  }
  // Everything is decoded into scratch before any buffer is touched, so a corrupt record
  // leaves the aggregate as it was.
  std::vector<std::vector<uint32_t>> idx(bufs.size());
  std::vector<std::vector<float>> val(bufs.size());
  std::vector<float*> ptrs;
  for (auto& b : bufs) ptrs.push_back(b.mutable_data());
  py::gil_scoped_release nogil;
  for (size_t t = 0; t < bufs.size(); ++t) {
    idx[t].resize(static_cast<size_t>(p.records[t].k));
    val[t].resize(static_cast<size_t>(p.records[t].k));
    check(decode_record(p.records[t], idx[t].data(), val[t].data()));
  }
  for (size_t t = 0; t < bufs.size(); ++t) {
    for (size_t j = 0; j < idx[t].size(); ++j) ptrs[t][idx[t][j]] += weight * val[t][j];
  }
}

py::array_t<uint32_t> topk_py(const py::object& x, uint64_t k, int threads) {
  F32 a = f32_view(x, "x", false);
  py::array_t<uint32_t> idx(static_cast<py::ssize_t>(k));
  uint32_t* ip = idx.mutable_data();
  {
    py::gil_scoped_release nogil;
    check(topk_select(a.data(), static_cast<size_t>(a.size()), static_cast<size_t>(k), ip, threads));
  }
  return idx;
}

py::tuple encode_values_py(const py::object& v, int coding, uint32_t block_log2, uint32_t levels, uint64_t seed,
                           uint64_t stream) {
  F32 a = f32_view(v, "values", false);
  const ValueParams p = value_params(coding, block_log2, levels, seed);
  const size_t k = static_cast<size_t>(a.size());
  std::vector<uint8_t> out(static_cast<size_t>(value_bytes(p, k)));
  py::array_t<float> deq(static_cast<py::ssize_t>(k));
  float* dp = deq.mutable_data();
  {
    py::gil_scoped_release nogil;
    check(encode_values(a.data(), k, p, stream, out.data(), out.size(), dp));
  }
  return py::make_tuple(py::bytes(reinterpret_cast<const char*>(out.data()), out.size()), deq);
}

SketchShape sketch_shape(uint32_t rows, uint64_t cols, uint64_t seed) {
  SketchShape s;
  s.rows = rows;
  s.cols = cols;
  s.seed = seed;
  check(check_sketch_shape(s));
  return s;
}

// Adds the sketch of x (float32, any shape, read flat) to table (float32 [rows, cols]).
void sketch_accumulate_py(const py::object& x, const py::object& table, uint32_t rows, uint64_t cols, uint64_t seed,
                          int threads) {
  F32 a = f32_view(x, "update", false);
  F32 t = f32_view(table, "sketch table", true);
  const SketchShape s = sketch_shape(rows, cols, seed);
  if (static_cast<uint64_t>(t.size()) != static_cast<uint64_t>(rows) * cols) {
    throw CoreError(Status::kInvalidArgument, "the sketch table holds " + std::to_string(t.size()) +
                                                  " values, rows x cols is " + std::to_string(rows * cols));
  }
  float* tp = t.mutable_data();
  py::gil_scoped_release nogil;
  check(sketch_accumulate(a.data(), static_cast<size_t>(a.size()), s, tp, threads));
}

py::array_t<float> sketch_query_py(const py::object& table, uint64_t n, uint32_t rows, uint64_t cols, uint64_t seed,
                                   int threads) {
  F32 t = f32_view(table, "sketch table", false);
  const SketchShape s = sketch_shape(rows, cols, seed);
  if (static_cast<uint64_t>(t.size()) != static_cast<uint64_t>(rows) * cols) {
    throw CoreError(Status::kInvalidArgument, "the sketch table holds " + std::to_string(t.size()) +
                                                  " values, rows x cols is " + std::to_string(rows * cols));
  }
  py::array_t<float> out(static_cast<py::ssize_t>(n));
  float* op = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    check(sketch_query(t.data(), static_cast<size_t>(n), s, op, threads));
  }
  return out;
}

}  // namespace

void register_sparse(py::module_& m) {
  m.def("topk_count", [](uint64_t n, double ratio) { return topk_count(n, ratio); }, py::arg("n"),
        py::arg("ratio"));
  m.def("topk_select", &topk_py, py::arg("x"), py::arg("k"), py::arg("threads") = 0);
  m.def("sparse_encode_values", &encode_values_py, py::arg("values"), py::arg("coding"), py::arg("block_log2"),
        py::arg("levels"), py::arg("seed"), py::arg("stream"));
  m.def("sparse_compress_tensor", &compress_tensor_py, py::arg("update"), py::arg("residual"), py::arg("k"),
        py::arg("coding"), py::arg("block_log2"), py::arg("levels"), py::arg("seed"), py::arg("stream"),
        py::arg("threads") = 0);
  m.def("sparse_encode_selected", &encode_selected_py, py::arg("indices"), py::arg("values"), py::arg("n"),
        py::arg("coding"), py::arg("block_log2"), py::arg("levels"), py::arg("seed"), py::arg("stream"));
  m.def("sparse_write_frame", &write_frame_py, py::arg("records"), py::arg("meta"), py::arg("checksum"));
  m.def("sparse_read", &read_py, py::arg("blob"), py::arg("max_tensors"), py::arg("max_elements"));
  m.def("sparse_decode", &decode_py, py::arg("blob"), py::arg("max_tensors"), py::arg("max_elements"));
  m.def("sparse_accumulate", &accumulate_py, py::arg("blob"), py::arg("dense"), py::arg("weight"),
        py::arg("max_tensors"), py::arg("max_elements"));
  m.def("sketch_accumulate", &sketch_accumulate_py, py::arg("x"), py::arg("table"), py::arg("rows"),
        py::arg("cols"), py::arg("seed"), py::arg("threads") = 0);
  m.def("sketch_query", &sketch_query_py, py::arg("table"), py::arg("n"), py::arg("rows"), py::arg("cols"),
        py::arg("seed"), py::arg("threads") = 0);
  m.attr("SKETCH_MAX_ROWS") = kMaxSketchRows;
  m.attr("SPARSE_DEFAULT_MAX_TENSORS") = kDefaultMaxTensors;
  m.attr("SPARSE_DEFAULT_MAX_ELEMENTS") = kDefaultMaxElements;
}

}  // namespace taskcodec::py_bindings
