#include "cache/frequency_sketch.h"

#include <gtest/gtest.h>

#include <random>

namespace bulwark::cache {
namespace {

uint64_t H(uint64_t k) { return k * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull; }

TEST(FrequencySketch, CountsAndSaturates) {
  FrequencySketch s(1024);
  EXPECT_EQ(s.Estimate(H(1)), 0);
  for (int i = 1; i <= 20; ++i) {
    s.Increment(H(1));
    EXPECT_EQ(s.Estimate(H(1)), std::min(i, 15));
  }
}

TEST(FrequencySketch, OtherKeysStayLow) {
  FrequencySketch s(4096);
  for (int i = 0; i < 15; ++i) s.Increment(H(7));
  for (uint64_t k = 100; k < 2100; ++k) s.Increment(H(k));
  EXPECT_EQ(s.Estimate(H(7)), 15);
  int over = 0;
  for (uint64_t k = 100; k < 2100; ++k) over += s.Estimate(H(k)) > 2;
  EXPECT_LT(over, 20);  // a count-min sketch only over-estimates, and rarely by much
}

TEST(FrequencySketch, AgesByHalving) {
  FrequencySketch s(64);  // sample size 640
  for (int i = 0; i < 12; ++i) s.Increment(H(1));
  std::mt19937_64 rng(1);
  int before = s.Estimate(H(1));
  while (s.resets() == 0) {
    before = s.Estimate(H(1));
    s.Increment(rng());
  }
  // Every counter was halved (the increment that triggered it may have added one first).
  int after = s.Estimate(H(1));
  EXPECT_GE(before, 12);
  EXPECT_TRUE(after == before / 2 || after == (before + 1) / 2) << before << " -> " << after;
}

}  // namespace
}  // namespace bulwark::cache
