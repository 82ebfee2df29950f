// The gateway's HTTP response cache: zones of stored responses shared by every worker, and the
// in-flight table that coalesces concurrent misses (nginx proxy_cache_lock).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "cache/l1_cache.h"
#include "cache/single_flight.h"
#include "core/mutex.h"

namespace bulwark::gateway {

class Worker;
class Exchange;

struct CacheZoneConfig {
  std::string name;
  int64_t max_bytes = 256 << 20;  // nginx proxy_cache_path max_size
  int64_t max_entries = 0;        // 0: bounded by bytes only
  cache::EvictionPolicy policy = cache::EvictionPolicy::kWTinyLfu;
  bool redis = false;  // a second level in the gateway's `redis:`, shared by instances
  // One L1 per worker (each with max_size / workers) instead of one shared by all: no
  // cross-core traffic on hits, at the price of each worker filling its own copy.
  bool per_worker = false;
  bool operator==(const CacheZoneConfig& o) const {
    return name == o.name && max_bytes == o.max_bytes && max_entries == o.max_entries &&
           policy == o.policy && redis == o.redis && per_worker == o.per_worker;
  }
};

// Redis keys of a zone's second level: PREFIX hc:ZONE:KEY (an entry), PREFIX hct:ZONE:TAG (the
// entry keys of a tag), and the channel purges are announced on.
std::string HttpCacheRedisKey(std::string_view prefix, std::string_view zone, std::string_view key);
std::string HttpCacheRedisTagKey(std::string_view prefix, std::string_view zone,
                                 std::string_view tag);
std::string HttpCacheChannel(std::string_view prefix);

// One zone: its L1 and its in-flight fetches. Thread-safe; lives across reloads while a
// snapshot uses it.
class HttpCacheZone {
 public:
  HttpCacheZone(const CacheZoneConfig& cfg, int workers);

  const CacheZoneConfig& config() const { return cfg_; }
  int workers() const { return workers_; }
  // The L1 a worker uses (the shared one unless per_worker).
  cache::L1Cache& l1(int worker) {
    return *l1s_[l1s_.size() == 1 ? 0 : static_cast<size_t>(worker) % l1s_.size()];
  }
  // Runs `fn` on every L1 of the zone (purges); returns the sum of what it returns.
  size_t ForEachL1(const std::function<size_t(cache::L1Cache&)>& fn);
  cache::L1Stats Stats() const;

  // A request waiting for another request's fetch of the same key.
  struct Waiter {
    Worker* worker;
    Exchange* exchange;
    uint64_t token;  // the exchange's wait token: a reused one does not take another's wake-up
  };
  // The fetches in flight: LeadOrWait (the leader answers itself), InFlight, Finish.
  cache::SingleFlight<Waiter> flights;

  // Counters for metrics (relaxed).
  std::atomic<uint64_t> hits{0}, misses{0}, stale{0}, bypass{0}, coalesced{0};
  std::atomic<uint64_t> stored{0}, not_stored{0}, too_big{0}, lock_timeouts{0}, purged{0};
  std::atomic<uint64_t> l2_hits{0}, l2_misses{0}, l2_errors{0}, l2_sets{0}, l2_purged{0};

 private:
  CacheZoneConfig cfg_;
  int workers_;
  std::vector<std::unique_ptr<cache::L1Cache>> l1s_;
};

// Zones by name across reloads (the contents survive a reload, as nginx's cache does).
class CacheZoneRegistry {
 public:
  std::shared_ptr<HttpCacheZone> Get(const CacheZoneConfig& cfg, int workers);
  void Prune();
  std::vector<std::shared_ptr<HttpCacheZone>> All() const;
  std::shared_ptr<HttpCacheZone> Find(std::string_view name) const;

 private:
  mutable Mutex mu_;
  std::map<std::string, std::shared_ptr<HttpCacheZone>, std::less<>> zones_ ABSL_GUARDED_BY(mu_);
};

}  // namespace bulwark::gateway
