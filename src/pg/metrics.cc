// The pg proxy's metric families: the AlkaidSYS names (db_connections, db_query_duration_seconds)
// and bulwark_pg_*, as tables of (name, type, help, source) per label set.
#include "core/strings.h"
#include "pg/proxy.h"
#include "pg/proxy_internal.h"

namespace bulwark::pg {
namespace {

using observe::AppendHeader;
using observe::AppendSeries;

struct DatabaseFamily {
  const char* name;
  const char* type;
  const char* help;
  double (*value)(const DatabaseStats&);
};

const DatabaseFamily kDatabaseFamilies[] = {
    {"bulwark_pg_client_connections", "gauge", "Logged-in client connections.",
     [](const DatabaseStats& s) { return double(s.clients.load()); }},
    {"bulwark_pg_clients_waiting", "gauge", "Clients waiting for a server connection.",
     [](const DatabaseStats& s) { return double(s.clients_waiting.load()); }},
    {"bulwark_pg_transactions_total", "counter", "Transactions (ReadyForQuery idle after a query).",
     [](const DatabaseStats& s) { return double(s.transactions.Get()); }},
    {"bulwark_pg_queries_total", "counter", "Queries (simple Query and Execute).",
     [](const DatabaseStats& s) { return double(s.queries.Get()); }},
    {"bulwark_pg_scatter_queries_total", "counter",
     "Queries without a shard key run on every shard and merged.",
     [](const DatabaseStats& s) { return double(s.scatters.Get()); }},
    {"bulwark_pg_wait_seconds_total", "counter",
     "Time clients spent waiting for a server connection.",
     [](const DatabaseStats& s) { return double(s.wait_us.Get()) / 1e6; }},
    {"bulwark_pg_wait_timeouts_total", "counter", "Clients closed after query_wait_timeout.",
     [](const DatabaseStats& s) { return double(s.wait_timeouts.Get()); }},
};

struct PoolFamily {
  const char* name;
  const char* help;
  uint64_t (*value)(const PoolStats&);
};

const PoolFamily kPoolFamilies[] = {
    {"bulwark_pg_server_connects_total", "Server connections opened.",
     [](const PoolStats& s) { return s.connects.Get(); }},
    {"bulwark_pg_server_connect_failures_total",
     "Server connections that failed to connect or log in.",
     [](const PoolStats& s) { return s.connect_failures.Get(); }},
    {"bulwark_pg_server_received_bytes_total", "Bytes received from servers.",
     [](const PoolStats& s) { return s.bytes_in.Get(); }},
    {"bulwark_pg_server_sent_bytes_total", "Bytes sent to servers.",
     [](const PoolStats& s) { return s.bytes_out.Get(); }},
};

struct ProxyFamily {
  const char* name;
  const char* help;
  uint64_t (*value)(const ProxyImpl&);
};

const ProxyFamily kProxyFamilies[] = {
    {"bulwark_pg_clients_accepted_total", "Client connections accepted.",
     [](const ProxyImpl& p) { return p.clients_accepted.Get(); }},
    {"bulwark_pg_clients_refused_total", "Client connections refused (max_client_conn).",
     [](const ProxyImpl& p) { return p.clients_refused.Get(); }},
    {"bulwark_pg_login_failures_total",
     "Client logins refused (unknown database or user, wrong password).",
     [](const ProxyImpl& p) { return p.login_failures.Get(); }},
    {"bulwark_pg_protocol_errors_total", "Clients closed for a protocol violation.",
     [](const ProxyImpl& p) { return p.protocol_errors.Get(); }},
    {"bulwark_pg_cancel_requests_total", "Cancel requests received.",
     [](const ProxyImpl& p) { return p.cancels.Get(); }},
    {"bulwark_pg_statements_parsed_total",
     "Statements the read/write and shard router parsed (each Parse once).",
     [](const ProxyImpl& p) { return p.statements_parsed.Get(); }},
    {"bulwark_pg_statements_unparsed_total",
     "Statements longer than routing.classify_max_bytes: sent to the primary unparsed.",
     [](const ProxyImpl& p) { return p.statements_unparsed.Get(); }},
};

constexpr const char* kOps[] = {"select", "insert", "update", "delete", "copy", "other"};

void CollectQueryDurations(const ProxyImpl& p, std::string* out) {
  AppendHeader(out, "db_query_duration_seconds", "histogram",
               "Time from a query's arrival to its ReadyForQuery, by database and operation.");
  for (const auto& [db, st] : p.db_stats) {
    for (int op = 0; op < kOpCount; ++op) {
      const auto& h = st->ops[op];
      uint64_t count = h.count.Get();
      if (count == 0) continue;
      uint64_t cum = 0;
      for (int b = 0; b <= kQueryBucketCount; ++b) {
        std::string le = "+Inf";
        if (b < kQueryBucketCount) {
          cum += h.buckets[b].Get();
          le.clear();
          observe::AppendValue(&le, kQueryBuckets[b]);
        }
        AppendSeries(out, "db_query_duration_seconds_bucket",
                     {{"database", db}, {"operation", kOps[op]}, {"le", le}});
        StrAppend(out, b < kQueryBucketCount ? cum : count, "\n");
      }
      AppendSeries(out, "db_query_duration_seconds_sum",
                   {{"database", db}, {"operation", kOps[op]}});
      observe::AppendValue(out, static_cast<double>(h.sum_us.Get()) / 1e6);
      out->push_back('\n');
      AppendSeries(out, "db_query_duration_seconds_count",
                   {{"database", db}, {"operation", kOps[op]}});
      StrAppend(out, count, "\n");
    }
  }
}

void CollectDatabases(const ProxyImpl& p, std::string* out) {
  // The AlkaidSYS name: server connections per database.
  AppendHeader(out, "db_connections", "gauge",
               "Server connections per database, by state (active, idle, total).");
  std::map<std::string, std::array<int64_t, 3>> per_db;
  for (const auto& [k, ps] : p.pool_stats) {
    auto& a = per_db[ps->database];
    int64_t active = ps->active.load() + ps->used.load();
    int64_t idle = ps->idle.load();
    a[0] += active;
    a[1] += idle;
    a[2] += active + idle + ps->connecting.load();
  }
  for (const auto& [db, a] : per_db) {
    static const char* kStates[] = {"active", "idle", "total"};
    for (int i = 0; i < 3; ++i) {
      AppendSeries(out, "db_connections", {{"database", db}, {"state", kStates[i]}});
      StrAppend(out, a[i], "\n");
    }
  }
  CollectQueryDurations(p, out);
  for (const DatabaseFamily& f : kDatabaseFamilies) {
    AppendHeader(out, f.name, f.type, f.help);
    for (const auto& [db, st] : p.db_stats) {
      AppendSeries(out, f.name, {{"database", db}});
      observe::AppendValue(out, f.value(*st));
      out->push_back('\n');
    }
  }
  AppendHeader(out, "bulwark_pg_routed_total", "counter",
               "Transactions routed, by target (primary or replica).");
  for (const auto& [db, st] : p.db_stats) {
    AppendSeries(out, "bulwark_pg_routed_total", {{"database", db}, {"target", "primary"}});
    StrAppend(out, st->routed_primary.Get(), "\n");
    AppendSeries(out, "bulwark_pg_routed_total", {{"database", db}, {"target", "replica"}});
    StrAppend(out, st->routed_replica.Get(), "\n");
  }
}

void CollectPools(const ProxyImpl& p, std::string* out) {
  AppendHeader(out, "bulwark_pg_server_connections", "gauge",
               "Server connections per pool, by state.");
  for (const auto& [k, ps] : p.pool_stats) {
    static const char* kStates[] = {"active", "idle", "connecting", "used"};
    int64_t v[] = {ps->active.load(), ps->idle.load(), ps->connecting.load(), ps->used.load()};
    for (int i = 0; i < 4; ++i) {
      AppendSeries(out, "bulwark_pg_server_connections",
                   {{"database", ps->database},
                    {"user", ps->user},
                    {"server", ps->server},
                    {"state", kStates[i]}});
      StrAppend(out, v[i], "\n");
    }
  }
  for (const PoolFamily& f : kPoolFamilies) {
    AppendHeader(out, f.name, "counter", f.help);
    for (const auto& [k, ps] : p.pool_stats) {
      AppendSeries(out, f.name,
                   {{"database", ps->database}, {"user", ps->user}, {"server", ps->server}});
      StrAppend(out, f.value(*ps), "\n");
    }
  }
}

void CollectServers(const ProxyImpl& p, std::string* out) {
  if (p.checker) {
    AppendHeader(out, "bulwark_pg_failovers_total", "counter",
                 "Automatic failovers, by result: ok, failed (promotion did not finish), refused "
                 "(no replica within maximum_lag_on_failover, or the fence failed); the last "
                 "100 are on /api/v1/pg.");
    const char* names[] = {"ok", "failed", "refused"};
    for (int r : {HealthChecker::kOk, HealthChecker::kFailed, HealthChecker::kRefused}) {
      StrAppend(out, "bulwark_pg_failovers_total{result=\"", names[r], "\"} ",
                p.checker->failovers(r), "\n");
    }
  }
  AppendHeader(out, "bulwark_pg_server_up", "gauge",
               "1 when the health checker reaches the server, by server and role.");
  for (const auto& [name, h] : p.health) {
    int r = h->role.load();
    AppendSeries(out, "bulwark_pg_server_up",
                 {{"server", name},
                  {"role", r == 1   ? "primary"
                           : r == 2 ? "replica"
                                    : "unknown"}});
    out->append(h->up.load() ? "1\n" : "0\n");
  }
  AppendHeader(out, "bulwark_pg_replication_lag_bytes", "gauge",
               "Replay lag of a replica behind the primary, in bytes of WAL.");
  for (const auto& [name, h] : p.health) {
    AppendSeries(out, "bulwark_pg_replication_lag_bytes", {{"server", name}});
    StrAppend(out, h->lag_bytes.load(), "\n");
  }
  AppendHeader(out, "bulwark_pg_replication_lag_seconds", "gauge",
               "Replay lag of a replica, in seconds (0 when it has replayed all it received).");
  for (const auto& [name, h] : p.health) {
    AppendSeries(out, "bulwark_pg_replication_lag_seconds", {{"server", name}});
    observe::AppendValue(out, static_cast<double>(h->lag_ms.load()) / 1000.0);
    out->push_back('\n');
  }
}

}  // namespace

void Proxy::CollectMetrics(std::string* out) const {
  const ProxyImpl& p = *impl_;
  MutexLock l(&p.stats_mu);
  CollectDatabases(p, out);
  CollectPools(p, out);
  for (const ProxyFamily& f : kProxyFamilies) {
    AppendHeader(out, f.name, "counter", f.help);
    StrAppend(out, f.name, " ", f.value(p), "\n");
  }
  // Client TLS, counted as the gateway counts its listeners' (client_tls_* need a restart, so
  // the server is the same for the process's life).
  if (p.tls != nullptr) {
    AppendHeader(out, "bulwark_pg_tls_handshakes_total", "counter",
                 "Client TLS handshakes completed, by protocol.");
    for (const char* proto : TlsServer::kProtocols) {
      AppendSeries(out, "bulwark_pg_tls_handshakes_total", {{"protocol", proto}});
      StrAppend(out, p.tls->handshakes(proto), "\n");
    }
    AppendHeader(out, "bulwark_pg_tls_handshake_errors_total", "counter",
                 "Client TLS handshakes that failed or were abandoned.");
    StrAppend(out, "bulwark_pg_tls_handshake_errors_total ", p.tls->failures(), "\n");
  }
  CollectServers(p, out);
}

}  // namespace bulwark::pg
