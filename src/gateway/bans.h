// Automatic bans with fail2ban's semantics, shared by every worker.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "core/mutex.h"
#include "core/redis_link.h"
#include "gateway/config.h"

namespace bulwark {
struct RedisReply;
}

namespace bulwark::gateway {

struct BanInfo {
  std::string key;            // e.g. the client IP
  std::string rule;           // the route whose rule banned it, or "admin"
  std::string reason;         // "5 x 401/403 within 1m"
  int64_t banned_at_ms = 0;   // monotonic
  int64_t expires_at_ms = 0;  // monotonic
  bool remote = false;        // imposed by another instance (shared through Redis), not this one
};

// A BanTable holds active bans and the strike counters ("failures" in fail2ban's words) that
// lead to them. A key with `maxretry` strikes inside `findtime` is banned for `bantime`. Both
// tables are bounded by max_entries: expired entries go first, then the oldest. Checking a key
// costs one relaxed load while nothing is banned. Thread-safe; times are monotonic ms.
class BanTable {
 public:
  explicit BanTable(int64_t max_entries = 100000);

  void set_max_entries(int64_t n) { max_entries_.store(n, std::memory_order_relaxed); }
  bool IsBanned(std::string_view key, int64_t now_ms);
  // Counts one strike against `key` under `rule` (named `rule_name`). Returns true when this
  // strike bans the key (the caller logs the security event).
  bool Strike(std::string_view key, std::string_view rule_name, const BanRuleConfig& rule,
              int64_t now_ms, std::string_view what);
  // Bans `key` for `duration_ms`: an operator's ban, or (remote = true) one another instance
  // imposed and shared through Redis, which is not counted as this instance's. Returns true when
  // the key was not banned before.
  bool Ban(std::string_view key, std::string_view rule_name, std::string_view reason,
           int64_t now_ms, int64_t duration_ms, bool remote = false);
  // Lifts a ban and forgets the key's strikes. Returns false when the key was not banned, or
  // its ban was imposed after `banned_before_ms` (then nothing changes); `expires_at_ms` (when
  // given) gets the lifted ban's end, 0 when none was lifted.
  bool Lift(std::string_view key, int64_t* expires_at_ms = nullptr,
            int64_t banned_before_ms = INT64_MAX);
  // This instance's bans could not all be written to Redis (it was unreachable, or a write
  // failed): the control thread writes them again (Gateway::Tick). Any thread.
  void RequestResync() { resync_.store(true, std::memory_order_relaxed); }
  bool TakeResync() { return resync_.exchange(false, std::memory_order_relaxed); }
  std::vector<BanInfo> List(int64_t now_ms);

  int64_t active() const { return active_.load(std::memory_order_relaxed); }
  uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }
  uint64_t received() const { return received_.load(std::memory_order_relaxed); }
  // Bans imposed and strikes counted, per rule name.
  std::map<std::string, std::pair<uint64_t, uint64_t>> RuleCounts() const;

 private:
  static constexpr int kShards = 16;
  struct Strikes {
    std::deque<int64_t> times;  // at most maxretry, oldest first
    int64_t last_ms = 0;
  };
  struct Shard {
    Mutex mu;
    absl::flat_hash_map<std::string, BanInfo> bans ABSL_GUARDED_BY(mu);
    absl::flat_hash_map<std::string, Strikes> strikes ABSL_GUARDED_BY(mu);
  };
  Shard& ShardFor(std::string_view key);
  // Returns true when the key had no ban in force.
  bool BanLocked(Shard& s, std::string_view key, std::string_view rule_name,
                 std::string_view reason, int64_t now_ms, int64_t duration_ms, bool remote)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  void TrimLocked(Shard& s, int64_t now_ms) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);

  std::atomic<int64_t> max_entries_;
  std::atomic<int64_t> active_{0};
  std::atomic<bool> resync_{false};
  std::atomic<uint64_t> refused_{0};
  std::atomic<uint64_t> received_{0};
  std::unique_ptr<Shard[]> shards_;
  mutable Mutex counts_mu_;
  std::map<std::string, std::pair<uint64_t, uint64_t>> counts_ ABSL_GUARDED_BY(counts_mu_);
};

// The message a ban or a lift is shared with through Redis (JSON, one line), and the Redis keys.
// `at_unix_ms`: when the ban was imposed or lifted (wall clock), so a ban written again after a
// failover never undoes a later lift.
std::string BanMessage(std::string_view op, std::string_view key, std::string_view rule,
                       std::string_view reason, int64_t duration_ms, std::string_view from,
                       int64_t at_unix_ms);
inline std::string BanRedisKey(std::string_view prefix, std::string_view key) {
  return std::string(prefix) + "ban:" + std::string(key);
}
inline std::string BanChannel(std::string_view prefix) { return std::string(prefix) + "bans"; }

// Shares a ban this instance imposed for `ms`: kept in Redis for its time (for instances that
// start or reconnect later) and announced to the ones listening now. When Redis is not
// connected, or the write fails, `bans` is asked to write it again (BanTable::RequestResync).
void ShareBan(RedisLink& redis, BanTable* bans, std::string_view prefix, std::string_view key,
              const std::string& msg, int64_t ms);

}  // namespace bulwark::gateway
