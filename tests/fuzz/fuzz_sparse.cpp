// libFuzzer target: the input is a sparse-update frame (kind 2), as a client could send it.
// parse_sparse_frame, then decode and accumulate every record. Oracles: a record that
// decodes gives k strictly ascending indices below n and finite values, and accumulating it
// into a dense buffer succeeds. Seeds carry no checksum, so mutations reach the records.
#include <cmath>

#include "fuzz_common.hpp"
#include "taskcodec/sparse.hpp"

using namespace tcfuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  SparseDecodeOptions opt;
  opt.max_tensors = 64;
  opt.max_elements = 1u << 20;
  FrameHeader h;
  std::vector<SparseRecord> recs;
  if (parse_sparse_frame(data, size, opt, &h, &recs)) return 0;
  for (const SparseRecord& r : recs) {
    std::vector<uint32_t> idx(static_cast<size_t>(r.k));
    std::vector<float> val(static_cast<size_t>(r.k));
    const Error e = decode_record(r, idx.data(), val.data());
    if (e) {
      if (e.status != Status::kCorruptStream) fail("a bad record is not corrupt_stream", e);
      continue;
    }
    for (size_t j = 0; j < idx.size(); ++j) {
      if (idx[j] >= r.n || (j && idx[j] <= idx[j - 1])) fail("decoded indices are not ascending below n");
      if (!std::isfinite(val[j])) fail("a decoded value is not finite");
    }
    std::vector<float> dense(static_cast<size_t>(r.n), 0.0f);
    check_ok(accumulate_record(r, 1.0f, dense.data(), dense.size()), "a decodable record does not accumulate");
  }
  return 0;
}
