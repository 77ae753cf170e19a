// Count sketches: linear, deterministic across thread counts, heavy hitters found by the
// query, non-finite input refused with the table untouched, shapes checked.
#include "support.hpp"
#include "taskcodec/sketch.hpp"

namespace tctest {
namespace {

SketchShape shape(uint32_t rows, uint64_t cols, uint64_t seed) {
  SketchShape s;
  s.rows = rows;
  s.cols = cols;
  s.seed = seed;
  return s;
}

TEST(Sketch, LinearAndThreadIndependent) {
  Rng rng(7);
  const size_t n = 300000;  // above the parallel threshold
  std::vector<float> a(n), b(n), ab(n);
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (size_t i = 0; i < n; ++i) {
    a[i] = g(rng.engine());
    b[i] = g(rng.engine());
    ab[i] = a[i] + b[i];
  }
  const SketchShape s = shape(5, 1000, 42);
  std::vector<float> t1(5000, 0.0f), t4(5000, 0.0f), tab(5000, 0.0f);
  ASSERT_FALSE(sketch_accumulate(a.data(), n, s, t1.data(), 1));
  ASSERT_FALSE(sketch_accumulate(a.data(), n, s, t4.data(), 4));
  EXPECT_EQ(t1, t4);  // rows are independent tasks: the same bytes on any thread count
  ASSERT_FALSE(sketch_accumulate(b.data(), n, s, t1.data(), 0));
  ASSERT_FALSE(sketch_accumulate(ab.data(), n, s, tab.data(), 0));
  for (size_t j = 0; j < t1.size(); ++j) EXPECT_NEAR(t1[j], tab[j], 1e-2f);
}

TEST(Sketch, QueryFindsHeavyHitters) {
  const size_t n = 50000;
  std::vector<float> x(n, 0.0f);
  Rng rng(3);
  for (auto& v : x) v = static_cast<float>(rng.range(-10, 10)) * 1e-3f;
  x[17] = 9.0f;
  x[40000] = -7.5f;
  const SketchShape s = shape(5, 400, 9);
  std::vector<float> t(2000, 0.0f), est(n), est1(n);
  ASSERT_FALSE(sketch_accumulate(x.data(), n, s, t.data(), 0));
  ASSERT_FALSE(sketch_query(t.data(), n, s, est.data(), 0));
  ASSERT_FALSE(sketch_query(t.data(), n, s, est1.data(), 1));
  EXPECT_EQ(est, est1);
  EXPECT_NEAR(est[17], 9.0f, 0.3f);
  EXPECT_NEAR(est[40000], -7.5f, 0.3f);
  // Even row counts take the mean of the two middle estimates.
  const SketchShape s4 = shape(4, 400, 9);
  std::vector<float> t4(1600, 0.0f), e4(n);
  ASSERT_FALSE(sketch_accumulate(x.data(), n, s4, t4.data(), 0));
  ASSERT_FALSE(sketch_query(t4.data(), n, s4, e4.data(), 0));
  EXPECT_NEAR(e4[17], 9.0f, 0.3f);
}

TEST(Sketch, RefusesNonFiniteAndBadShapes) {
  std::vector<float> x(100, 1.0f), t(50, 0.0f);
  x[60] = std::numeric_limits<float>::infinity();
  const Error e = sketch_accumulate(x.data(), x.size(), shape(5, 10, 0), t.data(), 0);
  EXPECT_EQ(e.status, Status::kInvalidArgument);
  for (float v : t) EXPECT_EQ(v, 0.0f);  // checked before anything is added
  EXPECT_EQ(check_sketch_shape(shape(0, 10, 0)).status, Status::kInvalidArgument);
  EXPECT_EQ(check_sketch_shape(shape(33, 10, 0)).status, Status::kInvalidArgument);
  EXPECT_EQ(check_sketch_shape(shape(3, 0, 0)).status, Status::kInvalidArgument);
  EXPECT_FALSE(check_sketch_shape(shape(32, 1ull << 31, 0)));
}

}  // namespace
}  // namespace tctest
