#include "vault/retention.h"

#include <algorithm>
#include <ctime>
#include <set>

namespace bulwark::vault {
namespace {

int64_t Day(int64_t ms) { return ms >= 0 ? ms / 86400000 : (ms - 86399999) / 86400000; }
// ISO weeks start on Monday; 1970-01-01 was a Thursday, so Monday 1969-12-29 is day -3.
int64_t Week(int64_t ms) {
  int64_t d = Day(ms) + 3;
  return d >= 0 ? d / 7 : (d - 6) / 7;
}
int64_t Month(int64_t ms) {
  time_t t = static_cast<time_t>(Day(ms) * 86400);
  struct tm tm;
  gmtime_r(&t, &tm);
  return int64_t{tm.tm_year} * 12 + tm.tm_mon;
}

}  // namespace

std::vector<int64_t> Expired(const std::vector<BackupRecord>& backups, const RetentionConfig& p,
                             int64_t now_ms) {
  std::vector<const BackupRecord*> ok;
  for (const BackupRecord& b : backups) {
    if (b.status == "ok") ok.push_back(&b);
  }
  std::sort(ok.begin(), ok.end(), [](const BackupRecord* a, const BackupRecord* b) {
    return a->started_ms != b->started_ms ? a->started_ms > b->started_ms : a->id > b->id;
  });
  bool any_rule = p.count > 0 || p.max_age_ms > 0 || p.daily > 0 || p.weekly > 0 || p.monthly > 0;
  if (!any_rule || ok.empty()) return {};
  std::set<int64_t> keep;
  keep.insert(ok.front()->id);  // the newest complete backup
  for (const BackupRecord* b : ok) {
    if (b->verified == "ok") {
      keep.insert(b->id);  // the newest verified one
      break;
    }
  }
  for (size_t i = 0; i < ok.size() && i < static_cast<size_t>(p.count); ++i) keep.insert(ok[i]->id);
  if (p.max_age_ms > 0) {
    for (const BackupRecord* b : ok) {
      if (now_ms - b->started_ms < p.max_age_ms) keep.insert(b->id);
    }
  }
  auto periods = [&](int n, int64_t (*period)(int64_t)) {
    if (n <= 0) return;
    std::set<int64_t> seen;
    for (const BackupRecord* b : ok) {  // newest first: the first of each period stands for it
      int64_t k = period(b->started_ms);
      if (seen.count(k)) continue;
      if (static_cast<int>(seen.size()) == n) break;
      seen.insert(k);
      keep.insert(b->id);
    }
  };
  periods(p.daily, Day);
  periods(p.weekly, Week);
  periods(p.monthly, Month);
  std::vector<int64_t> out;
  for (const BackupRecord* b : ok) {
    if (!keep.count(b->id)) out.push_back(b->id);
  }
  return out;
}

}  // namespace bulwark::vault
