#include "gateway/health.h"

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

ServerState MakeState() {
  return ServerState(0, "app", "127.0.0.1:1", *ParseSocketAddress("127.0.0.1:1"));
}

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

}  // namespace
}  // namespace bulwark::gateway
