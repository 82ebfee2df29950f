// The gateway plane's owner: the snapshot, the registries that outlive it, the workers, the
// active health checks, the bans and their Redis synchronisation, and the plane's metrics and
// admin routes. The same shape as pg::Proxy: Start, Reload, Drain, Stop/Join, CollectMetrics.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "admin/admin_server.h"
#include "core/event_loop.h"
#include "core/host_pins.h"
#include "core/names.h"
#include "core/redis_client.h"
#include "core/redis_link.h"
#include "core/redis_sentinel.h"
#include "core/resolver.h"
#include "gateway/access_log.h"
#include "gateway/bans.h"
#include "gateway/config.h"
#include "gateway/health_checker.h"
#include "gateway/snapshot.h"
#include "gateway/worker.h"
#include "observe/metrics.h"

namespace bulwark::gateway {

// Everything but Start's workers runs on the control thread that owns `loop`.
class Gateway {
 public:
  // `workers`: worker threads (fixed until a restart). `reserved_descriptors`: what the rest of
  // the process keeps out of the gateway's share of the open files limit.
  // `resolver` (may be null: host names then never resolve) keeps servers' host names current.
  Gateway(EventLoop* loop, std::shared_ptr<const GatewayConfig> cfg, int workers,
          int64_t reserved_descriptors, Resolver* resolver = nullptr);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Opens the access log, binds every listener and starts the workers and health checks.
  absl::Status Start(uint64_t generation);
  // Builds a snapshot of `cfg` beside the running one and hands it to the workers; requests in
  // flight finish on theirs. On an error nothing changes.
  absl::Status Reload(std::shared_ptr<const GatewayConfig> cfg, uint64_t generation);
  // The settings that only a restart applies: each one `next` changes is put back to the
  // running value and named in the returned warnings.
  static std::vector<std::string> KeepRestartSettings(const GatewayConfig& running,
                                                      GatewayConfig* next);
  // Stop accepting; finish in-flight requests (finished() turns true), then the workers exit.
  void Drain();
  void Stop();
  void Join();
  bool finished() const;
  // Once a second on the control thread: rotates the access log when it is full.
  void Tick();
  // Opens the access log by its path again (SIGUSR1, after logrotate moved it).
  void ReopenLogs();

  // Not ready while a routed upstream has no usable server; `why` names it.
  bool Ready(std::string* why) const;
  void CollectMetrics(std::string* out) const;
  // The gateway's API: upstreams and their servers (drain, enable), bans, cache zones and
  // purges, rate-limit zones.
  void RegisterAdminRoutes(admin::AdminServer& admin);
  std::string UpstreamsJson() const;

  const GatewayConfig& config() const { return *cfg_; }

 private:
  // Bans shared through Redis: a subscriber for other instances' bans and lifts, and a command
  // connection to load the current bans after every (re)connect and to publish the admin's.
  void StartRedisSync();
  // How the Redis links find their servers (names, Sentinel's master), before the workers start.
  void StartRedisDiscovery(WorkerShared* shared);
  // Writes this instance's bans in force to Redis again (after a reconnection or a failed write).
  void ResyncBans();
  // Raises the soft open files limit and works out the gateway's descriptor budget and the
  // default http.max_connections.
  void SetDescriptorBudget(WorkerShared* shared);
  void LoadSharedBans();
  void OnBanMessage(std::string_view payload, int64_t ttl_ms);
  void PublishBan(std::string_view op, const std::string& key, std::string_view reason, int64_t ms);
  // HTTP cache purges: applied to this instance's zones, then to their Redis level (SCAN, never
  // KEYS) and announced to the other instances.
  size_t PurgeLocal(const std::string& zone, const std::string& op, const std::string& arg);
  void PurgeShared(const std::string& zone, const std::string& op, const std::string& arg);
  void ScanDelete(std::string match, std::string cursor, std::function<void()> done);
  void ScanDeleteNode(std::shared_ptr<std::vector<RedisClient*>> masters, size_t node,
                      std::string match, std::string cursor, std::function<void()> done);
  void OnCachePurgeMessage(std::string_view payload);
  void CollectUpstreams(std::string* out, int64_t now) const;
  // Watches the host names `cfg`'s servers are written with.
  void WatchNames(const GatewayConfig& cfg);
  // A watched name's addresses changed: a new snapshot of the same config.
  void OnNamesChanged();
  // A snapshot of `cfg` beside the running one (if any), its names as they resolve now.
  absl::StatusOr<std::shared_ptr<const Snapshot>> BuildSnapshot(
      std::shared_ptr<const GatewayConfig> cfg, uint64_t generation);
  // Hands `snap` to the workers and the health checks.
  void Apply(std::shared_ptr<const Snapshot> snap);
  void CollectCaches(std::string* out) const;
  void CollectSecurity(std::string* out, int64_t now) const;

  EventLoop* loop_;
  NameWatcher names_;
  std::shared_ptr<const GatewayConfig> cfg_;
  const int worker_count_;
  const int64_t reserved_descriptors_;
  observe::Interner endpoints_;
  ServerRegistry servers_;
  ZoneRegistry zones_;
  CacheZoneRegistry cache_zones_;
  std::unique_ptr<BanTable> bans_;
  std::string instance_id_;
  Resolver* const resolver_;
  std::shared_ptr<HostPins> redis_names_;  // null without a resolver
  RedisLookup redis_lookup_;
  std::unique_ptr<SentinelResolver> sentinel_;
  std::function<std::optional<SocketAddress>()> redis_master_;
  std::unique_ptr<RedisLink> redis_cmd_;
  std::unique_ptr<RedisClient> redis_sub_;
  std::atomic<uint64_t> bans_resynced_{0};  // this instance's bans written again
  std::unique_ptr<AccessLog> access_log_;
  std::shared_ptr<const Snapshot> snapshot_;
  DescriptorBudget descriptors_;  // declared before the workers that point at it
  int auto_max_connections_ = 0;  // http.max_connections when the config says 0
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<HealthChecker> health_;
};

}  // namespace bulwark::gateway
