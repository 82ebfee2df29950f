#include "gateway/http_cache.h"

#include <algorithm>

#include "core/log.h"
#include "core/strings.h"

namespace bulwark::gateway {

std::string HttpCacheRedisKey(std::string_view prefix, std::string_view zone,
                              std::string_view key) {
  return StrCat(prefix, "hc:", zone, ":", key);
}

std::string HttpCacheRedisTagKey(std::string_view prefix, std::string_view zone,
                                 std::string_view tag) {
  return StrCat(prefix, "hct:", zone, ":", tag);
}

std::string HttpCacheChannel(std::string_view prefix) { return StrCat(prefix, "hc:purge"); }

HttpCacheZone::HttpCacheZone(const CacheZoneConfig& cfg, int workers)
    : cfg_(cfg), workers_(std::max(workers, 1)) {
  int n = cfg.per_worker ? workers_ : 1;
  cache::L1Options o;
  o.policy = cfg.policy;
  o.max_bytes = cfg.max_bytes / n;
  o.max_entries = cfg.max_entries > 0 ? std::max<int64_t>(1, cfg.max_entries / n) : 0;
  // Each shard holds 1/16 of the bytes; fewer shards for small zones so large objects fit. A
  // per-worker L1 is touched by one thread only: one shard, the exact policy.
  o.shards = cfg.per_worker ? 1 : o.max_bytes >= (int64_t{64} << 20) ? 16 : 4;
  for (int i = 0; i < n; ++i) l1s_.push_back(std::make_unique<cache::L1Cache>(o));
}

size_t HttpCacheZone::ForEachL1(const std::function<size_t(cache::L1Cache&)>& fn) {
  size_t total = 0;
  for (auto& l : l1s_) total += fn(*l);
  return total;
}

cache::L1Stats HttpCacheZone::Stats() const {
  cache::L1Stats t;
  for (const auto& l : l1s_) t += l->Stats();
  return t;
}

std::shared_ptr<HttpCacheZone> CacheZoneRegistry::Get(const CacheZoneConfig& cfg, int workers) {
  MutexLock lock(&mu_);
  auto it = zones_.find(cfg.name);
  if (it != zones_.end()) {
    if (it->second->config() == cfg && it->second->workers() == workers) return it->second;
    LogInfo("cache zone \"", cfg.name, "\" changed size or policy: starting it empty");
  }
  auto z = std::make_shared<HttpCacheZone>(cfg, workers);
  zones_[cfg.name] = z;
  return z;
}

void CacheZoneRegistry::Prune() {
  MutexLock lock(&mu_);
  for (auto it = zones_.begin(); it != zones_.end();) {
    it = it->second.use_count() == 1 ? zones_.erase(it) : std::next(it);
  }
}

std::vector<std::shared_ptr<HttpCacheZone>> CacheZoneRegistry::All() const {
  MutexLock lock(&mu_);
  std::vector<std::shared_ptr<HttpCacheZone>> out;
  for (const auto& [name, z] : zones_) out.push_back(z);
  return out;
}

std::shared_ptr<HttpCacheZone> CacheZoneRegistry::Find(std::string_view name) const {
  MutexLock lock(&mu_);
  auto it = zones_.find(name);
  return it == zones_.end() ? nullptr : it->second;
}

}  // namespace bulwark::gateway
