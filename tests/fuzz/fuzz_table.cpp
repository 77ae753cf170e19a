// libFuzzer target: CdfTable::deserialize on arbitrary bytes. A table that parses must
// re-serialize to exactly the input (the layout is canonical), carry the FNV-1a
// fingerprint of the input, have valid rows, and its decoder lookup must give the owner
// of every slot. The same bytes, read as binary64 weights, also go through from_pmf.
#include <cmath>

#include "fuzz_common.hpp"

using namespace tcfuzz;

namespace {

void check_table(const CdfTable& t) {
  const uint64_t m = 1ull << t.precision();
  for (size_t r = 0; r < t.rows(); ++r) {
    uint64_t sum = 0;
    for (uint32_t s = 0; s <= t.length(r); ++s) {
      const uint32_t f = t.freqs(r)[s];
      if (f < 1 || f >= m) fail("a frequency outside 1 .. 2^precision - 1");
      sum += f;
    }
    if (sum != m) fail("a row does not sum to 2^precision");
    if (static_cast<int64_t>(t.offset(r)) + t.length(r) - 1 > std::numeric_limits<int32_t>::max()) {
      fail("a row runs past int32");
    }
  }
}

void check_lookup(const CdfTable& t) {
  // Bounded work per input: rows x slots.
  if ((static_cast<uint64_t>(t.rows()) << t.precision()) > (1u << 20)) return;
  t.prepare_decoder();
  for (size_t r = 0; r < t.rows(); ++r) {
    const RowDecoder rd = t.decoder_row(r);
    uint32_t slot = 0;
    for (uint32_t s = 0; s <= t.length(r); ++s) {
      const uint32_t f = t.freqs(r)[s];
      if ((rd.info[s] & 0xFFFFu) != f || (rd.info[s] >> 16) != slot) fail("decoder info differs");
      for (uint32_t i = 0; i < f; ++i, ++slot) {
        if (lookup_symbol(rd, slot, t.bucket_shift()) != s) fail("slot lookup gives the wrong symbol");
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // ---- deserialize
  std::vector<uint8_t> bytes(data, data + size);  // exact size
  TablePtr t;
  const Error e = CdfTable::deserialize(bytes.data(), bytes.size(), &t);
  if (e) {
    if (e.status != Status::kCorruptStream && e.status != Status::kUnsupportedVersion) {
      fail("deserialize failed with an unexpected status", e);
    }
    if (e.message.empty()) fail("an error without a message", e);
  } else {
    if (t->serialized() != bytes) fail("a parsed table re-serializes to other bytes");
    if (t->fingerprint() != fnv1a64(bytes.data(), bytes.size())) fail("fingerprint is not FNV-1a of the bytes");
    check_table(*t);
    check_lookup(*t);
  }

  // ---- from_pmf: byte 0 precision, byte 1 flags and row count, then binary64 weights
  if (size < 2 + 8) return 0;
  const uint32_t precision = 1 + data[0] % 16;
  const bool trim = (data[1] & 1) != 0;
  const bool with_escape = (data[1] & 2) != 0;
  const size_t rows = 1 + (data[1] >> 2) % 3;
  const size_t nd = (size - 2) / 8;
  const size_t esc_n = with_escape ? rows : 0;
  if (nd < rows + esc_n) return 0;
  const size_t width = (nd - esc_n) / rows;
  std::vector<double> w(nd);
  std::memcpy(w.data(), data + 2, nd * 8);
  std::vector<int32_t> offsets(rows);
  for (size_t r = 0; r < rows; ++r) offsets[r] = static_cast<int32_t>(r * 1000) - 500;
  const double* escape = with_escape ? w.data() + rows * width : nullptr;
  bool valid = width + 1 <= (size_t{1} << precision);
  for (size_t i = 0; i < rows * width; ++i) valid &= std::isfinite(w[i]) && w[i] >= 0.0;
  for (size_t r = 0; escape && r < rows; ++r) valid &= std::isfinite(escape[r]) && escape[r] >= 0.0;
  TablePtr p;
  const Error pe = CdfTable::from_pmf(w.data(), rows, width, offsets.data(), nullptr, escape, precision, &p, trim);
  if (valid != pe.ok()) fail(valid ? "from_pmf refused valid weights" : "from_pmf accepted invalid weights", pe);
  if (pe.ok()) {
    check_table(*p);
    // Deterministic: the same inputs give the same table.
    TablePtr again;
    check_ok(CdfTable::from_pmf(w.data(), rows, width, offsets.data(), nullptr, escape, precision, &again, trim),
             "from_pmf a second time");
    if (again->serialized() != p->serialized()) fail("from_pmf is not deterministic");
    TablePtr back;
    check_ok(CdfTable::deserialize(p->serialized().data(), p->serialized().size(), &back),
             "deserializing a built table");
    if (back->fingerprint() != p->fingerprint()) fail("serialization round trip changed the fingerprint");
  }
  return 0;
}
