// libFuzzer target: (table bytes, frame bytes). Input: u16 little-endian table length,
// the serialized table, then the frame. The table is parsed with CdfTable::deserialize;
// the frame's fingerprint, index check and CRC are re-stamped for it, so fuzzed tables
// (precisions, row counts, fine buckets) meet fuzzed chunks.
#include "fuzz_common.hpp"

using namespace tcfuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t table_len = load<uint16_t>(data);
  if (size - 2 < table_len) return 0;
  std::vector<uint8_t> table_bytes(data + 2, data + 2 + table_len);
  TablePtr t;
  if (CdfTable::deserialize(table_bytes.data(), table_bytes.size(), &t)) return 0;
  // Decoder tables cost rows x buckets; keep one input's work small.
  if (t->rows() > 64) return 0;
  std::vector<uint8_t> frame(data + 2 + table_len, data + size);
  restamp(frame, *t);
  decode_and_check(frame.data(), frame.size(), *t);
  return 0;
}
