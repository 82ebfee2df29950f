// The running process: workers, the control thread (signals, admin, health checks, reload).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "admin/admin_server.h"
#include "app/config.h"
#include "app/state.h"
#include "core/etcd_lease.h"
#include "core/event_loop.h"
#include "core/redis_client.h"
#include "gateway/access_log.h"
#include "gateway/health_checker.h"
#include "gateway/upstream.h"
#include "gateway/worker.h"
#include "observe/metrics.h"
#include "observe/observer.h"
#include "pg/proxy.h"
#include "security/audit_log.h"
#include "vault/scheduler.h"

namespace bulwark {

// A Server owns the workers and runs the control loop on the thread that calls Run(). Config is
// reloaded as a whole: a new snapshot is built beside the old one and handed to the workers;
// requests in flight finish on the snapshot they started with.
class Server {
 public:
  // `reload_source` re-reads the configuration on SIGHUP or POST /api/v1/reload.
  using ConfigSource = std::function<ConfigLoad()>;
  Server(std::unique_ptr<Config> cfg, ConfigSource reload_source);
  ~Server();

  // Binds every socket and starts the workers. Signals must already be blocked (see BlockSignals).
  absl::Status Start();
  // Runs the control loop until SIGTERM/SIGINT (or Shutdown()), drains, and returns the exit code.
  int Run();
  // Thread-safe: begin a graceful shutdown.
  void Shutdown();

  // Control thread: applies a freshly loaded config. Returns the errors (empty on success).
  std::vector<std::string> Reload();

  EventLoop& control_loop() { return loop_; }
  admin::AdminServer* admin() { return admin_.get(); }
  pg::Proxy* pg() { return pg_.get(); }
  // The admin API token in force (configured or generated; empty without an admin listener).
  const AdminToken& admin_token() const { return admin_token_; }
  const Config& config() const { return *cfg_; }
  uint64_t generation() const { return generation_; }

  // Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and the threads it starts later), so
  // the control loop receives them through a signalfd. Ignores SIGPIPE.
  static void BlockSignals();

 private:
  class SignalHandler;
  void RegisterAdminRoutes();
  void RegisterObserveRoutes();
  void RegisterCollectors();
  void BeginDrain();
  void CollectGateway(std::string* out);
  std::string UpstreamsJson();
  bool Ready(std::string* why);
  // Bans shared through Redis: a subscriber for other instances' bans and lifts, and a command
  // connection to load the current bans after every (re)connect and to publish the admin's.
  void StartBanSync();
  // Raises the soft open files limit and works out the gateway's descriptor budget and the
  // default http.max_connections.
  void SetDescriptorBudget(int workers, gateway::WorkerShared* shared);
  void LoadSharedBans();
  // HTTP cache purges: applied to this instance's zones, then to their Redis level (SCAN, never
  // KEYS) and announced to the other instances.
  size_t PurgeLocal(const std::string& zone, const std::string& op, const std::string& arg);
  void PurgeShared(const std::string& zone, const std::string& op, const std::string& arg);
  void ScanDelete(std::string match, std::string cursor, std::function<void()> done);
  void OnCachePurgeMessage(std::string_view payload);
  void OnBanMessage(std::string_view payload, int64_t ttl_ms);
  void PublishBan(std::string_view op, const std::string& key, std::string_view reason,
                  int64_t ms);

  std::unique_ptr<Config> cfg_;
  ConfigSource source_;
  EventLoop loop_;
  observe::Registry registry_;
  observe::Interner endpoints_;
  gateway::ServerRegistry servers_;
  gateway::ZoneRegistry zones_;
  gateway::CacheZoneRegistry cache_zones_;
  std::unique_ptr<gateway::BanTable> bans_;
  std::string instance_id_;
  std::unique_ptr<RedisClient> redis_cmd_;
  std::unique_ptr<RedisClient> redis_sub_;
  std::unique_ptr<gateway::AccessLog> access_log_;
  std::shared_ptr<const gateway::Snapshot> snapshot_;
  gateway::DescriptorBudget descriptors_;  // declared before the workers that point at it
  int auto_max_connections_ = 0;           // http.max_connections when the config says 0
  std::vector<std::unique_ptr<gateway::Worker>> workers_;

  std::unique_ptr<gateway::HealthChecker> health_;
  AdminToken admin_token_;
  std::unique_ptr<security::AuditLog> audit_;  // before admin_, which points at it
  std::unique_ptr<admin::AdminServer> admin_;
  std::unique_ptr<observe::Observer> observer_;
  std::unique_ptr<EtcdLease> lease_;  // before pg_: destroyed after it
  std::unique_ptr<pg::Proxy> pg_;
  std::unique_ptr<vault::Scheduler> vault_;
  std::unique_ptr<SignalHandler> signals_;
  uint64_t generation_ = 0;
  bool draining_ = false;
  int64_t drain_deadline_ms_ = 0;
  Timer tick_;
  observe::AtomicValue reloads_ok_;
  observe::AtomicValue reloads_failed_;
  int64_t start_wall_s_ = 0;
};

}  // namespace bulwark
