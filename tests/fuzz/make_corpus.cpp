// Writes the seed corpora of the fuzz targets: valid frames coded with the fixed tables
// (so that mutations keep a matching fingerprint), table serializations, and structured
// inputs for the round-trip target. Usage: make_corpus OUT_DIR (one folder per target).
// Deterministic: the same seeds on every run, nothing binary is kept in the repository.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include "fuzz_common.hpp"
#include "taskcodec/sparse.hpp"

using namespace tcfuzz;
namespace fs = std::filesystem;

namespace {

struct Lcg {
  uint64_t s;
  uint32_t next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(s >> 33);
  }
  uint32_t below(uint32_t n) { return next() % n; }
};

class Writer {
 public:
  explicit Writer(fs::path root) : root_(std::move(root)) {}
  void put(const std::string& target, const std::vector<uint8_t>& bytes) {
    const fs::path dir = root_ / target;
    fs::create_directories(dir);
    const int k = counts_[target]++;
    char name[32];
    std::snprintf(name, sizeof name, "seed-%04d", k);
    std::ofstream f(dir / name, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!f) {
      std::cerr << "make_corpus: cannot write " << (dir / name) << "\n";
      std::exit(1);
    }
  }
  int total() const {
    int n = 0;
    for (const auto& [k, v] : counts_) n += v;
    return n;
  }

 private:
  fs::path root_;
  std::map<std::string, int> counts_;
};

// n symbols of row `row_of(i)` drawn from the table, with escapes at about `esc` / 256.
template <class RowFn>
std::vector<int32_t> sample(const CdfTable& t, size_t n, RowFn row_of, uint32_t esc, Lcg& rng) {
  std::vector<int32_t> v(n);
  const uint32_t m = 1u << t.precision();
  for (size_t i = 0; i < n; ++i) {
    const size_t r = row_of(i);
    const int64_t off = t.offset(r);
    const uint32_t k = t.length(r);
    if (rng.below(256) < esc) {
      const int64_t far[] = {std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max(),
                             off - 1, off + k, off - 1000, off + k + 70000};
      int64_t x = far[rng.below(6)];
      x = std::max<int64_t>(x, std::numeric_limits<int32_t>::min());
      x = std::min<int64_t>(x, std::numeric_limits<int32_t>::max());
      v[i] = static_cast<int32_t>(x);
      continue;
    }
    uint32_t slot = rng.below(m);
    uint32_t s = 0;
    while (slot >= t.freqs(r)[s]) slot -= t.freqs(r)[s++];
    if (s == k) s = rng.below(k);
    v[i] = static_cast<int32_t>(off + s);
  }
  return v;
}

std::vector<uint8_t> with_prefix(const std::vector<uint8_t>& prefix, const std::vector<uint8_t>& body) {
  std::vector<uint8_t> out(prefix);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_corpus OUT_DIR\n";
    return 2;
  }
  Writer w{fs::path(argv[1])};
  Lcg rng{12345};
  const auto& tables = fixed_tables();

  // ---- frames of the fixed tables (decode targets)
  const size_t sizes[] = {0, 1, 9, 64, 300};
  const uint32_t lanes[] = {1, 4, 32};
  const uint32_t chunks[] = {1, 16, kDefaultChunkSize};
  for (size_t ti = 0; ti < tables.size(); ++ti) {
    const CdfTable& t = *tables[ti];
    const uint8_t selector = static_cast<uint8_t>(ti);
    const std::vector<uint8_t> tb = t.serialized();
    std::vector<uint8_t> table_prefix(2);
    store<uint16_t>(table_prefix.data(), static_cast<uint16_t>(tb.size()));
    table_prefix.insert(table_prefix.end(), tb.begin(), tb.end());
    w.put("fuzz_table", tb);
    int variant = 0;
    for (size_t n : sizes) {
      for (int mode = 0; mode < 2; ++mode) {
        EncodeOptions o;
        o.lanes = lanes[rng.below(3)];
        o.chunk_size = chunks[rng.below(3)];
        if (n > 100 && o.chunk_size == 1) o.chunk_size = 16;  // keep the directory small
        o.checksum = (variant++ % 3) == 0;
        o.threads = 1;
        std::vector<uint64_t> shape;
        uint8_t row_mode;
        std::vector<int32_t> v;
        if (t.rows() == 1) {
          row_mode = mode == 0 ? kRowSingle : kRowIndex;
          shape = mode == 0 ? std::vector<uint64_t>{n} : std::vector<uint64_t>{n / 3 + 1, 3};
          const uint64_t count = mode == 0 ? n : (n / 3 + 1) * 3;
          v = sample(t, count, [](size_t) { return size_t{0}; }, 12, rng);
        } else if (mode == 0) {
          row_mode = 1;  // channel axis 1 of (a, rows, b)
          const uint64_t a = 1 + n / 64, b = 1 + n / 16;
          shape = {a, t.rows(), b};
          v = sample(t, a * t.rows() * b, [&](size_t i) { return (i / b) % t.rows(); }, 12, rng);
        } else {
          row_mode = kRowIndex;
          shape = {n};
          const std::vector<int32_t> idx = fixed_index(n, t.rows());
          v = sample(t, n, [&](size_t i) { return static_cast<size_t>(idx[i]); }, 12, rng);
        }
        const std::vector<uint8_t> meta = (variant % 4 == 1) ? std::vector<uint8_t>{'q', 'p'} : std::vector<uint8_t>{};
        const std::vector<uint8_t> f = encode_frame(t, v, shape, row_mode, o, meta);
        // The seeds must pass the oracle themselves, and re-stamping a valid frame is a no-op.
        check_ok(decode_and_check(f.data(), f.size(), t), "a seed frame does not decode");
        std::vector<uint8_t> stamped(f);
        restamp(stamped, t);
        if (stamped != f) fail("re-stamping changed a valid frame");
        w.put("fuzz_decode", f);
        w.put("fuzz_decode_stamped", with_prefix({selector}, f));
        if (table_prefix.size() + f.size() <= 8192) w.put("fuzz_decode_table", with_prefix(table_prefix, f));
      }
    }
  }

  // ---- long, high-entropy frames (values uniform over each row's range): the decoder's
  // unchecked and SIMD kernels only run while 4 words per symbol remain for a block of
  // 256 symbols, so the short frames above never reach them.
  for (size_t ti = 0; ti < tables.size(); ++ti) {
    const CdfTable& t = *tables[ti];
    std::vector<uint8_t> table_prefix(2);
    store<uint16_t>(table_prefix.data(), static_cast<uint16_t>(t.serialized().size()));
    table_prefix.insert(table_prefix.end(), t.serialized().begin(), t.serialized().end());
    for (uint32_t l : {8u, 32u}) {
      // About 2600 words of payload whatever the precision.
      const uint32_t bits = std::max<uint32_t>(1, t.precision() - 2);
      const size_t n = std::min<size_t>(2600 * 16 / bits, 6000);
      const bool channel = t.rows() > 1 && l == 8;
      std::vector<uint64_t> shape = channel ? std::vector<uint64_t>{1, t.rows(), n / t.rows()}
                                            : std::vector<uint64_t>{n};
      const uint64_t count = channel ? t.rows() * (n / t.rows()) : n;
      const uint8_t row_mode = channel ? 1 : (t.rows() > 1 ? kRowIndex : kRowSingle);
      const std::vector<int32_t> idx = fixed_index(count, t.rows());
      std::vector<int32_t> v(count);
      for (size_t i = 0; i < count; ++i) {
        const size_t r = channel ? i / (n / t.rows()) : (row_mode == kRowIndex ? static_cast<size_t>(idx[i]) : 0);
        v[i] = static_cast<int32_t>(t.offset(r) + rng.below(t.length(r)));
      }
      EncodeOptions o;
      o.lanes = l;
      o.checksum = false;
      o.threads = 1;
      const std::vector<uint8_t> f = encode_frame(t, v, shape, row_mode, o);
      check_ok(decode_and_check(f.data(), f.size(), t), "a long seed frame does not decode");
      if (f.size() > 8000) continue;  // keep under the decode targets' -max_len
      w.put("fuzz_decode", f);
      w.put("fuzz_decode_stamped", with_prefix({static_cast<uint8_t>(ti)}, f));
      if (table_prefix.size() + f.size() <= 12000) w.put("fuzz_decode_table", with_prefix(table_prefix, f));
    }
  }

  // ---- small tables of every precision, with a frame each (table and table+frame targets)
  for (uint32_t p = 1; p <= 16; ++p) {
    const uint32_t m = 1u << p;
    const uint32_t k = std::min<uint32_t>(m - 1, 1 + rng.below(40));
    std::vector<uint32_t> f(k + 1, 1);
    f[rng.below(k + 1)] += m - (k + 1);
    const TablePtr t = make_freqs({f}, {static_cast<int32_t>(rng.below(200)) - 100}, p);
    w.put("fuzz_table", t->serialized());
    EncodeOptions o;
    o.lanes = 1u << rng.below(6);
    o.chunk_size = 1 + rng.below(50);
    o.checksum = p % 2 == 0;
    o.threads = 1;
    const std::vector<int32_t> v = sample(*t, 40, [](size_t) { return size_t{0}; }, 20, rng);
    const std::vector<uint8_t> frame = encode_frame(*t, v, {v.size()}, kRowSingle, o);
    check_ok(decode_and_check(frame.data(), frame.size(), *t), "a seed frame does not decode");
    std::vector<uint8_t> in(2);
    store<uint16_t>(in.data(), static_cast<uint16_t>(t->serialized().size()));
    in.insert(in.end(), t->serialized().begin(), t->serialized().end());
    in.insert(in.end(), frame.begin(), frame.end());
    w.put("fuzz_decode_table", in);
  }

  // ---- from_pmf inputs for fuzz_table: precision, flags, then binary64 weights
  for (int s = 0; s < 6; ++s) {
    std::vector<uint8_t> in = {static_cast<uint8_t>(rng.below(16)), static_cast<uint8_t>(rng.below(12))};
    const size_t nw = 2 + rng.below(40);
    for (size_t i = 0; i < nw; ++i) {
      const double d = (rng.below(4) == 0) ? 0.0 : static_cast<double>(rng.below(1000)) / 7.0;
      uint8_t b[8];
      std::memcpy(b, &d, 8);
      in.insert(in.end(), b, b + 8);
    }
    w.put("fuzz_table", in);
  }

  // ---- structured byte strings for the round-trip target (every field is read from bytes)
  for (int s = 0; s < 24; ++s) {
    std::vector<uint8_t> in(16 + rng.below(600));
    for (auto& b : in) b = static_cast<uint8_t>(rng.next());
    // Mostly small symbol values, so that most land inside the rows.
    for (size_t i = 24; i < in.size(); ++i) {
      if (rng.below(4) != 0) in[i] = static_cast<uint8_t>(rng.below(8));
    }
    w.put("fuzz_roundtrip", in);
  }

  // ---- sparse updates (kind 2): every value coding, gap and bitmap indices, no checksum
  for (int c = 0; c < 5; ++c) {
    for (uint64_t n : {1ull, 40ull, 3000ull}) {
      std::vector<float> x(n);
      for (auto& v : x) v = static_cast<float>(static_cast<int32_t>(rng.below(2001)) - 1000) * 1e-3f;
      std::vector<std::vector<uint8_t>> recs(2);
      ValueParams p;
      p.coding = static_cast<ValueCoding>(c);
      p.block_log2 = rng.below(6);
      p.levels = 1 + rng.below(20);
      const size_t k1 = static_cast<size_t>(topk_count(n, 0.01)), k2 = static_cast<size_t>(topk_count(n, 0.4));
      check_ok(compress_tensor(x.data(), nullptr, n, k1, p, 0, &recs[0]), "sparse seed (gaps)");
      check_ok(compress_tensor(x.data(), nullptr, n, k2, p, 1, &recs[1]), "sparse seed (bitmap)");
      std::vector<uint8_t> f;
      check_ok(write_sparse_frame(recs, nullptr, 0, false, &f), "sparse seed frame");
      w.put("fuzz_sparse", f);
    }
  }

  std::cout << "make_corpus: wrote " << w.total() << " seeds under " << argv[1] << "\n";
  return 0;
}
