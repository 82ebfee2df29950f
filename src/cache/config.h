// The cache library's configuration: the AlkaidSYS cache.yml shape, accepted as it is, plus the
// settings that design kept in code (business-event invalidations, write strategies, warm-up).
//
//   cache_strategies:        # one namespace per entry: ttl, max_size, eviction_policy
//     user: {ttl: 3600, max_size: 1000, eviction_policy: LRU}
//   redis:                   # L2; `cluster`, a single `address`, or `sentinel`
//     cluster: {enabled: true, nodes: [{host: ..., port: 6379}], password: ..., database: 0}
//     warmup: {enabled: true, strategies: [user]}
//   cache_penetration: {enabled: true, strategy: bloom_filter, false_positive_rate: 0.01,
//                       capacity: 1000000}
//   cache_avalanche: {enabled: true, strategy: [random_expiry, lock_request], lock_timeout: 10000}
//   cache_breakdown: {enabled: true, strategy: single_flight, max_concurrent: 100}
//   invalidation:
//     events:
//       user.updated: ["user:{userId}:*", "user_profile:{userId}"]
//       organization.updated: [{pattern: "org:{orgId}:*", strategy: lazy, delay: 5s}]
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cache/l1_cache.h"
#include "core/config_reader.h"
#include "core/cron.h"
#include "core/net.h"
#include "core/redis_link.h"

namespace bulwark::cache {

enum class WriteStrategy : uint8_t { kCacheAside, kWriteThrough, kWriteBehind };
const char* WriteStrategyName(WriteStrategy s);  // "cache-aside", "write-through", "write-behind"

struct NamespaceConfig {
  std::string name;
  int64_t ttl_ms = 3600 * 1000;
  L1Options l1;           // max_size → l1.max_entries, eviction_policy → l1.policy
  int64_t l1_ttl_ms = 0;  // how long L1 keeps a copy (0: the namespace ttl)
  bool l2 = true;         // also kept in Redis when Redis is configured
  int64_t negative_ttl_ms = 30 * 1000;  // a loader's "not found" is remembered this long
  int64_t stale_while_revalidate_ms = 0;
  int64_t stale_if_error_ms = 0;
  double early_refresh_beta = 1.0;  // XFetch; 0 turns early refresh off
  WriteStrategy write = WriteStrategy::kCacheAside;
  // write-behind: flush every `interval` or `batch` writes; a queue of at most `queue` writes.
  int64_t write_behind_interval_ms = 1000;
  int write_behind_batch = 100;
  int write_behind_queue = 10000;
  int write_behind_max_attempts = 0;  // 0: retry until it succeeds (never drop)
};

struct CacheRedisConfig {
  bool enabled = false;
  RedisServers servers;  // one server, a cluster or Sentinel's master (core/redis_link.h)
  std::string password;
  int database = 0;
  std::string key_prefix = "bulwark:cache:";
  std::string channel = "bulwark:cache:invalidate";
  int64_t command_timeout_ms = 100;
};

struct WarmupConfig {
  bool enabled = false;
  std::vector<std::string> namespaces;  // the AlkaidSYS `strategies`
  std::vector<std::string> keys;        // explicit keys to load through their namespace's loader
  std::optional<CronSchedule> schedule;
  bool on_start = true;
};

struct PenetrationConfig {
  bool enabled = false;
  double false_positive_rate = 0.01;
  uint64_t capacity = 1000000;
};

struct AvalancheConfig {
  bool random_expiry = false;
  double jitter = 0.1;  // TTLs spread over [ttl·(1−jitter), ttl]
  bool lock_request = false;
  int64_t lock_timeout_ms = 10000;
};

struct BreakdownConfig {
  bool single_flight = true;
  int max_concurrent = 100;  // loads in flight at once, over all keys
};

enum class InvalidationMode : uint8_t { kImmediate, kLazy, kTimeBased };

struct InvalidationRule {
  std::string pattern;  // a Redis glob with {param} placeholders filled from the event
  InvalidationMode mode = InvalidationMode::kImmediate;
  int64_t delay_ms = 5000;  // lazy: remove after this delay
  int64_t ttl_ms = 0;       // time-based: matching keys live at most this long
};

struct CacheConfig {
  std::map<std::string, NamespaceConfig> namespaces;
  CacheRedisConfig redis;
  WarmupConfig warmup;
  PenetrationConfig penetration;
  AvalancheConfig avalanche;
  BreakdownConfig breakdown;
  std::map<std::string, std::vector<InvalidationRule>> events;
};

// Reads a cache configuration (the mapping itself: a cache.yml document or bulwark.yml's
// `cache:` section). Errors go to `ctx` with FILE:LINE:COL.
void ParseCacheConfig(ConfigContext& ctx, const YAML::Node& node, CacheConfig* out);

// Loads a cache.yml file as the AlkaidSYS design writes it.
struct CacheConfigLoad {
  CacheConfig config;
  std::vector<std::string> errors;
  bool ok() const { return errors.empty(); }
};
CacheConfigLoad LoadCacheConfigFile(const std::string& path, const EnvLookup& env);
CacheConfigLoad LoadCacheConfigText(const std::string& text, const std::string& name,
                                    const EnvLookup& env);

// Fills an event's placeholders: ExpandPattern("user:{userId}:*", {{"userId","7"}}) is
// "user:7:*". A placeholder the event did not carry is an error (never "user::*"); values are
// glob-escaped so an id cannot widen the pattern.
absl::StatusOr<std::string> ExpandPattern(const std::string& pattern,
                                          const std::map<std::string, std::string>& params);

}  // namespace bulwark::cache
