#include "core/cron.h"

#include <time.h>

#include <vector>

#include "core/strings.h"

namespace bulwark {
namespace {

constexpr size_t kMaxExpression = 256;

struct FieldSpec {
  const char* name;
  int min;
  int max;
  const char* const* names;  // for months and weekdays: 3-letter names from `min`
};

const char* const kMonthNames[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                   "jul", "aug", "sep", "oct", "nov", "dec"};
const char* const kDayNames[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

const FieldSpec kFields[5] = {
    {"minute", 0, 59, nullptr},       {"hour", 0, 23, nullptr},
    {"day of month", 1, 31, nullptr}, {"month", 1, 12, kMonthNames},
    {"day of week", 0, 7, kDayNames},  // 7 = Sunday
};

absl::Status FieldError(int index, std::string_view detail) {
  return absl::InvalidArgumentError(
      StrCat("cron field ", index + 1, " (", kFields[index].name, "): ", detail));
}

absl::StatusOr<int> ParseValue(int index, std::string_view text) {
  const FieldSpec& f = kFields[index];
  if (f.names != nullptr && text.size() == 3) {
    std::string lower = AsciiLower(text);
    int count = f.names == kMonthNames ? 12 : 7;
    for (int i = 0; i < count; ++i) {
      if (lower == f.names[i]) return f.min + i;
    }
  }
  int v = 0;
  if (text.empty() || text.size() > 4 || !ParseInt(text, &v)) {
    return FieldError(index, StrCat("\"", text, "\" is not a number"));
  }
  if (v < f.min || v > f.max) {
    return FieldError(index, StrCat(v, " is outside ", f.min, "-", f.max));
  }
  return v;
}

// Parses one field into `bits` (indexed by value); returns whether it was restricted (not *).
absl::StatusOr<bool> ParseField(int index, std::string_view text, std::vector<bool>* bits) {
  const FieldSpec& f = kFields[index];
  bits->assign(static_cast<size_t>(f.max) + 1, false);
  bool restricted = text.empty() || text[0] != '*';
  for (const std::string& part : Split(text, ',')) {
    if (part.empty()) return FieldError(index, "empty list element");
    std::string_view range = part;
    int step = 1;
    if (size_t slash = range.find('/'); slash != std::string_view::npos) {
      std::string_view st = range.substr(slash + 1);
      if (!ParseInt(st, &step) || step <= 0 || step > f.max + 1) {
        return FieldError(index, StrCat("bad step \"", st, "\""));
      }
      range = range.substr(0, slash);
    }
    int lo = f.min, hi = f.max;
    if (range == "*") {
      if (index == 4) hi = 6;  // "*" in day of week is 0-6; 7 is only an alias
    } else if (size_t dash = range.find('-'); dash != std::string_view::npos) {
      auto a = ParseValue(index, range.substr(0, dash));
      if (!a.ok()) return a.status();
      auto b = ParseValue(index, range.substr(dash + 1));
      if (!b.ok()) return b.status();
      lo = *a;
      hi = *b;
      if (lo > hi) return FieldError(index, StrCat("range ", lo, "-", hi, " is backwards"));
    } else {
      auto a = ParseValue(index, range);
      if (!a.ok()) return a.status();
      lo = *a;
      // "5/15" means from 5 to the end in steps of 15, as Vixie cron reads it.
      hi = part.find('/') != std::string::npos ? f.max : *a;
    }
    for (int v = lo; v <= hi; v += step) (*bits)[static_cast<size_t>(v)] = true;
  }
  return restricted;
}

}  // namespace

absl::StatusOr<CronSchedule> CronSchedule::Parse(std::string_view expression) {
  if (expression.size() > kMaxExpression) {
    return absl::InvalidArgumentError(
        StrCat("cron expression is longer than ", kMaxExpression, " characters"));
  }
  std::string text(expression);
  static const std::pair<const char*, const char*> kMacros[] = {
      {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
      {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
      {"@hourly", "0 * * * *"}};
  std::string trimmed = std::string(Trim(text));
  if (!trimmed.empty() && trimmed[0] == '@') {
    bool found = false;
    for (const auto& [name, expansion] : kMacros) {
      if (AsciiLower(trimmed) == name) {
        text = expansion;
        found = true;
      }
    }
    if (!found) {
      return absl::InvalidArgumentError(
          StrCat("unknown cron shorthand \"", trimmed,
                 "\" (expected @yearly, @monthly, @weekly, @daily, @midnight or @hourly)"));
    }
  }
  std::vector<std::string> fields;
  for (const std::string& f : Split(text, ' ', /*skip_empty=*/true)) {
    for (const std::string& g : Split(f, '\t', true)) fields.push_back(g);
  }
  if (fields.size() != 5) {
    return absl::InvalidArgumentError(
        StrCat("cron expression \"", expression, "\" has ", fields.size(),
               " fields; expected 5: minute hour day-of-month month day-of-week"));
  }
  CronSchedule s;
  s.expression_ = std::string(expression);
  std::vector<bool> bits;
  for (int i = 0; i < 5; ++i) {
    auto restricted = ParseField(i, fields[static_cast<size_t>(i)], &bits);
    if (!restricted.ok()) return restricted.status();
    for (size_t v = 0; v < bits.size(); ++v) {
      if (!bits[v]) continue;
      switch (i) {
        case 0:
          s.minutes_.set(v);
          break;
        case 1:
          s.hours_.set(v);
          break;
        case 2:
          s.days_.set(v);
          break;
        case 3:
          s.months_.set(v);
          break;
        case 4:
          s.weekdays_.set(v % 7);
          break;
      }
    }
    if (i == 2) s.day_restricted_ = *restricted;
    if (i == 4) s.weekday_restricted_ = *restricted;
  }
  return s;
}

int64_t CronSchedule::Next(int64_t after, bool utc) const {
  // Walk forward field by field: a wrong month skips to the next month, a wrong day to the next
  // day, and so on, normalising through mktime/timegm, so even a yearly schedule takes a few
  // hundred steps.
  time_t t = static_cast<time_t>(after - after % 60 + 60);  // the next whole minute
  struct tm tm {};
  auto split = [&](time_t x) { utc ? gmtime_r(&x, &tm) : localtime_r(&x, &tm); };
  auto join = [&]() -> time_t {
    tm.tm_isdst = -1;
    return utc ? timegm(&tm) : mktime(&tm);
  };
  split(t);
  const int64_t limit = after + int64_t{8} * 366 * 86400;
  while (static_cast<int64_t>(t) <= limit) {
    if (!months_.test(static_cast<size_t>(tm.tm_mon + 1))) {
      tm.tm_mon += 1;
      tm.tm_mday = 1;
      tm.tm_hour = 0;
      tm.tm_min = 0;
      t = join();
      split(t);
      continue;
    }
    bool dom = days_.test(static_cast<size_t>(tm.tm_mday));
    bool dow = weekdays_.test(static_cast<size_t>(tm.tm_wday));
    bool day_ok = day_restricted_ && weekday_restricted_ ? (dom || dow) : (dom && dow);
    if (!day_ok) {
      tm.tm_mday += 1;
      tm.tm_hour = 0;
      tm.tm_min = 0;
      t = join();
      split(t);
      continue;
    }
    if (!hours_.test(static_cast<size_t>(tm.tm_hour))) {
      tm.tm_hour += 1;
      tm.tm_min = 0;
      t = join();
      split(t);
      continue;
    }
    if (!minutes_.test(static_cast<size_t>(tm.tm_min))) {
      tm.tm_min += 1;
      t = join();
      split(t);
      continue;
    }
    return static_cast<int64_t>(t);
  }
  return -1;
}

}  // namespace bulwark
