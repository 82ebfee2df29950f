#include "core/cron.h"

#include <gtest/gtest.h>
#include <time.h>

#include <string>

namespace bulwark {
namespace {

// Unix seconds of a UTC date-time.
int64_t Utc(int y, int mo, int d, int h = 0, int mi = 0) {
  struct tm tm {};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  return static_cast<int64_t>(timegm(&tm));
}

std::string Show(int64_t t) {
  time_t x = static_cast<time_t>(t);
  struct tm tm {};
  gmtime_r(&x, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%d %H:%M %a", &tm);
  return buf;
}

std::string NextOf(const char* expr, int64_t after) {
  auto s = CronSchedule::Parse(expr);
  EXPECT_TRUE(s.ok()) << s.status();
  if (!s.ok()) return "";
  return Show(s->Next(after));
}

TEST(Cron, TheAlkaidSysSchedules) {
  // 2026-11-22 is a Sunday.
  int64_t now = Utc(2026, 11, 22, 10, 30);
  EXPECT_EQ(NextOf("0 2 * * 0", now), "2026-11-29 02:00 Sun");  // weekly full backup
  EXPECT_EQ(NextOf("0 2 * * *", now), "2026-11-23 02:00 Mon");
  EXPECT_EQ(NextOf("*/15 * * * *", now), "2026-11-22 10:45 Sun");
  EXPECT_EQ(NextOf("0 */6 * * *", now), "2026-11-22 12:00 Sun");
}

TEST(Cron, StrictlyAfterAndWholeMinutes) {
  int64_t at = Utc(2026, 1, 1, 0, 0);
  EXPECT_EQ(NextOf("* * * * *", at), "2026-01-01 00:01 Thu");
  EXPECT_EQ(NextOf("* * * * *", at + 59), "2026-01-01 00:01 Thu");
  EXPECT_EQ(NextOf("0 0 * * *", at), "2026-01-02 00:00 Fri");
}

TEST(Cron, ListsRangesStepsAndNames) {
  int64_t at = Utc(2026, 1, 1, 0, 0);
  EXPECT_EQ(NextOf("30 9 * * mon-fri", at), "2026-01-01 09:30 Thu");
  EXPECT_EQ(NextOf("30 9 * * sat,sun", at), "2026-01-03 09:30 Sat");
  EXPECT_EQ(NextOf("0 0 1 jun *", at), "2026-06-01 00:00 Mon");
  EXPECT_EQ(NextOf("5/20 * * * *", at), "2026-01-01 00:05 Thu");
  EXPECT_EQ(NextOf("5/20 * * * *", Utc(2026, 1, 1, 0, 45)), "2026-01-01 01:05 Thu");
  EXPECT_EQ(NextOf("0 0 * * 7", at), "2026-01-04 00:00 Sun");  // 7 is Sunday
  EXPECT_EQ(NextOf("0 10-14/2 * * *", Utc(2026, 1, 1, 11, 0)), "2026-01-01 12:00 Thu");
}

TEST(Cron, DayOfMonthOrDayOfWeekWhenBothAreSet) {
  // Vixie cron: "the 13th, or any Friday".
  int64_t at = Utc(2026, 1, 1, 0, 0);
  EXPECT_EQ(NextOf("0 0 13 * 5", at), "2026-01-02 00:00 Fri");
  EXPECT_EQ(NextOf("0 0 13 * 5", Utc(2026, 1, 10)), "2026-01-13 00:00 Tue");
  // With day of week "*", only the day of month counts.
  EXPECT_EQ(NextOf("0 0 13 * *", at), "2026-01-13 00:00 Tue");
}

TEST(Cron, ShorthandsAndLeapDays) {
  int64_t at = Utc(2026, 3, 15, 12, 0);
  EXPECT_EQ(NextOf("@daily", at), "2026-03-16 00:00 Mon");
  EXPECT_EQ(NextOf("@hourly", at), "2026-03-15 13:00 Sun");
  EXPECT_EQ(NextOf("@weekly", at), "2026-03-22 00:00 Sun");
  EXPECT_EQ(NextOf("@monthly", at), "2026-04-01 00:00 Wed");
  EXPECT_EQ(NextOf("@yearly", at), "2027-01-01 00:00 Fri");
  EXPECT_EQ(NextOf("0 0 29 2 *", at), "2028-02-29 00:00 Tue");
  auto never = CronSchedule::Parse("0 0 30 2 *");
  ASSERT_TRUE(never.ok());
  EXPECT_EQ(never->Next(at), -1);
}

TEST(Cron, ErrorsNameTheFieldAndValue) {
  auto e = CronSchedule::Parse("0 25 * * *");
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().message(), "cron field 2 (hour): 25 is outside 0-23");
  e = CronSchedule::Parse("0 2 * *");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(std::string(e.status().message()).find("has 4 fields; expected 5"), std::string::npos);
  EXPECT_FALSE(CronSchedule::Parse("*/0 * * * *").ok());
  EXPECT_FALSE(CronSchedule::Parse("5-1 * * * *").ok());
  EXPECT_FALSE(CronSchedule::Parse("0 0 * foo *").ok());
  EXPECT_FALSE(CronSchedule::Parse("@sometimes").ok());
  EXPECT_FALSE(CronSchedule::Parse("1,,2 * * * *").ok());
  EXPECT_FALSE(CronSchedule::Parse(std::string(300, '*')).ok());
}

}  // namespace
}  // namespace bulwark
