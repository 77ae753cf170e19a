// taskcodec._core: the compiled part of taskcodec. Private: use the taskcodec package.
#include "common.hpp"
#include "taskcodec/frame.hpp"
#include "taskcodec/version.hpp"

namespace taskcodec::py_bindings {

namespace {
// Exception classes live in taskcodec.errors (Python owns the tree); looked up once.
PyObject* g_errors[10] = {};

PyObject* error_class(Status s) {
  const int i = static_cast<int>(s);
  if (i >= 0 && i < 10 && g_errors[i]) return g_errors[i];
  return PyExc_RuntimeError;
}
}  // namespace

void register_errors(py::module_& m) {
  py::module_ errors = py::module_::import("taskcodec.errors");
  const auto bind = [&](Status s, const char* name) {
    PyObject* cls = errors.attr(name).ptr();
    Py_INCREF(cls);  // kept for the life of the process
    g_errors[static_cast<int>(s)] = cls;
  };
  bind(Status::kInvalidArgument, "TaskcodecError");
  bind(Status::kCorruptStream, "CorruptStreamError");
  bind(Status::kChecksumMismatch, "ChecksumError");
  bind(Status::kTableMismatch, "TableMismatchError");
  bind(Status::kUnsupportedVersion, "UnsupportedVersionError");
  bind(Status::kLimitExceeded, "LimitExceededError");
  bind(Status::kBufferTooSmall, "TaskcodecError");
  g_errors[static_cast<int>(Status::kOutOfMemory)] = PyExc_MemoryError;
  g_errors[static_cast<int>(Status::kInternal)] = PyExc_RuntimeError;
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const CoreError& e) {
      PyErr_SetString(error_class(e.status), e.what());
    }
  });
  m.def("status_name", [](int code) { return status_name(static_cast<Status>(code)); },
        "Stable name of a core status code.");
}

}  // namespace taskcodec::py_bindings

PYBIND11_MODULE(_core, m) {
  namespace tb = taskcodec::py_bindings;
  m.doc() = "taskcodec's compiled core (private; use the taskcodec package)";
  m.attr("__version__") = taskcodec::version_string();
  m.attr("FORMAT_VERSION") = taskcodec::kFormatVersion;
  m.attr("has_cuda") = static_cast<bool>(TASKCODEC_HAS_CUDA);
  m.attr("ROW_SINGLE") = taskcodec::kRowSingle;
  m.attr("ROW_INDEX") = taskcodec::kRowIndex;
  m.attr("DEFAULT_LANES") = taskcodec::kDefaultLanes;
  m.attr("DEFAULT_CHUNK_SIZE") = taskcodec::kDefaultChunkSize;
  m.attr("DEFAULT_MAX_SYMBOLS") = taskcodec::kDefaultMaxSymbols;
  m.attr("MAX_LANES") = taskcodec::kMaxLanes;
  m.attr("MAX_PRECISION") = taskcodec::kMaxPrecision;
  tb::register_errors(m);
  tb::register_table(m);
  tb::register_codec(m);
  tb::register_cuda(m);
  tb::register_sparse(m);
}
