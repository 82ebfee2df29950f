#include "gateway/bans.h"

#include <gtest/gtest.h>

#include <string>

namespace bulwark::gateway {
namespace {

BanRuleConfig Rule(int maxretry, int64_t findtime_ms, int64_t bantime_ms) {
  BanRuleConfig r;
  r.set = true;
  r.statuses = {401};
  r.maxretry = maxretry;
  r.findtime_ms = findtime_ms;
  r.bantime_ms = bantime_ms;
  return r;
}

TEST(BanTableTest, MaxretryStrikesWithinFindtimeBan) {
  BanTable t;
  BanRuleConfig r = Rule(3, 60000, 600000);
  EXPECT_FALSE(t.IsBanned("1.2.3.4", 0));
  EXPECT_FALSE(t.Strike("1.2.3.4", "login", r, 1000, "401"));
  EXPECT_FALSE(t.Strike("1.2.3.4", "login", r, 2000, "401"));
  EXPECT_TRUE(t.Strike("1.2.3.4", "login", r, 3000, "401"));
  EXPECT_TRUE(t.IsBanned("1.2.3.4", 3001));
  EXPECT_FALSE(t.IsBanned("1.2.3.5", 3001));
  EXPECT_EQ(t.active(), 1);
  auto list = t.List(4000);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].key, "1.2.3.4");
  EXPECT_EQ(list[0].rule, "login");
  EXPECT_EQ(list[0].reason, "3 x 401 within 1m");
  EXPECT_EQ(list[0].expires_at_ms, 603000);
  // The ban ends by itself.
  EXPECT_FALSE(t.IsBanned("1.2.3.4", 603000));
  EXPECT_EQ(t.active(), 0);
  auto counts = t.RuleCounts();
  EXPECT_EQ(counts["login"].first, 1u);
  EXPECT_EQ(counts["login"].second, 3u);
}

TEST(BanTableTest, StrikesOutsideFindtimeDoNotAddUp) {
  BanTable t;
  BanRuleConfig r = Rule(3, 10000, 60000);
  EXPECT_FALSE(t.Strike("k", "r", r, 0, "401"));
  EXPECT_FALSE(t.Strike("k", "r", r, 6000, "401"));
  EXPECT_FALSE(t.Strike("k", "r", r, 12000, "401"));  // the first is older than 10 s
  EXPECT_FALSE(t.IsBanned("k", 12000));
  EXPECT_TRUE(t.Strike("k", "r", r, 14000, "401"));  // 6000, 12000, 14000
}

TEST(BanTableTest, LiftEndsABanAndForgetsStrikes) {
  BanTable t;
  BanRuleConfig r = Rule(2, 10000, 60000);
  t.Strike("k", "r", r, 0, "401");
  EXPECT_TRUE(t.Strike("k", "r", r, 1, "401"));
  EXPECT_TRUE(t.Lift("k"));
  EXPECT_FALSE(t.Lift("k"));
  EXPECT_FALSE(t.IsBanned("k", 2));
  EXPECT_FALSE(t.Strike("k", "r", r, 3, "401"));  // counting starts again
}

// What an instance writes to Redis again after a failover is what it imposed itself: a ban
// another instance announced is that instance's to write, unless this one banned the key too.
TEST(BanTableTest, KnowsWhichBansAreItsOwn) {
  BanTable t;
  t.Ban("mine", "admin", "x", 0, 5000);
  t.Ban("theirs", "shared", "x", 0, 5000, /*remote=*/true);
  t.Ban("both", "admin", "x", 0, 5000);
  t.Ban("both", "shared", "x", 10, 5000, /*remote=*/true);
  auto list = t.List(100);
  ASSERT_EQ(list.size(), 3u);
  EXPECT_FALSE(list[0].remote);  // both
  EXPECT_FALSE(list[1].remote);  // mine
  EXPECT_TRUE(list[2].remote);   // theirs
}

// A lift heard late (after a reconnection) lifts only what was banned before it, and tells the
// lifter how long the ban had left.
TEST(BanTableTest, LiftSparesALaterBan) {
  BanTable t;
  t.Ban("k", "admin", "x", 1000, 5000);
  int64_t expires = -1;
  EXPECT_FALSE(t.Lift("k", &expires, /*banned_before_ms=*/999));
  EXPECT_EQ(expires, 0);
  EXPECT_TRUE(t.IsBanned("k", 1001));
  EXPECT_TRUE(t.Lift("k", &expires, /*banned_before_ms=*/1000));
  EXPECT_EQ(expires, 6000);
  EXPECT_FALSE(t.IsBanned("k", 1001));
}

TEST(BanTableTest, ResyncRequestsAreTakenOnce) {
  BanTable t;
  EXPECT_FALSE(t.TakeResync());
  t.RequestResync();
  t.RequestResync();
  EXPECT_TRUE(t.TakeResync());
  EXPECT_FALSE(t.TakeResync());
}

TEST(BanTableTest, OperatorBans) {
  BanTable t;
  t.Ban("10.0.0.1", "admin", "abuse", 0, 5000);
  EXPECT_TRUE(t.IsBanned("10.0.0.1", 4999));
  EXPECT_FALSE(t.IsBanned("10.0.0.1", 5000));
  EXPECT_EQ(t.refused(), 1u);
}

TEST(BanTableTest, TablesStayBounded) {
  BanTable t(64);  // 4 per shard
  BanRuleConfig r = Rule(1, 10000, 60000);
  for (int i = 0; i < 1000; ++i) t.Strike("k" + std::to_string(i), "r", r, i, "401");
  EXPECT_LE(t.List(1000).size(), 64u);
  EXPECT_LE(t.active(), 64);
  // The newest ban survived.
  EXPECT_TRUE(t.IsBanned("k999", 1000));
}

}  // namespace
}  // namespace bulwark::gateway
