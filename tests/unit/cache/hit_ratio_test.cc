// The simulator test: synthetic traces replayed through every policy, checking W-TinyLFU beats
// LRU where the literature says it should (skewed popularity, scans, loops) and is not worse
// where it should not matter.
#include <gtest/gtest.h>

#include <cstdio>

#include "cache/trace.h"

namespace bulwark::cache {
namespace {

struct Ratios {
  double wtinylfu, lru, lfu, ttl;
};

Ratios RunPolicies(const std::vector<uint64_t>& trace, int64_t size) {
  Ratios r;
  r.wtinylfu = Simulate(EvictionPolicy::kWTinyLfu, size, 1, trace).hit_ratio();
  r.lru = Simulate(EvictionPolicy::kLru, size, 1, trace).hit_ratio();
  r.lfu = Simulate(EvictionPolicy::kLfu, size, 1, trace).hit_ratio();
  r.ttl = Simulate(EvictionPolicy::kTtl, size, 1, trace).hit_ratio();
  std::printf("  w-tinylfu %.4f  lru %.4f  lfu %.4f  ttl(fifo) %.4f\n", r.wtinylfu, r.lru, r.lfu,
              r.ttl);
  return r;
}

class Zipf : public ::testing::TestWithParam<double> {};

TEST_P(Zipf, WTinyLfuBeatsLruOnSkewedPopularity) {
  double s = GetParam();
  auto trace = ZipfTrace(20000, s, 300000, 42);
  Ratios r = RunPolicies(trace, 500);  // 2.5% of the items
  EXPECT_GT(r.wtinylfu, r.lru + 0.02);
  EXPECT_GT(r.wtinylfu, r.ttl);
  EXPECT_GT(r.lru, r.ttl - 0.01);  // recency helps a little over FIFO
}

INSTANTIATE_TEST_SUITE_P(Exponents, Zipf, ::testing::Values(0.7, 0.9, 1.1), [](const auto& info) {
  return "s" + std::to_string(static_cast<int>(info.param * 10));
});

TEST(Simulator, ScansDoNotFlushWTinyLfu) {
  auto trace = ZipfWithScansTrace(20000, 0.9, 300000, 5000, 2000, 43);
  Ratios r = RunPolicies(trace, 1000);
  EXPECT_GT(r.wtinylfu, r.lru + 0.05);
}

TEST(Simulator, LoopsLargerThanTheCacheDefeatLruButNotWTinyLfu) {
  auto trace = LoopTrace(1200, 300000);
  Ratios r = RunPolicies(trace, 1000);
  EXPECT_LT(r.lru, 0.01);  // every access misses: the loop is longer than the cache
  EXPECT_GT(r.wtinylfu, 0.5);
  // Classic LFU churns its newcomers (all at frequency 1) just as LRU does: no help here.
}

TEST(Simulator, ShardingCostsLittle) {
  auto trace = ZipfTrace(20000, 0.9, 300000, 44);
  double one = Simulate(EvictionPolicy::kWTinyLfu, 2048, 1, trace).hit_ratio();
  double sixteen = Simulate(EvictionPolicy::kWTinyLfu, 2048, 16, trace).hit_ratio();
  std::printf("  1 shard %.4f  16 shards %.4f\n", one, sixteen);
  EXPECT_GT(sixteen, one - 0.02);
}

}  // namespace
}  // namespace bulwark::cache
