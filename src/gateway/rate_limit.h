// Request rate limiting with nginx limit_req semantics, exact to the integer arithmetic.
//
// Each zone keeps, per key, the "excess" in thousandths of a request and the time it was last
// updated. A request for a key drains the excess by rate × elapsed and adds one request (1000);
// if the result is above the burst the request is rejected and nothing is recorded, otherwise it
// is recorded and the request waits (excess − delay) / rate, or passes when that is ≤ 0. A new
// key starts with an excess of zero. Several zones on one route are decided together: any can
// reject (and then none of them is charged), and the longest delay wins.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "core/mutex.h"
#include "gateway/config.h"
#include "gateway/conn_limit.h"

namespace bulwark::gateway {

enum class LimitResult : uint8_t {
  kPassed = 0,
  kDelayed,
  kRejected,
  kDelayedDryRun,  // would have been delayed; limit_req_dry_run let it through at once
  kRejectedDryRun,
};
constexpr int kLimitResults = 5;
// The `result` label value: passed, delayed, rejected, delayed_dry_run, rejected_dry_run.
const char* LimitResultName(LimitResult r);

// One limit_req zone: a bounded table of per-key states shared by every worker. The table is
// split into lock-striped shards so workers rarely meet; a decision locks only the shards of
// the keys it touches. When a shard is full the least recently used key is dropped (as nginx
// does when its zone runs out of memory); idle keys whose excess has drained are reclaimed as
// new keys arrive. Thread-safe.
class LimitZone {
 public:
  static constexpr int kShards = 16;
  // About what nginx stores per key; a 1m zone holds ~16k keys, as the nginx docs say.
  static constexpr int64_t kBytesPerKey = 64;

  LimitZone(std::string name, std::string key_text, int64_t rate_milli, int64_t size_bytes);
  ~LimitZone();

  const std::string& name() const { return name_; }
  const std::string& key_text() const { return key_text_; }
  int64_t size_bytes() const { return size_bytes_; }
  int64_t rate_milli() const { return rate_.load(std::memory_order_relaxed); }
  // A reload may change the rate of a zone and keep its keys (nginx does the same).
  void set_rate_milli(int64_t r) { rate_.store(r, std::memory_order_relaxed); }
  size_t capacity() const { return per_shard_ * kShards; }

  // Counts a decision made elsewhere (in Redis, or by a fallback policy).
  void Count(LimitResult r);
  void CountFallback() { fallbacks_.fetch_add(1, std::memory_order_relaxed); }
  uint64_t fallbacks() const { return fallbacks_.load(std::memory_order_relaxed); }

  // For metrics and the admin API.
  size_t Keys() const;
  std::array<uint64_t, kLimitResults> Counts() const;
  uint64_t Evictions() const;

 private:
  friend class LimitDecision;
  static constexpr uint32_t kNil = UINT32_MAX;
  static constexpr int64_t kNever = INT64_MIN;
  struct Node {
    std::string key;
    int64_t excess = 0;  // thousandths of a request
    int64_t last_ms = 0;
    uint32_t prev = kNil;  // LRU list, most recent at head
    uint32_t next = kNil;
  };
  struct Shard {
    mutable Mutex mu;
    absl::flat_hash_map<std::string_view, uint32_t> index ABSL_GUARDED_BY(mu);
    std::vector<Node> nodes ABSL_GUARDED_BY(mu);
    std::vector<uint32_t> free ABSL_GUARDED_BY(mu);
    uint32_t head ABSL_GUARDED_BY(mu) = kNil;
    uint32_t tail ABSL_GUARDED_BY(mu) = kNil;
    std::array<uint64_t, kLimitResults> counts ABSL_GUARDED_BY(mu) = {};
    uint64_t evictions ABSL_GUARDED_BY(mu) = 0;
  };

  Shard& ShardFor(std::string_view key);
  // nginx ngx_http_limit_req_lookup with `account` (the last zone of a route) or without.
  // Returns the node index; sets *excess and *busy. The shard must be locked.
  uint32_t Lookup(Shard& s, std::string_view key, int64_t now_ms, int64_t burst, bool account,
                  int64_t* excess, bool* busy);
  // The excess after this request: drained by the time since the key's last update, plus one.
  int64_t Charge(const Node& n, int64_t now_ms, int64_t* ms) const;
  // nginx ngx_http_limit_req_account for one earlier zone. The shard must be locked.
  int64_t Account(Shard& s, uint32_t node, int64_t now_ms);
  void Touch(Shard& s, uint32_t i);
  void Unlink(Shard& s, uint32_t i);
  void Remove(Shard& s, uint32_t i);
  // nginx ngx_http_limit_req_expire: drop up to two drained keys idle for a minute, and the
  // oldest key by force when the shard is full.
  void Expire(Shard& s, int64_t now_ms);

  const std::string name_;
  const std::string key_text_;
  const int64_t size_bytes_;
  std::atomic<int64_t> rate_;
  std::atomic<uint64_t> fallbacks_{0};
  size_t per_shard_;
  std::unique_ptr<Shard[]> shards_;
};

// One rule of a route applied to one key.
struct LimitRequest {
  LimitZone* zone = nullptr;
  int64_t burst = 0;     // thousandths
  int64_t delay = 0;     // thousandths
  std::string_view key;  // empty: the rule does not apply to this request
};

struct LimitOutcome {
  bool applied = false;  // some rule had a key
  LimitResult result = LimitResult::kPassed;
  int rule = -1;              // the rule that rejected, or whose delay won
  int64_t excess = 0;         // that rule's excess, thousandths
  int64_t delay_ms = 0;       // how long to hold the request (0 in dry-run)
  int64_t retry_after_s = 0;  // for a rejection: when a request would next be admitted
};

// Decides one request against up to kMaxRules rules (a route's limit_req lines, in order).
class LimitDecision {
 public:
  static constexpr int kMaxRules = 16;
  static LimitOutcome Decide(const LimitRequest* rules, int n, int64_t now_ms, bool dry_run);
};

// Keeps zones across reloads: a zone whose name, key and size are unchanged keeps its state (as
// nginx keeps a shared zone across reloads); a changed rate is applied to it. Thread-safe.
// limit_conn zones likewise keep their counts when name, key and size are unchanged: requests
// in flight across a reload release what they acquired in the same table.
class ZoneRegistry {
 public:
  std::shared_ptr<LimitZone> Get(const LimitZoneConfig& cfg);
  std::shared_ptr<ConnZone> GetConn(const LimitConnZoneConfig& cfg);
  // Forgets zones no snapshot uses any more.
  void Prune();
  std::vector<std::shared_ptr<LimitZone>> All() const;

 private:
  mutable Mutex mu_;
  std::map<std::string, std::shared_ptr<LimitZone>> zones_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<ConnZone>> conn_zones_ ABSL_GUARDED_BY(mu_);
};

}  // namespace bulwark::gateway
