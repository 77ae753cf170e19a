// libFuzzer target: the input is a frame, exactly as a network peer could send it.
// parse_frame, then decode against each fixed table. A mutated frame keeps the
// fingerprint of its seed (the seeds are coded with these tables), so frames without a
// checksum reach the chunk decoder; checksummed ones exercise the CRC path.
#include "fuzz_common.hpp"

using namespace tcfuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  DecodeOptions opt;
  opt.max_symbols = kMaxSymbols;
  FrameHeader h;
  if (parse_frame(data, size, opt, &h)) return 0;
  for (const TablePtr& t : fixed_tables()) {
    if (h.fingerprint == t->fingerprint()) {
      decode_and_check(data, size, *t);
    } else {
      const Error e = check_decode(h, *t, nullptr, 0);
      if (e.ok()) fail("a frame passed check_decode with another table's fingerprint");
    }
  }
  return 0;
}
