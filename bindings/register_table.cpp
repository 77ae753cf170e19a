// CdfTable bindings: numpy buffers in, no Python lists on any data path.
#include <cstring>

#include "common.hpp"
#include "taskcodec/frame.hpp"

namespace taskcodec::py_bindings {

namespace {

template <class T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

std::vector<uint32_t> lengths_or_default(const py::object& lengths, size_t rows, size_t width) {
  std::vector<uint32_t> out(rows, static_cast<uint32_t>(width));
  if (lengths.is_none()) return out;
  auto a = lengths.cast<CArray<uint32_t>>();
  if (a.ndim() != 1 || static_cast<size_t>(a.shape(0)) != rows) {
    throw CoreError(Status::kInvalidArgument, "lengths must be a 1-D array with one entry per row");
  }
  std::memcpy(out.data(), a.data(), rows * sizeof(uint32_t));
  return out;
}

PyTable from_pmf(const CArray<double>& pmf, const CArray<int32_t>& offsets, uint32_t precision,
                  const py::object& lengths, const py::object& escape, bool trim_tails) {
  if (pmf.ndim() != 2) throw CoreError(Status::kInvalidArgument, "pmf must be 2-D [rows, symbols]");
  const size_t rows = static_cast<size_t>(pmf.shape(0));
  const size_t width = static_cast<size_t>(pmf.shape(1));
  if (offsets.ndim() != 1 || static_cast<size_t>(offsets.shape(0)) != rows) {
    throw CoreError(Status::kInvalidArgument,
                    "offsets must be 1-D with one entry per pmf row (" + std::to_string(rows) + ")");
  }
  std::vector<uint32_t> lens = lengths_or_default(lengths, rows, width);
  CArray<double> esc;
  const double* esc_ptr = nullptr;
  if (!escape.is_none()) {
    esc = escape.cast<CArray<double>>();
    if (esc.ndim() != 1 || static_cast<size_t>(esc.shape(0)) != rows) {
      throw CoreError(Status::kInvalidArgument, "escape weights must be 1-D with one entry per row");
    }
    esc_ptr = esc.data();
  }
  PyTable t;
  {
    py::gil_scoped_release nogil;
    check(CdfTable::from_pmf(pmf.data(), rows, width, offsets.data(), lens.data(), esc_ptr,
                             precision, &t.t, trim_tails));
  }
  return t;
}

PyTable from_freqs(const CArray<uint32_t>& freqs, const CArray<int32_t>& offsets,
                    const CArray<uint32_t>& lengths, uint32_t precision) {
  if (freqs.ndim() != 1 || offsets.ndim() != 1 || lengths.ndim() != 1 ||
      offsets.shape(0) != lengths.shape(0)) {
    throw CoreError(Status::kInvalidArgument,
                    "from_freqs takes 1-D freqs (rows back to back, escape last in each row), "
                    "and 1-D offsets and lengths of equal size");
  }
  PyTable t;
  check(CdfTable::from_freqs(freqs.data(), static_cast<size_t>(freqs.shape(0)),
                             static_cast<size_t>(offsets.shape(0)), offsets.data(), lengths.data(),
                             precision, &t.t));
  return t;
}

}  // namespace

void register_table(py::module_& m) {
  py::class_<PyTable>(m, "Table", "Immutable integer CDF tables (see taskcodec.CdfTable).")
      .def_static("from_pmf", &from_pmf, py::arg("pmf"), py::arg("offsets"), py::arg("precision"),
                  py::arg("lengths") = py::none(), py::arg("escape") = py::none(),
                  py::arg("trim_tails") = false)
      .def_static("from_freqs", &from_freqs, py::arg("freqs"), py::arg("offsets"),
                  py::arg("lengths"), py::arg("precision"))
      .def_static(
          "from_bytes",
          [](const py::buffer& b) {
            py::buffer_info info = b.request();
            if (info.ndim != 1 || info.itemsize != 1 || info.strides[0] != 1) {
              throw CoreError(Status::kInvalidArgument, "table bytes must be a contiguous byte buffer");
            }
            PyTable t;
            check(CdfTable::deserialize(static_cast<const uint8_t*>(info.ptr),
                                        static_cast<size_t>(info.size), &t.t));
            return t;
          },
          py::arg("data"))
      .def("to_bytes",
           [](const PyTable& t) {
             const auto& s = t.t->serialized();
             return py::bytes(reinterpret_cast<const char*>(s.data()), s.size());
           })
      .def_property_readonly("fingerprint", [](const PyTable& t) { return t.t->fingerprint(); })
      .def_property_readonly("precision", [](const PyTable& t) { return t.t->precision(); })
      .def_property_readonly("num_rows", [](const PyTable& t) { return t.t->rows(); })
      .def_property_readonly("max_length", [](const PyTable& t) { return t.t->max_length(); })
      .def_property_readonly("offsets",
                             [](const PyTable& pt) {
                               const CdfTable& t = *pt.t;
                               py::array_t<int32_t> a(static_cast<py::ssize_t>(t.rows()));
                               for (size_t r = 0; r < t.rows(); ++r) a.mutable_at(r) = t.offset(r);
                               return a;
                             })
      .def_property_readonly("lengths",
                             [](const PyTable& pt) {
                               const CdfTable& t = *pt.t;
                               py::array_t<uint32_t> a(static_cast<py::ssize_t>(t.rows()));
                               for (size_t r = 0; r < t.rows(); ++r) a.mutable_at(r) = t.length(r);
                               return a;
                             })
      .def_property_readonly("freqs", [](const PyTable& pt) {
        const CdfTable& t = *pt.t;
        // [rows, max_length + 1]; row r holds length(r) + 1 entries (escape last), then zeros.
        const size_t w = t.max_length() + 1ull;
        py::array_t<uint32_t> a({static_cast<py::ssize_t>(t.rows()), static_cast<py::ssize_t>(w)});
        uint32_t* p = a.mutable_data();
        std::memset(p, 0, t.rows() * w * sizeof(uint32_t));
        for (size_t r = 0; r < t.rows(); ++r) {
          std::memcpy(p + r * w, t.freqs(r), (t.length(r) + 1ull) * sizeof(uint32_t));
        }
        return a;
      });
}

}  // namespace taskcodec::py_bindings
