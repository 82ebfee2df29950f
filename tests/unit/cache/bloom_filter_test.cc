#include "cache/bloom_filter.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace bulwark::cache {
namespace {

TEST(BloomFilter, SizedByTheStandardFormulas) {
  BloomFilter f(1000000, 0.01);  // the AlkaidSYS cache_penetration settings
  // m = -n ln p / ln^2 2 = 9,585,059 bits (~1.14 MiB), k = 7.
  EXPECT_NEAR(static_cast<double>(f.bits()), 9585059.0, 64.0);
  EXPECT_EQ(f.hashes(), 7);
}

TEST(BloomFilter, NoFalseNegativesAndTheConfiguredFalsePositiveRate) {
  BloomFilter f(100000, 0.01);
  for (int i = 0; i < 100000; ++i) f.Add("user:" + std::to_string(i));
  for (int i = 0; i < 100000; ++i) ASSERT_TRUE(f.MayContain("user:" + std::to_string(i)));
  int fp = 0;
  const int probes = 200000;
  for (int i = 0; i < probes; ++i) fp += f.MayContain("absent:" + std::to_string(i));
  double rate = static_cast<double>(fp) / probes;
  EXPECT_GT(rate, 0.005);
  EXPECT_LT(rate, 0.015);
  EXPECT_NEAR(f.EstimatedFalsePositiveRate(), 0.01, 0.003);
  EXPECT_FALSE(f.saturated());
  f.Clear();
  EXPECT_FALSE(f.MayContain("user:1"));
  EXPECT_EQ(f.added(), 0u);
}

TEST(BloomFilter, OverfillingIsVisible) {
  BloomFilter f(1000, 0.01);
  for (int i = 0; i < 5000; ++i) f.Add(std::to_string(i));
  EXPECT_TRUE(f.saturated());
  EXPECT_GT(f.EstimatedFalsePositiveRate(), 0.2);
}

TEST(BloomFilter, ConcurrentAddsAreNotLost) {
  BloomFilter f(200000, 0.01);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&f, t] {
      for (int i = t; i < 100000; i += 4) f.Add("k" + std::to_string(i));
    });
  }
  for (auto& th : threads) th.join();
  for (int i = 0; i < 100000; ++i) ASSERT_TRUE(f.MayContain("k" + std::to_string(i)));
}

}  // namespace
}  // namespace bulwark::cache
