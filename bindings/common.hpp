// Shared helpers of the binding layer: status -> Python exception, buffer checks.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "taskcodec/status.hpp"
#include "taskcodec/table.hpp"

namespace taskcodec::py_bindings {

namespace py = pybind11;

// Carries a core Error through pybind11's exception translation.
struct CoreError : std::runtime_error {
  Status status;
  CoreError(Status s, const std::string& m) : std::runtime_error(m), status(s) {}
};

inline void check(const Error& e) {
  if (e) throw CoreError(e.status, e.message);
}

// The Python-side table object wraps a shared, immutable core table.
using TablePtr = std::shared_ptr<const CdfTable>;
struct PyTable {
  TablePtr t;
};

void register_errors(py::module_& m);
void register_table(py::module_& m);
void register_codec(py::module_& m);
void register_cuda(py::module_& m);
void register_sparse(py::module_& m);

}  // namespace taskcodec::py_bindings
