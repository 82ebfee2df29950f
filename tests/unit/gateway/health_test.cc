#include "gateway/health.h"

#include <memory>

#include "gateway/config.h"
#include "gtest/gtest.h"

namespace bulwark::gateway {
namespace {

TEST(RiseFall, StartsUpButOneFailureFromDown) {
  RiseFall rf(2, 3);
  EXPECT_TRUE(rf.up());
  EXPECT_EQ(rf.health(), 2);
  EXPECT_TRUE(rf.Record(false));  // HAProxy: health = rise at start, first failure => down
  EXPECT_FALSE(rf.up());
}

TEST(RiseFall, NeedsRiseConsecutiveSuccessesAndFallConsecutiveFailures) {
  RiseFall rf(2, 3);
  rf.Record(false);
  ASSERT_FALSE(rf.up());
  rf.Record(true);
  EXPECT_FALSE(rf.up());
  rf.Record(false);  // a failure while rising resets
  rf.Record(true);
  EXPECT_FALSE(rf.up());
  EXPECT_TRUE(rf.Record(true));
  EXPECT_TRUE(rf.up());
  EXPECT_EQ(rf.health(), rf.max());
  rf.Record(false);
  rf.Record(false);
  EXPECT_TRUE(rf.up());
  rf.Record(true);  // one success refills to the top
  rf.Record(false);
  rf.Record(false);
  EXPECT_TRUE(rf.up());
  EXPECT_TRUE(rf.Record(false));
  EXPECT_FALSE(rf.up());
}

ServerState MakeState() { return ServerState(0, "app", "127.0.0.1:1"); }

TEST(Passive, MaxFailsWithinFailTimeoutLikeNginx) {
  ServerState s = MakeState();
  const int max_fails = 2;
  const int64_t ft = 10000;
  EXPECT_TRUE(s.PassiveAvailable(0, max_fails, ft));
  s.OnFailure(1000);
  EXPECT_TRUE(s.PassiveAvailable(1000, max_fails, ft));
  s.OnFailure(2000);
  EXPECT_FALSE(s.PassiveAvailable(2000, max_fails, ft));
  EXPECT_FALSE(s.PassiveAvailable(12000, max_fails, ft));  // exactly fail_timeout: still out
  EXPECT_TRUE(s.PassiveAvailable(12001, max_fails, ft));   // one probe request is let through
  s.OnSelected(12001, max_fails, ft);
  EXPECT_FALSE(s.PassiveAvailable(12002, max_fails, ft));  // ...and only one
  s.OnSuccess();  // the probe succeeded after the check: fails reset
  EXPECT_EQ(s.fails(), 0);
  EXPECT_TRUE(s.PassiveAvailable(12002, max_fails, ft));
}

TEST(Passive, SuccessInsideWindowDoesNotResetFails) {
  ServerState s = MakeState();
  s.OnFailure(1000);
  s.OnSelected(2000, 3, 10000);  // within fail_timeout: checked not moved
  s.OnSuccess();
  EXPECT_EQ(s.fails(), 1);
  s.OnSelected(11001, 3, 10000);  // after fail_timeout: checked moves
  s.OnSuccess();
  EXPECT_EQ(s.fails(), 0);
}

TEST(Passive, MaxFailsZeroDisables) {
  ServerState s = MakeState();
  for (int i = 0; i < 10; ++i) s.OnFailure(1000);
  EXPECT_TRUE(s.PassiveAvailable(1000, 0, 10000));
}

TEST(Score, ReflectsActiveAndPassiveHealth) {
  ServerState s = MakeState();
  EXPECT_EQ(s.Score(0, 4, 10000), 100);
  s.OnFailure(0);
  EXPECT_EQ(s.Score(0, 4, 10000), 75);
  s.SetActiveCheck(true, 2, 3);
  s.RecordCheck(false, 0, 0);
  EXPECT_EQ(s.Score(0, 4, 10000), 0);
  EXPECT_STREQ(s.StateName(0, 4, 10000), "down");
  s.SetDrained(true);
  EXPECT_STREQ(s.StateName(0, 4, 10000), "drained");
}

std::vector<std::shared_ptr<ServerState>> Pool(int n) {
  std::vector<std::shared_ptr<ServerState>> v;
  for (int i = 0; i < n; ++i)
    v.push_back(std::make_shared<ServerState>(i, "app", "s" + std::to_string(i)));
  return v;
}

TEST(Breaker, OpensAfterConsecutiveFailuresAndDoublesOnReopen) {
  auto pool = Pool(1);
  ServerState& s = *pool[0];
  BreakerConfig b;
  b.enabled = true;
  b.failures = 3;
  b.open_time_ms = 2000;
  b.max_open_time_ms = 5000;
  OutlierConfig off;
  s.RecordOutcome(true, true, false, 0, b, off, pool);
  s.RecordOutcome(true, true, false, 0, b, off, pool);
  s.RecordOutcome(false, false, false, 0, b, off, pool);  // a success resets the count
  s.RecordOutcome(true, true, false, 0, b, off, pool);
  s.RecordOutcome(true, true, false, 0, b, off, pool);
  EXPECT_EQ(s.breaker_state(0), ServerState::BreakerState::kClosed);
  EXPECT_EQ(s.RecordOutcome(true, true, false, 100, b, off, pool), ServerState::kOpened);
  EXPECT_EQ(s.breaker_state(100), ServerState::BreakerState::kOpen);
  EXPECT_FALSE(s.ResilienceAllows(2099, 1));
  // Half-open after 2 s: one probe at a time.
  EXPECT_EQ(s.breaker_state(2100), ServerState::BreakerState::kHalfOpen);
  EXPECT_TRUE(s.ResilienceAllows(2100, 1));
  EXPECT_TRUE(s.ClaimProbe(2100));
  EXPECT_FALSE(s.ResilienceAllows(2100, 1));
  // The probe fails: open again for twice as long (4 s), then capped at 5 s.
  EXPECT_EQ(s.RecordOutcome(true, true, true, 2200, b, off, pool), ServerState::kOpened);
  EXPECT_EQ(s.open_until_ms(), 6200);
  EXPECT_TRUE(s.ClaimProbe(6200));
  s.RecordOutcome(true, true, true, 6200, b, off, pool);
  EXPECT_EQ(s.open_until_ms(), 11200);
  // A good probe closes it and the schedule starts over.
  EXPECT_TRUE(s.ClaimProbe(11200));
  EXPECT_EQ(s.RecordOutcome(false, false, true, 11300, b, off, pool), ServerState::kClosed);
  EXPECT_EQ(s.breaker_state(11300), ServerState::BreakerState::kClosed);
  for (int i = 0; i < 3; ++i) s.RecordOutcome(true, true, false, 20000, b, off, pool);
  EXPECT_EQ(s.open_until_ms(), 22000);
  EXPECT_EQ(s.breaker_opens(), 4u);
}

TEST(Breaker, HalfOpenNeedsSuccessesAndAllowsSeveralProbes) {
  auto pool = Pool(1);
  ServerState& s = *pool[0];
  BreakerConfig b;
  b.enabled = true;
  b.failures = 1;
  b.half_open_requests = 2;
  b.successes = 2;
  OutlierConfig off;
  s.RecordOutcome(true, true, false, 0, b, off, pool);
  EXPECT_TRUE(s.ClaimProbe(2000));
  EXPECT_TRUE(s.ResilienceAllows(2000, 2));
  EXPECT_TRUE(s.ClaimProbe(2000));
  EXPECT_FALSE(s.ResilienceAllows(2000, 2));
  EXPECT_EQ(s.RecordOutcome(false, false, true, 2001, b, off, pool), 0);
  EXPECT_EQ(s.breaker_state(2001), ServerState::BreakerState::kHalfOpen);
  EXPECT_EQ(s.RecordOutcome(false, false, true, 2002, b, off, pool), ServerState::kClosed);
}

TEST(Outlier, ConsecutiveErrorsEjectForBaseTimesCount) {
  auto pool = Pool(10);
  ServerState& s = *pool[0];
  BreakerConfig off;
  OutlierConfig o;
  o.enabled = true;
  o.consecutive_5xx = 3;
  o.base_ejection_time_ms = 30000;
  o.max_ejection_time_ms = 70000;
  o.interval_ms = 10000;
  s.RecordOutcome(true, true, false, 0, off, o, pool);
  s.RecordOutcome(true, true, false, 0, off, o, pool);
  EXPECT_EQ(s.RecordOutcome(true, true, false, 0, off, o, pool), ServerState::kEjected);
  EXPECT_TRUE(s.ejected(29999));
  EXPECT_FALSE(s.ResilienceAllows(29999, 1));
  EXPECT_FALSE(s.ejected(30000));
  // Ejected again at once: 2 x base. Then 3 x base would be 90 s: capped at 70 s.
  for (int i = 0; i < 3; ++i) s.RecordOutcome(true, true, false, 30000, off, o, pool);
  EXPECT_EQ(s.ejected_until_ms(), 90000);
  for (int i = 0; i < 3; ++i) s.RecordOutcome(true, true, false, 90000, off, o, pool);
  EXPECT_EQ(s.ejected_until_ms(), 160000);
  // After enough healthy intervals the multiplier decays back to one.
  for (int i = 0; i < 3; ++i) s.RecordOutcome(true, true, false, 500000, off, o, pool);
  EXPECT_EQ(s.ejected_until_ms(), 530000);
  EXPECT_EQ(s.ejections(), 4u);
}

TEST(Outlier, MaxEjectionPercentButAlwaysOne) {
  auto pool = Pool(4);
  BreakerConfig off;
  OutlierConfig o;
  o.enabled = true;
  o.consecutive_5xx = 1;
  o.max_ejection_percent = 10;  // 10% of 4 is less than one server: still one may go
  EXPECT_EQ(pool[0]->RecordOutcome(true, true, false, 0, off, o, pool), ServerState::kEjected);
  EXPECT_EQ(pool[1]->RecordOutcome(true, true, false, 0, off, o, pool), 0);
  EXPECT_FALSE(pool[1]->ejected(0));
  o.max_ejection_percent = 50;
  EXPECT_EQ(pool[1]->RecordOutcome(true, true, false, 0, off, o, pool), ServerState::kEjected);
  EXPECT_EQ(pool[2]->RecordOutcome(true, true, false, 0, off, o, pool), 0);
}

}  // namespace
}  // namespace bulwark::gateway
