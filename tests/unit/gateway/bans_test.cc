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
