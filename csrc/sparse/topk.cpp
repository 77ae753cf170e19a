// Top-k selection by magnitude and the error-feedback accumulation (sparse.hpp).
//
// Selection in O(n): a threshold from a fixed, evenly spaced sample of |x| makes one pass
// collect a few more candidates than k; an exact nth_element over the candidates' keys
// (|x| bits, then the lower index) then picks exactly k. The sample only decides how many
// candidates are gathered, never which k elements win, so the result is exact whatever the
// data. If the sample's threshold ever leaves fewer than k candidates, every element
// becomes a candidate.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "../util/parallel.hpp"
#include "taskcodec/sparse.hpp"

namespace taskcodec {
namespace {

constexpr uint32_t kInfBits = 0x7F800000u;  // |x| bits at or above this: Inf or NaN
constexpr size_t kSample = 1u << 14;
constexpr size_t kBlock = 4096;
constexpr size_t kParallelMin = 1u << 20;  // elements; below this one thread

inline uint32_t abs_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u & 0x7FFFFFFFu;
}

Error invalid(std::string m) { return {Status::kInvalidArgument, std::move(m)}; }

Error not_finite(const char* what, size_t i, float v) {
  return invalid(std::string(what) + "[" + std::to_string(i) + "] = " + std::to_string(v) +
                 " is not finite; a NaN or an infinity cannot be selected");
}

int range_count(size_t n, int threads) {
  return detail::resolve_threads(threads, (n + kParallelMin - 1) / kParallelMin, n >= kParallelMin);
}

struct Candidates {
  std::vector<uint32_t> idx;
  size_t first_bad = SIZE_MAX;
};

// Indices i in [begin, end) with abs_bits(x[i]) >= t, ascending; the first non-finite i.
void collect(const float* x, size_t begin, size_t end, uint32_t t, Candidates* c) {
  c->idx.clear();
  size_t count = 0;
  for (size_t b = begin; b < end; b += kBlock) {
    const size_t e = std::min(end, b + kBlock);
    if (c->idx.size() < count + kBlock) c->idx.resize(count + kBlock + (count >> 1));
    uint32_t* out = c->idx.data();
    uint32_t worst = 0;
    for (size_t i = b; i < e; ++i) {
      const uint32_t key = abs_bits(x[i]);
      worst = std::max(worst, key);
      out[count] = static_cast<uint32_t>(i);  // branchless: written always, kept when key >= t
      count += key >= t;
    }
    if (worst >= kInfBits && c->first_bad == SIZE_MAX) {
      for (size_t i = b; i < e; ++i) {
        if (abs_bits(x[i]) >= kInfBits) {
          c->first_bad = i;
          break;
        }
      }
    }
  }
  c->idx.resize(count);
}

}  // namespace

uint64_t topk_count(uint64_t n, double ratio) noexcept {
  if (n == 0) return 0;
  if (!(ratio > 0.0)) return 1;
  const double want = std::ceil(ratio * static_cast<double>(n));
  if (!(want < static_cast<double>(n))) return n;
  return std::max<uint64_t>(1, static_cast<uint64_t>(want));
}

Error topk_select(const float* x, size_t n, size_t k, uint32_t* idx_out, int threads) {
  if (n >= (1ull << 32)) return invalid("top-k supports tensors of fewer than 2^32 elements");
  if (k > n) return invalid("k = " + std::to_string(k) + " exceeds the " + std::to_string(n) + " elements");
  if (n && (!x || (k && !idx_out))) return invalid("null buffer");

  // Threshold from an evenly spaced sample: the j-th largest sample key, with j a little
  // above the sample's expected share of the top k.
  uint32_t t = 0;
  if (k < n && n > 4 * kSample) {
    std::vector<uint32_t> s(kSample);
    for (size_t j = 0; j < kSample; ++j) s[j] = abs_bits(x[(j * n) / kSample]);
    const double expect = static_cast<double>(kSample) * static_cast<double>(k) / static_cast<double>(n);
    const double want = expect * 1.25 + 4.0 * std::sqrt(expect) + 16.0;
    if (want < static_cast<double>(kSample)) {
      const size_t j = static_cast<size_t>(want);
      std::nth_element(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(j), s.end(), std::greater<uint32_t>());
      t = std::min(s[j], kInfBits);
    }
  }

  const int parts = range_count(n, threads);
  std::vector<Candidates> cand(static_cast<size_t>(std::max(parts, 1)));
  auto gather = [&](uint32_t thr) {
    const size_t per = (n + cand.size() - 1) / cand.size();
    (void)detail::parallel_for(cand.size(), parts, [&](size_t p) -> Error {
      const size_t b = std::min(n, p * per), e = std::min(n, b + per);
      cand[p].first_bad = SIZE_MAX;
      collect(x, b, e, thr, &cand[p]);
      return {};
    });
    size_t total = 0;
    for (auto& c : cand) {
      if (c.first_bad != SIZE_MAX) return SIZE_MAX;
      total += c.idx.size();
    }
    return total;
  };
  size_t total = gather(t);
  if (total == SIZE_MAX) {
    for (auto& c : cand) {
      if (c.first_bad != SIZE_MAX) return not_finite("x", c.first_bad, x[c.first_bad]);
    }
  }
  if (total < k) total = gather(0);  // the sample's threshold was too high (rare)
  if (k == 0) return {};

  // Composite keys: |x| bits high, the complement of the index low, so the k largest keys
  // are the k largest |x| with ties to the lower index.
  std::vector<uint64_t> keys;
  keys.reserve(total);
  for (auto& c : cand) {
    for (uint32_t i : c.idx) keys.push_back((static_cast<uint64_t>(abs_bits(x[i])) << 32) | (0xFFFFFFFFu - i));
  }
  uint64_t kth = 0;
  if (k < total) {
    std::vector<uint64_t> tmp(keys);
    std::nth_element(tmp.begin(), tmp.begin() + static_cast<std::ptrdiff_t>(k - 1), tmp.end(),
                     std::greater<uint64_t>());
    kth = tmp[k - 1];
  }
  size_t w = 0;
  for (uint64_t key : keys) {  // keys are in ascending index order
    if (key >= kth) idx_out[w++] = 0xFFFFFFFFu - static_cast<uint32_t>(key);
  }
  if (w != k) return {Status::kInternal, "top-k kept " + std::to_string(w) + " of " + std::to_string(k)};
  return {};
}

Error ef_accumulate(const float* update, float* acc, size_t n, int threads) {
  if (n && (!update || !acc)) return invalid("null buffer");
  const int parts = range_count(n, threads);
  const size_t nparts = static_cast<size_t>(std::max(parts, 1));
  const size_t per = (n + nparts - 1) / nparts;
  // The update is checked before acc is touched, so a bad update leaves the residual as it was.
  Error e = detail::parallel_for(nparts, parts, [&](size_t p) -> Error {
    const size_t b = std::min(n, p * per), end = std::min(n, b + per);
    uint32_t worst = 0;
    for (size_t i = b; i < end; ++i) worst = std::max(worst, abs_bits(update[i]));
    if (worst >= kInfBits) {
      for (size_t i = b; i < end; ++i) {
        if (abs_bits(update[i]) >= kInfBits) return not_finite("update", i, update[i]);
      }
    }
    return {};
  });
  if (e) return e;
  return detail::parallel_for(nparts, parts, [&](size_t p) -> Error {
    const size_t b = std::min(n, p * per), end = std::min(n, b + per);
    uint32_t worst = 0;
    for (size_t i = b; i < end; ++i) {
      const float s = acc[i] + update[i];
      acc[i] = s;
      worst = std::max(worst, abs_bits(s));
    }
    if (worst >= kInfBits) {
      for (size_t i = b; i < end; ++i) {
        if (abs_bits(acc[i]) >= kInfBits) return not_finite("residual + update", i, acc[i]);
      }
    }
    return {};
  });
}

}  // namespace taskcodec
