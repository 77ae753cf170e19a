// Tensor records and the kind-2 frame (docs/format.md section 21). The frame is an
// ordinary taskcodec frame: parse_frame makes every check of the core (magic, version,
// flags, CRC32C, lengths, directory, limits); each "chunk" of a kind-2 frame is one tensor
// record, so the directory gives the records' lengths.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "../util/bytes.hpp"
#include "taskcodec/checksum.hpp"
#include "taskcodec/sparse.hpp"
#include "taskcodec/version.hpp"

namespace taskcodec {
namespace {

using detail::load_le;

Error invalid(std::string m) { return {Status::kInvalidArgument, std::move(m)}; }
Error corrupt(std::string m) { return {Status::kCorruptStream, std::move(m)}; }

}  // namespace

Error encode_selected(const uint32_t* idx, const float* val, size_t n, size_t k, const ValueParams& p,
                      uint64_t stream, std::vector<uint8_t>* out, float* dequant) {
  if (Error e = check_value_params(p)) return e;
  if (n >= (1ull << 31)) return invalid("a tensor of a sparse update holds fewer than 2^31 elements");
  if (k > n || (n > 0 && k == 0)) {
    return invalid("k = " + std::to_string(k) + " must be in 1.." + std::to_string(n));
  }
  for (size_t j = 0; j < k; ++j) {
    if (idx[j] >= n || (j > 0 && idx[j] <= idx[j - 1])) {
      return invalid("selected indices must be ascending and below " + std::to_string(n));
    }
  }
  std::vector<float> deq(k);
  const uint64_t vbytes = value_bytes(p, k);
  std::vector<uint8_t> values(static_cast<size_t>(vbytes));
  if (Error e = encode_values(val, k, p, stream, values.data(), values.size(), deq.data())) return e;
  IndexCoding coding = IndexCoding::kBitmap;
  std::vector<uint8_t> index;
  if (Error e = encode_index(idx, k, n, &coding, &index)) return e;
  if (index.size() > UINT32_MAX || values.size() > UINT32_MAX) return invalid("record larger than 4 GiB");
  if (dequant && k) std::memcpy(dequant, deq.data(), 4 * k);

  std::vector<uint8_t>& o = *out;
  const size_t body = index.size() + values.size();
  const uint8_t pad = static_cast<uint8_t>(body & 1u);
  o.push_back(static_cast<uint8_t>(p.coding));
  o.push_back(static_cast<uint8_t>(coding));
  o.push_back(static_cast<uint8_t>(p.block_log2));
  o.push_back(static_cast<uint8_t>(p.coding == ValueCoding::kQsgd ? p.levels : 0));
  o.push_back(pad);
  o.push_back(0);
  o.push_back(0);
  o.push_back(0);
  detail::append_le<uint64_t>(o, n);
  detail::append_le<uint64_t>(o, k);
  detail::append_le<uint32_t>(o, static_cast<uint32_t>(index.size()));
  detail::append_le<uint32_t>(o, static_cast<uint32_t>(values.size()));
  o.insert(o.end(), index.begin(), index.end());
  o.insert(o.end(), values.begin(), values.end());
  if (pad) o.push_back(0);
  return {};
}

Error compress_tensor(const float* update, float* residual, size_t n, size_t k, const ValueParams& p,
                      uint64_t stream, std::vector<uint8_t>* out, uint32_t* sent_idx, float* sent_val,
                      int threads) {
  if (Error e = check_value_params(p)) return e;
  if (n >= (1ull << 31)) return invalid("a tensor of a sparse update holds fewer than 2^31 elements");
  if (k > n || (n > 0 && k == 0)) {
    return invalid("k = " + std::to_string(k) + " must be in 1.." + std::to_string(n));
  }
  const float* x = update;
  if (residual) {
    if (Error e = ef_accumulate(update, residual, n, threads)) return e;
    x = residual;
  }
  std::vector<uint32_t> idx(k);
  if (Error e = topk_select(x, n, k, idx.data(), threads)) return e;
  std::vector<float> val(k), deq(k);
  for (size_t j = 0; j < k; ++j) val[j] = x[idx[j]];
  if (Error e = encode_selected(idx.data(), val.data(), n, k, p, stream, out, deq.data())) return e;
  if (residual) {
    for (size_t j = 0; j < k; ++j) residual[idx[j]] = x[idx[j]] - deq[j];
  }
  if (sent_idx && k) std::memcpy(sent_idx, idx.data(), 4 * k);
  if (sent_val && k) std::memcpy(sent_val, deq.data(), 4 * k);
  return {};
}

Error write_sparse_frame(const std::vector<std::vector<uint8_t>>& records, const uint8_t* meta,
                         size_t meta_len, bool checksum, std::vector<uint8_t>* out) {
  if (meta_len > kMaxMetaBytes) return invalid("meta is larger than 1 MiB");
  if (records.size() > UINT32_MAX) return invalid("too many tensors");
  for (const auto& r : records) {
    if (r.size() < kRecordHeaderSize || r.size() % 2 || r.size() > UINT32_MAX) {
      return invalid("a record must come from compress_tensor");
    }
  }
  const uint64_t t = records.size();
  std::vector<uint8_t>& h = *out;
  h.clear();
  const uint32_t header_length = static_cast<uint32_t>(kFixedHeaderSize + 8 + meta_len);
  h.insert(h.end(), kMagic, kMagic + 4);
  h.push_back(static_cast<uint8_t>(kFormatVersion));
  h.push_back(static_cast<uint8_t>(FrameKind::kSparseUpdate));
  detail::append_le<uint16_t>(h, checksum ? kFlagChecksum : 0);
  detail::append_le<uint32_t>(h, header_length);
  h.push_back(static_cast<uint8_t>(DType::kUInt32));  // the coded gaps are uint32 symbols
  h.push_back(1);                                      // ndim: shape = (tensors,)
  h.push_back(kRowSingle);
  h.push_back(static_cast<uint8_t>(kGapPrecision));
  detail::append_le<uint16_t>(h, 1);  // lanes field 1: a record is >= 4 bytes and of even length
  detail::append_le<uint16_t>(h, 0);
  detail::append_le<uint32_t>(h, 1);  // chunk_size 1: one record per tensor
  detail::append_le<uint64_t>(h, 0);  // fingerprint: gap tables travel inside the records
  detail::append_le<uint64_t>(h, t);
  detail::append_le<uint32_t>(h, static_cast<uint32_t>(t));
  detail::append_le<uint32_t>(h, static_cast<uint32_t>(meta_len));
  detail::append_le<uint64_t>(h, t);
  if (meta_len) h.insert(h.end(), meta, meta + meta_len);
  for (const auto& r : records) detail::append_le<uint32_t>(h, static_cast<uint32_t>(r.size()));
  for (const auto& r : records) h.insert(h.end(), r.begin(), r.end());
  if (checksum) detail::append_le<uint32_t>(h, crc32c(h.data(), h.size()));
  return {};
}

Error parse_sparse_frame(const uint8_t* data, size_t len, const SparseDecodeOptions& options,
                         FrameHeader* header, std::vector<SparseRecord>* records) {
  DecodeOptions fo;
  fo.max_symbols = options.max_tensors;
  FrameHeader h;
  if (Error e = parse_frame(data, len, fo, &h)) {
    // The frame layer's only limit is its symbol count, which is a sparse update's tensor count.
    if (e.status == Status::kLimitExceeded) {
      return {Status::kLimitExceeded, "frame declares more tensors than max_tensors = " +
                                          std::to_string(options.max_tensors)};
    }
    return e;
  }
  if (h.kind != FrameKind::kSparseUpdate) return invalid("frame holds symbols, not a sparse update");
  if (h.dtype != DType::kUInt32 || h.shape.size() != 1 || h.row_mode != kRowSingle ||
      h.precision != kGapPrecision || h.lanes != 1 || h.chunk_size != 1 || h.fingerprint != 0) {
    return corrupt("sparse-update header fields are not those of section 21 (dtype uint32, one dim, "
                   "single row, precision 12, lanes 1, chunk size 1, fingerprint 0)");
  }
  std::vector<SparseRecord> out(h.num_chunks);
  const uint8_t* p = h.payload;
  uint64_t elements = 0;
  for (uint32_t t = 0; t < h.num_chunks; ++t) {
    const uint32_t rl = load_le<uint32_t>(h.directory + 4ull * t);
    const std::string where = "tensor " + std::to_string(t) + ": ";
    if (rl < kRecordHeaderSize) return corrupt(where + "record of " + std::to_string(rl) + " bytes is shorter than its header");
    SparseRecord& r = out[t];
    if (!value_coding_valid(p[0])) return corrupt(where + "unknown value coding " + std::to_string(p[0]));
    r.values.coding = static_cast<ValueCoding>(p[0]);
    if (p[1] > 1) return corrupt(where + "unknown index coding " + std::to_string(p[1]));
    r.index = static_cast<IndexCoding>(p[1]);
    r.values.block_log2 = p[2];
    r.values.levels = p[3];
    if (r.values.block_log2 > kMaxBlockLog2) return corrupt(where + "block size exponent above 20");
    if ((r.values.coding == ValueCoding::kQsgd) != (p[3] != 0) || p[3] > kMaxQsgdLevels) {
      return corrupt(where + "QSGD level count " + std::to_string(p[3]) + " does not fit the value coding");
    }
    if (p[4] > 1 || p[5] || p[6] || p[7]) return corrupt(where + "padding flag or reserved bytes are invalid");
    r.n = load_le<uint64_t>(p + 8);
    r.k = load_le<uint64_t>(p + 16);
    r.index_length = load_le<uint32_t>(p + 24);
    r.value_length = load_le<uint32_t>(p + 28);
    if (r.n >= (1ull << 31)) return corrupt(where + "n = " + std::to_string(r.n) + " is not below 2^31");
    if (r.k > r.n || (r.n > 0 && r.k == 0)) {
      return corrupt(where + "k = " + std::to_string(r.k) + " does not fit n = " + std::to_string(r.n));
    }
    elements += r.n;
    if (elements > options.max_elements) {
      return {Status::kLimitExceeded, "sparse update holds more than max_elements = " +
                                          std::to_string(options.max_elements) + " dense values"};
    }
    const uint64_t body = static_cast<uint64_t>(r.index_length) + r.value_length;
    if ((body & 1u) != p[4] || kRecordHeaderSize + body + p[4] != rl) {
      return corrupt(where + "record of " + std::to_string(rl) + " bytes does not hold its " +
                     std::to_string(r.index_length) + " index and " + std::to_string(r.value_length) +
                     " value bytes plus padding");
    }
    if (r.value_length != value_bytes(r.values, r.k)) {
      return corrupt(where + std::to_string(r.value_length) + " value bytes, " + value_coding_name(r.values.coding) +
                     " values of " + std::to_string(r.k) + " elements take " +
                     std::to_string(value_bytes(r.values, r.k)));
    }
    if (r.index == IndexCoding::kBitmap && r.index_length != (r.n + 7) / 8) {
      return corrupt(where + "bitmap of " + std::to_string(r.index_length) + " bytes for " + std::to_string(r.n) + " elements");
    }
    if (r.index == IndexCoding::kGaps && r.k == 0) return corrupt(where + "gap coding of no index");
    r.index_data = p + kRecordHeaderSize;
    r.value_data = r.index_data + r.index_length;
    if (p[4] && r.value_data[r.value_length] != 0) return corrupt(where + "padding byte is not zero");
    p += rl;
  }
  *header = std::move(h);
  *records = std::move(out);
  return {};
}

Error decode_record(const SparseRecord& r, uint32_t* idx_out, float* val_out) {
  const size_t k = static_cast<size_t>(r.k);
  Error e = r.index == IndexCoding::kBitmap ? decode_index_bitmap(r.index_data, r.index_length, k, r.n, idx_out)
                                            : decode_index_gaps(r.index_data, r.index_length, k, r.n, idx_out);
  if (e) return e;
  return decode_values(r.value_data, r.value_length, k, r.values, val_out);
}

Error accumulate_record(const SparseRecord& r, float weight, float* dense, size_t dense_len) {
  if (dense_len != r.n) {
    return invalid("dense buffer holds " + std::to_string(dense_len) + " values, the tensor has " + std::to_string(r.n));
  }
  std::vector<uint32_t> idx(static_cast<size_t>(r.k));
  std::vector<float> val(static_cast<size_t>(r.k));
  if (Error e = decode_record(r, idx.data(), val.data())) return e;
  for (size_t j = 0; j < idx.size(); ++j) dense[idx[j]] += weight * val[j];
  return {};
}

}  // namespace taskcodec
