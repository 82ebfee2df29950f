// limit_req arithmetic, checked against sequences worked out from nginx's algorithm by hand (the
// integration test compares against a running nginx as well).
#include "gateway/rate_limit.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace bulwark::gateway {
namespace {

constexpr int64_t kNoDelay = INT64_MAX / 2;

struct Rule {
  LimitZone* zone;
  int64_t burst;  // requests
  int64_t delay;  // requests, or kNoDelay
  std::string key = "k";
};

LimitOutcome Limit(const std::vector<Rule>& rules, int64_t now, bool dry_run = false) {
  std::vector<LimitRequest> reqs;
  for (const auto& r : rules) {
    LimitRequest q;
    q.zone = r.zone;
    q.burst = r.burst * 1000;
    q.delay = r.delay == kNoDelay ? kNoDelay : r.delay * 1000;
    q.key = r.key;
    reqs.push_back(q);
  }
  return LimitDecision::Decide(reqs.data(), static_cast<int>(reqs.size()), now, dry_run);
}

TEST(RateLimitTest, OneRequestPerSecondWithoutBurst) {
  LimitZone z("z", "client_ip", 1000, 1 << 20);
  EXPECT_EQ(Limit({{&z, 0, 0}}, 10000).result, LimitResult::kPassed);  // a new key starts at 0
  LimitOutcome o = Limit({{&z, 0, 0}}, 10100);
  EXPECT_EQ(o.result, LimitResult::kRejected);
  EXPECT_EQ(o.excess, 900);  // 0 - 1000*100/1000 + 1000
  EXPECT_EQ(o.retry_after_s, 1);
  EXPECT_EQ(Limit({{&z, 0, 0}}, 10999).result, LimitResult::kRejected);
  EXPECT_EQ(Limit({{&z, 0, 0}}, 11000).result, LimitResult::kPassed);
}

TEST(RateLimitTest, BurstWithNodelayAdmitsBurstPlusOne) {
  // The IAM nginx.conf's `limit_req zone=api_limit burst=20 nodelay` at 10r/s.
  LimitZone z("api_limit", "client_ip", 10000, 1 << 20);
  int passed = 0, rejected = 0;
  for (int i = 0; i < 25; ++i) {
    LimitOutcome o = Limit({{&z, 20, kNoDelay}}, 5000);
    EXPECT_EQ(o.delay_ms, 0);
    if (o.result == LimitResult::kPassed) ++passed;
    if (o.result == LimitResult::kRejected) ++rejected;
  }
  EXPECT_EQ(passed, 21);
  EXPECT_EQ(rejected, 4);
  // 100 ms later one request's worth has drained.
  EXPECT_EQ(Limit({{&z, 20, kNoDelay}}, 5100).result, LimitResult::kPassed);
  EXPECT_EQ(Limit({{&z, 20, kNoDelay}}, 5100).result, LimitResult::kRejected);
  auto c = z.Counts();
  EXPECT_EQ(c[static_cast<int>(LimitResult::kPassed)], 22u);
  EXPECT_EQ(c[static_cast<int>(LimitResult::kRejected)], 5u);
}

TEST(RateLimitTest, BurstWithoutNodelayDelaysEachExcessRequest) {
  LimitZone z("z", "client_ip", 10000, 1 << 20);
  EXPECT_EQ(Limit({{&z, 5, 0}}, 1000).delay_ms, 0);
  for (int i = 1; i <= 5; ++i) {
    LimitOutcome o = Limit({{&z, 5, 0}}, 1000);
    EXPECT_EQ(o.result, LimitResult::kDelayed);
    EXPECT_EQ(o.delay_ms, i * 100);  // excess i*1000 at 10r/s
  }
  LimitOutcome o = Limit({{&z, 5, 0}}, 1000);
  EXPECT_EQ(o.result, LimitResult::kRejected);
  EXPECT_EQ(o.excess, 6000);
  EXPECT_EQ(o.retry_after_s, 1);  // 100 ms, rounded up
}

TEST(RateLimitTest, DelayParameterLetsThatManyThroughAtOnce) {
  // limit_req burst=5 delay=2: excess up to 2 requests goes at once, the rest waits.
  LimitZone z("z", "client_ip", 10000, 1 << 20);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Limit({{&z, 5, 2}}, 0).result, LimitResult::kPassed);
  LimitOutcome o = Limit({{&z, 5, 2}}, 0);
  EXPECT_EQ(o.result, LimitResult::kDelayed);
  EXPECT_EQ(o.delay_ms, 100);
  EXPECT_EQ(Limit({{&z, 5, 2}}, 0).delay_ms, 200);
  EXPECT_EQ(Limit({{&z, 5, 2}}, 0).delay_ms, 300);
  EXPECT_EQ(Limit({{&z, 5, 2}}, 0).result, LimitResult::kRejected);
}

TEST(RateLimitTest, PerMinuteRatesUseNginxIntegerArithmetic) {
  // 30r/m is 500 thousandths per second: a request every 2 s.
  LimitZone z("z", "client_ip", 500, 1 << 20);
  EXPECT_EQ(Limit({{&z, 0, 0}}, 0).result, LimitResult::kPassed);
  EXPECT_EQ(Limit({{&z, 0, 0}}, 1999).result, LimitResult::kRejected);  // 1000 - 999 > 0
  EXPECT_EQ(Limit({{&z, 0, 0}}, 2000).result, LimitResult::kPassed);
  // 1r/m: nginx keeps 1000/60 = 16 thousandths per second, so 62.5 s between requests.
  LimitZone slow("s", "client_ip", 16, 1 << 20);
  EXPECT_EQ(Limit({{&slow, 0, 0}}, 0).result, LimitResult::kPassed);
  EXPECT_EQ(Limit({{&slow, 0, 0}}, 62000).result, LimitResult::kRejected);
  LimitOutcome o = Limit({{&slow, 0, 0}}, 10000);
  EXPECT_EQ(o.retry_after_s, 53);  // (1000 - 160) / 16 = 52.5 s
  EXPECT_EQ(Limit({{&slow, 0, 0}}, 62500).result, LimitResult::kPassed);
}

TEST(RateLimitTest, KeysAreIndependent) {
  LimitZone z("z", "client_ip", 1000, 1 << 20);
  EXPECT_EQ(Limit({{&z, 0, 0, "a"}}, 0).result, LimitResult::kPassed);
  EXPECT_EQ(Limit({{&z, 0, 0, "a"}}, 0).result, LimitResult::kRejected);
  EXPECT_EQ(Limit({{&z, 0, 0, "b"}}, 0).result, LimitResult::kPassed);
  EXPECT_EQ(z.Keys(), 2u);
}

TEST(RateLimitTest, EmptyKeyIsNotLimited) {
  LimitZone z("z", "header:x-api-key", 1000, 1 << 20);
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(Limit({{&z, 0, 0, ""}}, 0).applied);
  EXPECT_EQ(z.Keys(), 0u);
}

TEST(RateLimitTest, RejectionByALaterZoneChargesNoEarlierZone) {
  LimitZone a("a", "client_ip", 1000, 1 << 20);
  LimitZone b("b", "route", 1000, 1 << 20);
  EXPECT_EQ(Limit({{&a, 10, 0}, {&b, 0, 0}}, 0).result, LimitResult::kPassed);
  LimitOutcome o = Limit({{&a, 10, 0}, {&b, 0, 0}}, 0);
  EXPECT_EQ(o.result, LimitResult::kRejected);
  EXPECT_EQ(o.rule, 1);
  // Zone a saw two requests but was charged for one: its next request has excess 1000, not 2000.
  o = Limit({{&a, 10, 0}}, 0);
  EXPECT_EQ(o.result, LimitResult::kDelayed);
  EXPECT_EQ(o.excess, 1000);
  EXPECT_EQ(o.delay_ms, 1000);
}

TEST(RateLimitTest, RejectionByAnEarlierZoneStopsBeforeLaterZones) {
  LimitZone a("a", "client_ip", 1000, 1 << 20);
  LimitZone b("b", "route", 1000, 1 << 20);
  EXPECT_EQ(Limit({{&a, 0, 0}, {&b, 10, 0}}, 0).result, LimitResult::kPassed);
  LimitOutcome o = Limit({{&a, 0, 0}, {&b, 10, 0}}, 0);
  EXPECT_EQ(o.result, LimitResult::kRejected);
  EXPECT_EQ(o.rule, 0);
  o = Limit({{&b, 10, 0}}, 0);
  EXPECT_EQ(o.excess, 1000);  // b was charged only for the first request
}

TEST(RateLimitTest, TheLongestDelayWins) {
  LimitZone fast("fast", "client_ip", 10000, 1 << 20);  // 100 ms per excess request
  LimitZone slow("slow", "route", 2000, 1 << 20);       // 500 ms per excess request
  Limit({{&fast, 5, 0}, {&slow, 5, 0}}, 0);
  LimitOutcome o = Limit({{&fast, 5, 0}, {&slow, 5, 0}}, 0);
  EXPECT_EQ(o.result, LimitResult::kDelayed);
  EXPECT_EQ(o.delay_ms, 500);
  EXPECT_EQ(o.rule, 1);
  o = Limit({{&slow, 5, 0}, {&fast, 5, 0}}, 0);  // order does not matter for the delay
  EXPECT_EQ(o.delay_ms, 1000);
  EXPECT_EQ(o.rule, 0);
}

TEST(RateLimitTest, DryRunDecidesButHoldsNothing) {
  LimitZone z("z", "client_ip", 1000, 1 << 20);
  EXPECT_EQ(Limit({{&z, 1, 0}}, 0, true).result, LimitResult::kPassed);
  LimitOutcome o = Limit({{&z, 1, 0}}, 0, true);
  EXPECT_EQ(o.result, LimitResult::kDelayedDryRun);
  EXPECT_EQ(o.delay_ms, 0);
  o = Limit({{&z, 1, 0}}, 0, true);
  EXPECT_EQ(o.result, LimitResult::kRejectedDryRun);
  EXPECT_EQ(z.Counts()[static_cast<int>(LimitResult::kRejectedDryRun)], 1u);
}

TEST(RateLimitTest, ClockSteppingBackIsClamped) {
  LimitZone z("z", "client_ip", 1000, 1 << 20);
  Limit({{&z, 5, kNoDelay}}, 100000);
  // Slightly back: no time has passed (excess grows by one request).
  EXPECT_EQ(Limit({{&z, 5, kNoDelay}}, 99000).excess, 1000);
  // Far back (over a minute): counts as one millisecond.
  EXPECT_EQ(Limit({{&z, 5, kNoDelay}}, 1000).excess, 1999);
}

TEST(RateLimitTest, FullZoneDropsTheLeastRecentlyUsedKey) {
  // 32k bytes -> 512 keys, 32 per shard.
  LimitZone z("z", "client_ip", 1000, 32 * 1024);
  for (int i = 0; i < 5000; ++i) Limit({{&z, 0, 0, "key" + std::to_string(i)}}, 0);
  EXPECT_LE(z.Keys(), z.capacity());
  EXPECT_GT(z.Evictions(), 0u);
  // The newest keys are still there: each is still limited.
  EXPECT_EQ(Limit({{&z, 0, 0, "key4999"}}, 0).result, LimitResult::kRejected);
}

TEST(RateLimitTest, IdleDrainedKeysAreReclaimed) {
  LimitZone z("z", "client_ip", 1000, 1 << 20);
  for (int i = 0; i < 200; ++i) Limit({{&z, 0, 0, "old" + std::to_string(i)}}, 0);
  size_t before = z.Keys();
  // A minute later new keys reclaim up to two idle drained keys each (per shard touched).
  for (int i = 0; i < 200; ++i) Limit({{&z, 0, 0, "new" + std::to_string(i)}}, 61000);
  EXPECT_LT(z.Keys(), before + 200);
  EXPECT_EQ(z.Evictions(), 0u);
}

TEST(RateLimitTest, WorkersShareOneZoneExactly) {
  // 4 threads hammering one key at a fixed instant: exactly burst+1 pass, as in one thread.
  LimitZone z("z", "client_ip", 1000, 1 << 20);
  std::atomic<int> passed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        if (Limit({{&z, 50, kNoDelay}}, 7000).result == LimitResult::kPassed) ++passed;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(passed.load(), 51);
}

TEST(ZoneRegistryTest, KeepsStateAcrossReloadWhenKeyAndSizeAreUnchanged) {
  ZoneRegistry reg;
  LimitZoneConfig cfg;
  cfg.name = "z";
  cfg.key.text = "client_ip";
  cfg.rate_milli = 1000;
  auto a = reg.Get(cfg);
  cfg.rate_milli = 5000;
  auto b = reg.Get(cfg);
  EXPECT_EQ(a, b);
  EXPECT_EQ(b->rate_milli(), 5000);
  cfg.key.text = "route";
  auto c = reg.Get(cfg);
  EXPECT_NE(a, c);
}

}  // namespace
}  // namespace bulwark::gateway
