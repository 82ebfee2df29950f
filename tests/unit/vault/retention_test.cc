#include "vault/retention.h"

#include <gtest/gtest.h>

#include <set>

namespace bulwark::vault {
namespace {

constexpr int64_t kDay = 86400000;
constexpr int64_t kOct2 = 1790899200000;  // 2026-10-02T00:00:00Z

// One backup a day at 02:00 UTC from 2026-10-02 to 2026-11-30 (a Monday): ids 1..60.
std::vector<BackupRecord> Daily() {
  std::vector<BackupRecord> out;
  for (int i = 0; i < 60; ++i) {
    BackupRecord b;
    b.id = i + 1;
    b.status = "ok";
    b.started_ms = kOct2 + i * kDay + 2 * 3600000;
    out.push_back(b);
  }
  return out;
}

// Day-of-series (1 = Oct 2 ... 30 = Oct 31, 31 = Nov 1 ... 60 = Nov 30) is the id.
std::set<int64_t> Kept(const std::vector<BackupRecord>& all, const RetentionConfig& p,
                       int64_t now) {
  std::set<int64_t> kept;
  for (const auto& b : all) {
    if (b.status == "ok") kept.insert(b.id);
  }
  for (int64_t id : Expired(all, p, now)) kept.erase(id);
  return kept;
}

const int64_t kNow = kOct2 + 59 * kDay + 12 * 3600000;  // 2026-11-30T12:00Z

TEST(Retention, GrandfatherFatherSonOnACalendar) {
  RetentionConfig p;
  p.daily = 7;
  p.weekly = 4;
  p.monthly = 3;
  // Days: Nov 24..30 (54..60). ISO weeks from Monday: Nov 30 alone (60), Nov 23..29 → 29th
  // (59), Nov 16..22 → 22nd (52), Nov 9..15 → 15th (45). Months: November → 30th (60),
  // October → 31st (30); there is no earlier month.
  EXPECT_EQ(Kept(Daily(), p, kNow), (std::set<int64_t>{30, 45, 52, 54, 55, 56, 57, 58, 59, 60}));
}

TEST(Retention, CountAndAge) {
  RetentionConfig count;
  count.count = 3;
  EXPECT_EQ(Kept(Daily(), count, kNow), (std::set<int64_t>{58, 59, 60}));
  RetentionConfig age;
  age.max_age_ms = 10 * kDay;
  // Nov 21 02:00 is 9.4 days before now (kept); Nov 20 02:00 is 10.4 days (deleted).
  EXPECT_EQ(Kept(Daily(), age, kNow), (std::set<int64_t>{51, 52, 53, 54, 55, 56, 57, 58, 59, 60}));
  RetentionConfig both = count;
  both.max_age_ms = 5 * kDay;  // union: five days' worth
  EXPECT_EQ(Kept(Daily(), both, kNow).size(), 5u);
  EXPECT_TRUE(Expired(Daily(), RetentionConfig{}, kNow).empty());  // no rule: keep everything
}

TEST(Retention, NeverTheLastVerifiedNorTheNewest) {
  auto all = Daily();
  all[4].verified = "ok";      // Oct 6, the only verified backup
  all[59].status = "failed";   // Nov 30 failed: Nov 29 is the newest complete one
  all[58].status = "running";  // and Nov 29 is still running: Nov 28 then
  RetentionConfig p;
  p.count = 1;
  EXPECT_EQ(Kept(all, p, kNow), (std::set<int64_t>{5, 58}));
  p.count = 0;
  p.max_age_ms = 1;  // everything is too old
  EXPECT_EQ(Kept(all, p, kNow), (std::set<int64_t>{5, 58}));
  for (int64_t id : Expired(all, p, kNow)) {
    EXPECT_NE(id, 59);  // rows that are not complete are never pruned
    EXPECT_NE(id, 60);
  }
  all[20].verified = "ok";  // a newer verified one: Oct 6 may go
  EXPECT_EQ(Kept(all, p, kNow), (std::set<int64_t>{21, 58}));
}

}  // namespace
}  // namespace bulwark::vault
