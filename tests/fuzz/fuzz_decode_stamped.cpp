// libFuzzer target: byte 0 picks one of the fixed tables, the rest is a frame whose
// fingerprint, index check and CRC32C trailer are re-stamped before decoding. Every
// mutation of the header fields and the chunks then reaches the chunk decoder, whatever
// the checksum flag says.
#include "fuzz_common.hpp"

using namespace tcfuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const auto& tables = fixed_tables();
  const CdfTable& t = *tables[data[0] % tables.size()];
  std::vector<uint8_t> frame(data + 1, data + size);  // exact size: ASan sees any overread
  restamp(frame, t);
  decode_and_check(frame.data(), frame.size(), t);
  return 0;
}
