#include "gateway/http_cache.h"

#include "core/log.h"

namespace bulwark::gateway {

HttpCacheZone::HttpCacheZone(const CacheZoneConfig& cfg) : cfg_(cfg) {
  cache::L1Options o;
  o.policy = cfg.policy;
  o.max_bytes = cfg.max_bytes;
  o.max_entries = cfg.max_entries;
  // Each shard holds 1/16 of the bytes; fewer shards for small zones so large objects fit.
  o.shards = cfg.max_bytes >= (int64_t{64} << 20) ? 16 : 4;
  l1_ = std::make_unique<cache::L1Cache>(o);
}

bool HttpCacheZone::JoinFlight(const std::string& key, const Waiter* waiter) {
  MutexLock lock(&mu_);
  auto it = flights_.find(key);
  if (it == flights_.end()) {
    flights_.emplace(key, std::vector<Waiter>{});
    return true;
  }
  if (waiter != nullptr) it->second.push_back(*waiter);
  return false;
}

bool HttpCacheZone::InFlight(const std::string& key) const {
  MutexLock lock(&mu_);
  return flights_.count(key) > 0;
}

std::vector<HttpCacheZone::Waiter> HttpCacheZone::FinishFlight(const std::string& key) {
  MutexLock lock(&mu_);
  auto it = flights_.find(key);
  if (it == flights_.end()) return {};
  std::vector<Waiter> w = std::move(it->second);
  flights_.erase(it);
  return w;
}

std::shared_ptr<HttpCacheZone> CacheZoneRegistry::Get(const CacheZoneConfig& cfg) {
  MutexLock lock(&mu_);
  auto it = zones_.find(cfg.name);
  if (it != zones_.end()) {
    if (it->second->config() == cfg) return it->second;
    LogInfo("cache zone \"", cfg.name, "\" changed size or policy: starting it empty");
  }
  auto z = std::make_shared<HttpCacheZone>(cfg);
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
