// Cron schedules with the syntax and semantics of Vixie cron (crontab(5)), as the AlkaidSYS
// backup scripts write them ("0 2 * * 0"):
//   minute hour day-of-month month day-of-week
// Each field takes *, numbers, ranges (1-5), lists (1,3,5) and steps (*/15, 1-30/2); months and
// weekdays also take names (jan, mon); 7 is Sunday like 0. As in Vixie cron, when both
// day-of-month and day-of-week are restricted a day matching either one fires. The shorthands
// @yearly (@annually), @monthly, @weekly, @daily (@midnight) and @hourly are accepted.
#pragma once

#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace bulwark {

class CronSchedule {
 public:
  // Errors name the field and the bad value: `cron field 2 (hour): 25 is outside 0-23`.
  static absl::StatusOr<CronSchedule> Parse(std::string_view expression);

  // The first matching minute strictly after `after` (Unix seconds), in UTC or in the local
  // time zone. Returns -1 if nothing matches within eight years (e.g. "0 0 30 2 *").
  int64_t Next(int64_t after, bool utc = true) const;

  const std::string& expression() const { return expression_; }

 private:
  std::string expression_;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;     // 1..31
  std::bitset<13> months_;   // 1..12
  std::bitset<8> weekdays_;  // 0..6, Sunday = 0
  bool day_restricted_ = false;
  bool weekday_restricted_ = false;
};

}  // namespace bulwark
