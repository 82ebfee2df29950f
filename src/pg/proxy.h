// The PostgreSQL proxy: a listener speaking protocol v3 to clients, pools of server connections
// per (database, user, server) with PgBouncer's session and transaction modes, and the router
// that picks the primary or a replica per transaction.
//
// It runs on one thread with its own event loop, as PgBouncer does: pools are shared by every
// client, so one thread owns them and nothing on the query path takes a lock. The control thread
// talks to it through Post (reload, status) and reads counters (metrics) without stopping it.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "admin/admin_server.h"
#include "pg/config.h"

namespace bulwark::pg {

class ProxyImpl;
}  // namespace bulwark::pg

namespace bulwark {
class EtcdLease;
}  // namespace bulwark

namespace bulwark::pg {

// Per-server state from the health checker, shared by the checker (writer) and the proxy
// (reader). Atomics only: read on the routing path without locks.
struct ServerHealth {
  std::atomic<int> role{0};         // 0 unknown, 1 primary, 2 replica (pg_is_in_recovery)
  std::atomic<bool> up{true};       // false after `fails` failed checks, until one succeeds
  std::atomic<int64_t> banned_until_ms{0};
  std::atomic<int64_t> lag_bytes{0};
  std::atomic<int64_t> lag_ms{0};
  std::atomic<int64_t> latency_us{0};
  std::atomic<int64_t> checks{0};
  std::atomic<int64_t> failures{0};
  std::atomic<int> consecutive_failures{0};
  std::atomic<bool> demoted{false};  // an old primary after failover: no writes until re-added
  std::atomic<int64_t> lsn{-1};      // current (primary) or replayed (replica) WAL position
  std::atomic<int64_t> first_failure_ms{0};  // monotonic time of the first of the failed checks
};

class Proxy {
 public:
  explicit Proxy(std::shared_ptr<const PgConfig> cfg);
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  // With several instances: only the holder of this lease fails over (set before Start).
  void set_lease(const EtcdLease* lease);
  // Binds the listener and starts the proxy thread.
  absl::Status Start();
  // Thread-safe: new clients and new server connections use `cfg`; existing ones keep going.
  void Reload(std::shared_ptr<const PgConfig> cfg);
  // The settings that only a restart applies (enabled, listen, client_tls): each one `next`
  // changes is put back to the running value and named in the returned warnings.
  static std::vector<std::string> KeepRestartSettings(const PgConfig& running, PgConfig* next);
  // Thread-safe: stop accepting; clients finish (session: until they leave; transaction: their
  // current transaction), then the thread exits. Stop() ends at once.
  void Drain();
  void Stop();
  void Join();
  bool finished() const;
  int port() const;

  // Thread-safe (asks the proxy thread and waits up to a second): pools, clients and servers.
  std::string StatusJson();
  // Thread-safe: Prometheus text for db_connections, db_query_duration_seconds, bulwark_pg_*.
  void CollectMetrics(std::string* out) const;
  // Thread-safe: an operator takes a demoted old primary back (after making it a replica of
  // the new primary, or deciding it is the primary again). False when no server has that name.
  bool Readd(const std::string& server);
  // GET /api/v1/pg (StatusJson) and POST /api/v1/pg/readd?server=.
  void RegisterAdminRoutes(admin::AdminServer& admin);

 private:
  std::unique_ptr<ProxyImpl> impl_;
};

}  // namespace bulwark::pg
