// The running process: it wires the planes together and runs the control thread (signals, the
// admin API, reload, drain).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "admin/admin_server.h"
#include "app/config.h"
#include "app/state.h"
#include "core/etcd_lease.h"
#include "core/event_loop.h"
#include "core/host_pins.h"
#include "gateway/gateway.h"
#include "observe/metrics.h"
#include "observe/observer.h"
#include "pg/proxy.h"
#include "security/audit_log.h"
#include "vault/scheduler.h"

namespace bulwark {

// An App owns the planes and runs the control loop on the thread that calls Run(). Config is
// reloaded as a whole: each plane takes its part of the new config (Reload) beside the old one;
// requests in flight finish on the snapshot they started with.
class App {
 public:
  // `reload_source` re-reads the configuration on SIGHUP or POST /api/v1/reload.
  using ConfigSource = std::function<ConfigLoad()>;
  App(std::unique_ptr<Config> cfg, ConfigSource reload_source);
  ~App();

  // Binds every socket and starts the planes. Signals must already be blocked (BlockSignals).
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
  absl::Status StartLogs();
  absl::Status StartAdmin();
  // `user:`: after binding, run as that user (root only).
  absl::Status BecomeUser();
  void StartLease();
  // The pg proxy's configuration: cfg_->pg with its servers' host names as they resolve now.
  std::shared_ptr<const pg::PgConfig> PgWithAddresses() const;
  // The process's own routes (health, readiness, metrics, dashboard, reload, cluster), then each
  // plane's; a plane the config leaves out answers its paths with a 404 that says so.
  void RegisterAdminRoutes();
  void CollectMetrics(std::string* out) const;
  std::vector<std::string> ApplyReload();
  void ReopenLogs();
  // What STATUS= tells systemd: the generation and readiness.
  std::string StatusLine() const;
  void KickWatchdog();
  void BeginDrain();
  void OnTick();
  bool Ready(std::string* why) const;
  // The settings only a restart applies, the process's own and each plane's: put back in `next`
  // and named in the returned warnings.
  std::vector<std::string> KeepRestartSettings(Config* next) const;

  std::unique_ptr<Config> cfg_;
  ConfigSource source_;
  EventLoop loop_;
  observe::Registry registry_;
  std::unique_ptr<Resolver> resolver_;  // before the planes that watch names
  std::unique_ptr<HostPins> pins_;      // the names libcurl clients connect to (etcd, observe)
  std::unique_ptr<gateway::Gateway> gateway_;
  AdminToken admin_token_;
  std::unique_ptr<security::AuditLog> audit_;  // before admin_, which points at it
  std::unique_ptr<admin::AdminServer> admin_;
  std::unique_ptr<observe::Observer> observer_;
  std::unique_ptr<EtcdLease> lease_;       // before pg_: destroyed after it
  std::unique_ptr<NameWatcher> pg_names_;  // the host names pg servers are written with
  std::unique_ptr<pg::Proxy> pg_;
  std::unique_ptr<vault::Scheduler> vault_;
  std::unique_ptr<SignalHandler> signals_;
  uint64_t generation_ = 0;
  bool draining_ = false;
  int64_t drain_deadline_ms_ = 0;
  Timer tick_;
  Timer watchdog_;
  int64_t watchdog_ms_ = 0;
  observe::AtomicValue reloads_ok_;
  observe::AtomicValue reloads_failed_;
};

}  // namespace bulwark
