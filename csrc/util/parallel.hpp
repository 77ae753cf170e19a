// A minimal parallel-for over independent tasks (chunks), with the first error kept.
#pragma once

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "taskcodec/status.hpp"

namespace taskcodec::detail {

inline int resolve_threads(int requested, size_t tasks, bool large) {
  if (tasks <= 1) return 1;
  int t = requested;
  if (t <= 0) {
    if (!large) return 1;
    t = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  return static_cast<int>(std::min<size_t>(static_cast<size_t>(t), tasks));
}

// Runs fn(i) for i in [0, tasks) on `threads` threads; returns the error of the lowest
// failing task, so the message does not depend on scheduling.
template <class Fn>
Error parallel_for(size_t tasks, int threads, Fn fn) {
  std::vector<Error> errors(tasks);
  if (threads <= 1) {
    for (size_t i = 0; i < tasks; ++i) {
      errors[i] = fn(i);
      if (errors[i]) return errors[i];
    }
    return {};
  }
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  auto worker = [&] {
    for (;;) {
      if (failed.load()) return;  // a task once taken always runs: errors stay deterministic
      const size_t i = next.fetch_add(1);
      if (i >= tasks) return;
      errors[i] = fn(i);
      if (errors[i]) failed.store(true);
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(threads - 1));
  for (int k = 1; k < threads; ++k) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
  for (auto& e : errors) {
    if (e) return e;
  }
  return {};
}

}  // namespace taskcodec::detail
