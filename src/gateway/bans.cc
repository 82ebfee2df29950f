#include "gateway/bans.h"

#include <algorithm>
#include <functional>

#include "core/log.h"
#include "core/strings.h"
#include "core/units.h"

namespace bulwark::gateway {

BanTable::BanTable(int64_t max_entries) : max_entries_(max_entries), shards_(new Shard[kShards]) {}

BanTable::Shard& BanTable::ShardFor(std::string_view key) {
  return shards_[std::hash<std::string_view>()(key) % kShards];
}

bool BanTable::IsBanned(std::string_view key, int64_t now_ms) {
  if (active_.load(std::memory_order_relaxed) == 0 || key.empty()) return false;
  Shard& s = ShardFor(key);
  MutexLock lock(&s.mu);
  auto it = s.bans.find(absl::string_view(key.data(), key.size()));
  if (it == s.bans.end()) return false;
  if (it->second.expires_at_ms <= now_ms) {
    s.bans.erase(it);
    active_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  refused_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void BanTable::TrimLocked(Shard& s, int64_t now_ms) {
  int64_t limit = std::max<int64_t>(1, max_entries_.load(std::memory_order_relaxed) / kShards);
  if (static_cast<int64_t>(s.strikes.size()) >= limit) {
    // Forget strike counters that are too old to matter (an hour without a strike is beyond any
    // sane findtime), then, if still full, the least recently struck.
    for (auto it = s.strikes.begin(); it != s.strikes.end();) {
      auto cur = it++;
      if (now_ms - cur->second.last_ms > 3600 * 1000) s.strikes.erase(cur);
    }
    while (static_cast<int64_t>(s.strikes.size()) >= limit) {
      auto oldest = s.strikes.begin();
      for (auto it = s.strikes.begin(); it != s.strikes.end(); ++it) {
        if (it->second.last_ms < oldest->second.last_ms) oldest = it;
      }
      s.strikes.erase(oldest);
    }
  }
  if (static_cast<int64_t>(s.bans.size()) >= limit) {
    for (auto it = s.bans.begin(); it != s.bans.end();) {
      auto cur = it++;
      if (cur->second.expires_at_ms <= now_ms) {
        s.bans.erase(cur);
        active_.fetch_sub(1, std::memory_order_relaxed);
      }
    }
    while (static_cast<int64_t>(s.bans.size()) >= limit) {
      auto first = s.bans.begin();
      for (auto it = s.bans.begin(); it != s.bans.end(); ++it) {
        if (it->second.expires_at_ms < first->second.expires_at_ms) first = it;
      }
      s.bans.erase(first);
      active_.fetch_sub(1, std::memory_order_relaxed);
    }
  }
}

bool BanTable::BanLocked(Shard& s, std::string_view key, std::string_view rule_name,
                         std::string_view reason, int64_t now_ms, int64_t duration_ms,
                         bool remote) {
  absl::string_view k(key.data(), key.size());
  auto it = s.bans.find(k);
  bool was_banned = it != s.bans.end() && it->second.expires_at_ms > now_ms;
  if (it == s.bans.end()) {
    TrimLocked(s, now_ms);
    it = s.bans.emplace(std::string(key), BanInfo{}).first;
    active_.fetch_add(1, std::memory_order_relaxed);
  }
  BanInfo& b = it->second;
  // A ban this instance imposed stays its own (it writes it to Redis again after a failover)
  // when another instance announces the same key.
  b.remote = was_banned ? b.remote && remote : remote;
  b.key.assign(key);
  b.rule.assign(rule_name);
  b.reason.assign(reason);
  b.banned_at_ms = now_ms;
  b.expires_at_ms = std::max(b.expires_at_ms, now_ms + duration_ms);
  s.strikes.erase(k);
  return !was_banned;
}

bool BanTable::Strike(std::string_view key, std::string_view rule_name, const BanRuleConfig& rule,
                      int64_t now_ms, std::string_view what) {
  if (key.empty()) return false;
  bool banned = false;
  {
    Shard& s = ShardFor(key);
    MutexLock lock(&s.mu);
    absl::string_view k(key.data(), key.size());
    auto b = s.bans.find(k);
    if (b != s.bans.end() && b->second.expires_at_ms > now_ms) return false;  // already banned
    auto it = s.strikes.find(k);
    if (it == s.strikes.end()) {
      TrimLocked(s, now_ms);
      it = s.strikes.emplace(std::string(key), Strikes{}).first;
    }
    Strikes& st = it->second;
    st.last_ms = now_ms;
    st.times.push_back(now_ms);
    while (!st.times.empty() && now_ms - st.times.front() >= rule.findtime_ms) st.times.pop_front();
    while (static_cast<int>(st.times.size()) > rule.maxretry) st.times.pop_front();
    // fail2ban: maxretry failures within findtime.
    if (static_cast<int>(st.times.size()) >= rule.maxretry) {
      std::string reason =
          StrCat(rule.maxretry, " x ", what, " within ", FormatDurationMs(rule.findtime_ms));
      BanLocked(s, key, rule_name, reason, now_ms, rule.bantime_ms, /*remote=*/false);
      banned = true;
    }
  }
  MutexLock lock(&counts_mu_);
  auto& c = counts_[std::string(rule_name)];
  ++c.second;
  if (banned) ++c.first;
  return banned;
}

bool BanTable::Ban(std::string_view key, std::string_view rule_name, std::string_view reason,
                   int64_t now_ms, int64_t duration_ms, bool remote) {
  bool fresh;
  {
    Shard& s = ShardFor(key);
    MutexLock lock(&s.mu);
    fresh = BanLocked(s, key, rule_name, reason, now_ms, duration_ms, remote);
  }
  if (remote) {
    received_.fetch_add(1, std::memory_order_relaxed);
    return fresh;
  }
  MutexLock lock(&counts_mu_);
  ++counts_[std::string(rule_name)].first;
  return fresh;
}

bool BanTable::Lift(std::string_view key, int64_t* expires_at_ms, int64_t banned_before_ms) {
  if (expires_at_ms != nullptr) *expires_at_ms = 0;
  Shard& s = ShardFor(key);
  MutexLock lock(&s.mu);
  absl::string_view k(key.data(), key.size());
  auto it = s.bans.find(k);
  if (it != s.bans.end() && it->second.banned_at_ms > banned_before_ms) return false;
  s.strikes.erase(k);
  if (it == s.bans.end()) return false;
  if (expires_at_ms != nullptr) *expires_at_ms = it->second.expires_at_ms;
  s.bans.erase(it);
  active_.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

std::vector<BanInfo> BanTable::List(int64_t now_ms) {
  std::vector<BanInfo> out;
  for (int i = 0; i < kShards; ++i) {
    Shard& s = shards_[i];
    MutexLock lock(&s.mu);
    for (auto it = s.bans.begin(); it != s.bans.end();) {
      auto cur = it++;
      if (cur->second.expires_at_ms <= now_ms) {
        s.bans.erase(cur);
        active_.fetch_sub(1, std::memory_order_relaxed);
      } else {
        out.push_back(cur->second);
      }
    }
  }
  std::sort(out.begin(), out.end(),
            [](const BanInfo& a, const BanInfo& b) { return a.key < b.key; });
  return out;
}

std::string BanMessage(std::string_view op, std::string_view key, std::string_view rule,
                       std::string_view reason, int64_t duration_ms, std::string_view from,
                       int64_t at_unix_ms) {
  std::string m = "{\"op\":\"";
  AppendJsonEscaped(&m, op);
  m.append("\",\"key\":\"");
  AppendJsonEscaped(&m, key);
  m.append("\",\"rule\":\"");
  AppendJsonEscaped(&m, rule);
  m.append("\",\"reason\":\"");
  AppendJsonEscaped(&m, reason);
  StrAppend(&m, "\",\"ms\":", duration_ms, ",\"at\":", at_unix_ms, ",\"from\":\"");
  AppendJsonEscaped(&m, from);
  m.append("\"}");
  return m;
}

void ShareBan(RedisLink& redis, BanTable* bans, std::string_view prefix, std::string_view key,
              const std::string& msg, int64_t ms) {
  if (!redis.connected()) {
    bans->RequestResync();  // written when Redis is back
    return;
  }
  redis.Command({"SET", BanRedisKey(prefix, key), msg, "PX", StrCat(ms)},
                [bans](const RedisReply& r) {
                  if (r.is_error()) bans->RequestResync();
                });
  redis.Command({"PUBLISH", BanChannel(prefix), msg}, [](const RedisReply&) {});
}

std::map<std::string, std::pair<uint64_t, uint64_t>> BanTable::RuleCounts() const {
  MutexLock lock(&counts_mu_);
  return counts_;
}

}  // namespace bulwark::gateway
