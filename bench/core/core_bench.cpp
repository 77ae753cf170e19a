// The C++ coder alone, without Python: encode and decode throughput of one frame, timed by
// the calling thread's CPU time and by wall time (best of several runs), with the output
// buffers allocated once. Run it twice, with and without TASKCODEC_NO_SIMD=1, to compare the
// scalar and SIMD kernels (they produce the same bytes: the printed CRC shows it).
//
//   core_bench [laplace64|alphabet256] [precision] [lanes] [threads]
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "taskcodec/checksum.hpp"
#include "taskcodec/frame.hpp"

using namespace taskcodec;

namespace {

double cpu_now() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

double wall_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string which = argc > 1 ? argv[1] : "laplace64";
  const uint32_t precision = argc > 2 ? static_cast<uint32_t>(std::atoi(argv[2])) : 14;
  const uint32_t lanes = argc > 3 ? static_cast<uint32_t>(std::atoi(argv[3])) : 32;
  const int threads = argc > 4 ? std::atoi(argv[4]) : 1;
  const bool wide = which == "alphabet256";
  if (!wide && which != "laplace64") {
    std::fprintf(stderr, "usage: core_bench [laplace64|alphabet256] [precision] [lanes] [threads]\n");
    return 2;
  }
  // [N, 64, 16, 16], about 10 M symbols; per-channel Laplace (scale 2-5, +-32) or a rounded
  // Gaussian around 128 (scale 20-40, 0..255), as in bench/coders.py.
  const size_t C = 64, HW = 256, N = 610;
  const size_t K = wide ? 256 : 65;
  const int32_t offset = wide ? 0 : -32;
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  std::vector<double> scale(C), pmf(C * K);
  for (size_t c = 0; c < C; ++c) {
    scale[c] = wide ? 20.0 + 20.0 * uni(rng) : 2.0 + 3.0 * uni(rng);
    for (size_t k = 0; k < K; ++k) {
      const double v = static_cast<double>(k) + offset;
      pmf[c * K + k] = wide ? std::exp(-0.5 * (v - 128.0) * (v - 128.0) / (scale[c] * scale[c]))
                            : std::exp(-std::abs(v) / scale[c]);
    }
  }
  std::vector<int32_t> offsets(C, offset);
  std::shared_ptr<const CdfTable> table;
  if (Error e = CdfTable::from_pmf(pmf.data(), C, K, offsets.data(), nullptr, nullptr, precision,
                                   &table, true)) {
    std::fprintf(stderr, "table: %s\n", e.message.c_str());
    return 1;
  }
  std::vector<int32_t> symbols(N * C * HW);
  for (size_t n = 0; n < N; ++n) {
    for (size_t c = 0; c < C; ++c) {
      std::normal_distribution<double> gauss(128.0, scale[c]);
      std::exponential_distribution<double> expo(1.0 / scale[c]);
      for (size_t i = 0; i < HW; ++i) {
        int32_t q;
        if (wide) {
          q = std::clamp(static_cast<int32_t>(std::lround(gauss(rng))), 0, 255);
        } else {
          const double v = expo(rng) * (uni(rng) < 0.5 ? -1.0 : 1.0);
          q = std::clamp(static_cast<int32_t>(std::lround(v)), -32, 32);
        }
        symbols[(n * C + c) * HW + i] = q;
      }
    }
  }
  uint64_t shape[4] = {N, C, 16, 16};
  const SymbolLayout layout{shape, 4, 1, nullptr};
  EncodeOptions eopt;
  eopt.lanes = lanes;
  eopt.threads = threads;
  DecodeOptions dopt;
  dopt.threads = threads;
  std::vector<uint8_t> frame;
  std::vector<int32_t> out(symbols.size());
  double enc_cpu = 1e9, dec_cpu = 1e9, enc_wall = 1e9, dec_wall = 1e9;
  for (int r = 0; r < 9; ++r) {
    FrameEncoder enc;
    const double c0 = cpu_now(), w0 = wall_now();
    Error err = enc.encode(*table, symbols.data(), DType::kInt32, layout, nullptr, 0, eopt);
    if (!err) {
      frame.resize(enc.size());
      err = enc.write(frame.data(), frame.size());
    }
    const double c1 = cpu_now(), w1 = wall_now();
    FrameHeader h;
    if (!err) err = parse_frame(frame.data(), frame.size(), dopt, &h);
    if (!err) err = decode_frame(h, *table, nullptr, 0, out.data(), out.size(), dopt);
    const double c2 = cpu_now(), w2 = wall_now();
    if (err || out != symbols) {
      std::fprintf(stderr, "round trip failed: %s\n", err.message.c_str());
      return 1;
    }
    enc_cpu = std::min(enc_cpu, c1 - c0);
    dec_cpu = std::min(dec_cpu, c2 - c1);
    enc_wall = std::min(enc_wall, w1 - w0);
    dec_wall = std::min(dec_wall, w2 - w1);
  }
  const double n = static_cast<double>(symbols.size()) / 1e6;
  std::printf("%s precision %u lanes %u threads %d simd %s: %zu bytes (crc %08x)\n", which.c_str(),
              precision, lanes, threads, std::getenv("TASKCODEC_NO_SIMD") ? "off" : "auto",
              frame.size(), crc32c(frame.data(), frame.size() - 4));
  std::printf("  encode %.0f Msym/s (thread CPU time)  %.0f Msym/s (wall)\n", n / enc_cpu, n / enc_wall);
  std::printf("  decode %.0f Msym/s (thread CPU time)  %.0f Msym/s (wall)\n", n / dec_cpu, n / dec_wall);
  return 0;
}
