// GPU coder bindings. Device memory comes in and out as integer addresses of buffers the
// Python layer owns (torch tensors, reached through DLPack there); this layer checks
// sizes, releases the GIL and maps statuses to exceptions. Built without the CUDA kernels,
// every entry point raises a clear error and cuda_available() is False.
#include <cstring>
#include <memory>
#include <vector>

#include <pybind11/stl.h>

#include "common.hpp"
#include "taskcodec/frame.hpp"
#if TASKCODEC_HAS_CUDA
#include "taskcodec/cuda.hpp"
#endif

namespace taskcodec::py_bindings {

namespace {

#if TASKCODEC_HAS_CUDA
struct PyDeviceTable {
  std::shared_ptr<cuda::DeviceTable> t;
};

// Python passes device pointers and CUDA streams as integers.
template <class T>
const T* ptr_of(uint64_t address) {
  return reinterpret_cast<const T*>(static_cast<uintptr_t>(address));
}

template <class T>
T* mut_ptr_of(uint64_t address) {
  return reinterpret_cast<T*>(static_cast<uintptr_t>(address));
}

void* stream_of(uint64_t stream) { return reinterpret_cast<void*>(static_cast<uintptr_t>(stream)); }

py::tuple cuda_encode(const PyDeviceTable& dt, uint64_t symbols_dev, int dtype_code,
                      const std::vector<uint64_t>& shape, int row_mode, uint64_t index_dev,
                      const py::object& index_host, const py::bytes& meta, uint32_t lanes,
                      uint32_t chunk_size, bool checksum, uint64_t stream) {
  if (!dtype_valid(static_cast<uint8_t>(dtype_code))) {
    throw CoreError(Status::kInvalidArgument, "unknown symbol dtype code");
  }
  cuda::DeviceLayout layout;
  layout.shape = shape.data();
  layout.ndim = shape.size();
  layout.row_mode = static_cast<uint8_t>(row_mode);
  py::array_t<int32_t, py::array::c_style | py::array::forcecast> idx;
  if (row_mode == kRowIndex) {
    if (index_host.is_none() || index_dev == 0) {
      throw CoreError(Status::kInvalidArgument, "an index is required on the device and on the host");
    }
    idx = index_host.cast<py::array_t<int32_t, py::array::c_style | py::array::forcecast>>();
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;
    if (static_cast<uint64_t>(idx.size()) != n) {
      throw CoreError(Status::kInvalidArgument, "index must have one entry per symbol");
    }
    layout.index_host = idx.data();
    layout.index_dev = ptr_of<int32_t>(index_dev);
  }
  const std::string meta_s = meta;
  EncodeOptions opt;
  opt.lanes = lanes;
  opt.chunk_size = chunk_size;
  opt.checksum = checksum;
  std::vector<uint8_t> frame;
  double ms = 0;
  {
    py::gil_scoped_release nogil;
    check(cuda::encode_frame(*dt.t, ptr_of<void>(symbols_dev), static_cast<DType>(dtype_code), layout,
                             reinterpret_cast<const uint8_t*>(meta_s.data()), meta_s.size(), opt,
                             stream_of(stream), &frame, &ms));
  }
  py::bytes out(reinterpret_cast<const char*>(frame.data()), frame.size());
  return py::make_tuple(out, ms);
}

// frames: bytes-like objects; outs / index_devs / frame_devs: device addresses (0 = none).
// index_hosts: None or the same index in host memory (checked against the frame's CRC).
py::tuple cuda_decode(const PyDeviceTable& dt, const std::vector<py::buffer>& frames,
                      const std::vector<uint64_t>& outs, const std::vector<uint64_t>& index_devs,
                      const std::vector<py::object>& index_hosts,
                      const std::vector<uint64_t>& frame_devs, uint64_t max_symbols, uint64_t stream) {
  const size_t n = frames.size();
  if (outs.size() != n || index_devs.size() != n || frame_devs.size() != n || index_hosts.size() != n) {
    throw CoreError(Status::kInvalidArgument, "one output, index and device frame per frame");
  }
  std::vector<py::array_t<int32_t, py::array::c_style | py::array::forcecast>> idx(n);
  std::vector<char> has_idx(n, 0);
  for (size_t i = 0; i < n; ++i) {
    if (!index_hosts[i].is_none()) {
      has_idx[i] = 1;
      idx[i] = index_hosts[i].cast<py::array_t<int32_t, py::array::c_style | py::array::forcecast>>();
    }
  }
  std::vector<py::buffer_info> infos;
  infos.reserve(n);
  std::vector<FrameHeader> headers(n);
  DecodeOptions dopt;
  dopt.max_symbols = max_symbols;
  for (size_t i = 0; i < n; ++i) {
    infos.push_back(frames[i].request());
    if (infos[i].itemsize != 1) throw CoreError(Status::kInvalidArgument, "frames must be byte buffers");
  }
  std::vector<cuda::DecodeItem> items(n);
  std::vector<uint32_t> item_status;
  double ms = 0;
  {
    py::gil_scoped_release nogil;
    for (size_t i = 0; i < n; ++i) {
      const auto* data = static_cast<const uint8_t*>(infos[i].ptr);
      const auto len = static_cast<size_t>(infos[i].size);
      Error e = parse_frame(data, len, dopt, &headers[i]);
      const bool has_index = has_idx[i] != 0;
      if (!e) {
        e = check_decode(headers[i], dt.t->host(), has_index ? idx[i].data() : nullptr,
                         has_index ? static_cast<size_t>(idx[i].size()) : 0);
      }
      if (!e && has_index && index_devs[i] == 0) {
        e = Error{Status::kInvalidArgument, "the index must also be on the device"};
      }
      if (e) {
        if (n > 1) e.message = "frame " + std::to_string(i) + ": " + e.message;
        check(e);
      }
      items[i].header = &headers[i];
      items[i].out_dev = mut_ptr_of<int32_t>(outs[i]);
      items[i].index_dev = ptr_of<int32_t>(index_devs[i]);
      if (frame_devs[i]) {
        items[i].frame_dev = ptr_of<uint8_t>(frame_devs[i]);
        items[i].frame_host = data;
      }
    }
    check(cuda::decode_frames(*dt.t, items.data(), n,
                              stream_of(stream), &item_status, &ms));
  }
  return py::make_tuple(ms, item_status);
}
#endif

}  // namespace

void register_cuda(py::module_& m) {
#if TASKCODEC_HAS_CUDA
  m.def("cuda_available", &cuda::device_available,
        "True when a CUDA driver and a device are present (never raises).");
  m.def("cuda_device_name", &cuda::device_name, py::arg("device") = 0);
  py::class_<PyDeviceTable>(m, "DeviceTable", "A table copied to a CUDA device.")
      .def(py::init([](const PyTable& t, int device) {
             std::unique_ptr<cuda::DeviceTable> d;
             {
               py::gil_scoped_release nogil;
               check(cuda::DeviceTable::create(t.t, device, &d));
             }
             return PyDeviceTable{std::shared_ptr<cuda::DeviceTable>(std::move(d))};
           }),
           py::arg("table"), py::arg("device"))
      .def_property_readonly("device", [](const PyDeviceTable& d) { return d.t->device(); })
      .def_property_readonly("fingerprint", [](const PyDeviceTable& d) { return d.t->host().fingerprint(); })
      .def_property_readonly("nbytes", [](const PyDeviceTable& d) { return d.t->bytes(); });
  m.def("cuda_encode", &cuda_encode, py::arg("table"), py::arg("symbols"), py::arg("dtype"),
        py::arg("shape"), py::arg("row_mode"), py::arg("index_dev"), py::arg("index_host"),
        py::arg("meta"), py::arg("lanes"), py::arg("chunk_size"), py::arg("checksum"),
        py::arg("stream"));
  m.def("cuda_decode", &cuda_decode, py::arg("table"), py::arg("frames"), py::arg("outs"),
        py::arg("index_devs"), py::arg("index_hosts"), py::arg("frame_devs"), py::arg("max_symbols"), py::arg("stream"));
  m.def("cuda_quantize",
        [](uint64_t x, uint64_t n, uint64_t inner, uint32_t channels, uint64_t inv_step, uint64_t zero,
           uint64_t q, uint64_t stream) {
          py::gil_scoped_release nogil;
          check(cuda::quantize(ptr_of<float>(x), n, inner, channels, ptr_of<float>(inv_step),
                               ptr_of<float>(zero), mut_ptr_of<int32_t>(q),
                               stream_of(stream)));
        });
  m.def("cuda_dequantize",
        [](uint64_t q, uint64_t n, uint64_t inner, uint32_t channels, uint64_t step, uint64_t zero,
           uint64_t x, uint64_t stream) {
          py::gil_scoped_release nogil;
          check(cuda::dequantize(ptr_of<int32_t>(q), n, inner, channels, ptr_of<float>(step),
                                 ptr_of<float>(zero), mut_ptr_of<float>(x),
                                 stream_of(stream)));
        });
  m.def("cuda_topk",
        [](uint64_t update, uint64_t residual, uint64_t n, uint64_t k, uint64_t idx, uint64_t val,
           uint64_t stream) {
          double ms = 0;
          py::gil_scoped_release nogil;
          check(cuda::topk_select(ptr_of<float>(update), mut_ptr_of<float>(residual),
                                  n, k, mut_ptr_of<uint32_t>(idx),
                                  mut_ptr_of<float>(val),
                                  stream_of(stream), &ms));
          return ms;
        });
  m.def("cuda_residual_subtract", [](uint64_t residual, uint64_t idx, uint64_t sent, uint64_t k, uint64_t stream) {
    py::gil_scoped_release nogil;
    check(cuda::residual_subtract(mut_ptr_of<float>(residual), ptr_of<uint32_t>(idx),
                                  ptr_of<float>(sent), k, stream_of(stream)));
  });
  m.def("cuda_scatter_add", [](uint64_t dense, uint64_t n, uint64_t idx, uint64_t val, uint64_t k, float scale,
                               uint64_t stream) {
    py::gil_scoped_release nogil;
    check(cuda::scatter_add(mut_ptr_of<float>(dense), n, ptr_of<uint32_t>(idx),
                            ptr_of<float>(val), k, scale, stream_of(stream)));
  });
#else
  m.def("cuda_available", []() { return false; },
        "False: this build carries no CUDA kernels (built without nvcc or with TASKCODEC_CUDA=OFF).");
#endif
}

}  // namespace taskcodec::py_bindings
