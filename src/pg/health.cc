#include "pg/health.h"

#include <libpq-fe.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "core/event_loop.h"
#include "core/log.h"
#include "core/process.h"
#include "core/strings.h"
#include "pg/protocol.h"

namespace bulwark::pg {

int64_t ParseLsn(std::string_view text) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 >= text.size()) return -1;
  auto hex = [](std::string_view s, uint64_t* out) {
    uint64_t v = 0;
    if (s.size() > 8) return false;
    for (char c : s) {
      int d = HexDigitValue(c);
      if (d < 0) return false;
      v = v * 16 + static_cast<uint64_t>(d);
    }
    *out = v;
    return true;
  };
  uint64_t hi = 0, lo = 0;
  if (!hex(text.substr(0, slash), &hi) || !hex(text.substr(slash + 1), &lo)) return -1;
  return static_cast<int64_t>((hi << 32) | lo);
}

namespace {

// The authentication the server asks of `user` first (PostgreSQL's AuthenticationRequest code:
// 0 none, 3 cleartext, 5 md5, 10 SASL), or -1 when it cannot be learnt (libpq then reports
// the problem itself). libpq 15 has no require_auth, so the health checker asks first and does
// not hand libpq a password for a method pg.server_auth_methods refuses.
int FirstAuthRequest(const ServerConfig& s, const std::string& user, const std::string& db,
                     int timeout_ms) {
  int fd = -1;
  if (!s.unix_path.empty()) {
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (fd < 0 || s.unix_path.size() >= sizeof(a.sun_path)) {
      if (fd >= 0) close(fd);
      return -1;
    }
    std::memcpy(a.sun_path, s.unix_path.c_str(), s.unix_path.size() + 1);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      close(fd);
      return -1;
    }
  } else {
    fd = socket(s.address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, reinterpret_cast<const sockaddr*>(&s.address.storage), s.address.len) != 0) {
      close(fd);
      return -1;
    }
  }
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string out;
  AppendStartup(&out, {{"user", user}, {"database", db}});
  int code = -1;
  if (write(fd, out.data(), out.size()) == static_cast<ssize_t>(out.size())) {
    char buf[512];
    std::string in;
    while (in.size() < 9) {
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
    }
    if (in.size() >= 9 && in[0] == 'R') {
      code = (static_cast<unsigned char>(in[5]) << 24) | (static_cast<unsigned char>(in[6]) << 16) |
             (static_cast<unsigned char>(in[7]) << 8) | static_cast<unsigned char>(in[8]);
    }
  }
  close(fd);
  return code;
}

// Why `code` may not be answered under `allowed` (kServerAuth* bits), or "".
std::string RefusedAuth(int code, unsigned allowed) {
  if (code == 3 && !(allowed & kServerAuthPassword))
    return "the server asks for a cleartext password; pg.server_auth_methods does not allow "
           "password (libpq's require_auth)";
  if (code == 5 && !(allowed & kServerAuthMd5))
    return "the server asks for md5; pg.server_auth_methods does not allow md5";
  if (code == 10 && !(allowed & kServerAuthScram))
    return "the server asks for SCRAM-SHA-256; pg.server_auth_methods does not allow "
           "scram-sha-256";
  if (code == 0 && !(allowed & kServerAuthNone))
    return "the server asks for no authentication; pg.server_auth_methods does not allow none";
  return "";
}

}  // namespace

struct HealthChecker::Target {
  std::string name, conninfo;
  PGconn* conn = nullptr;
  ~Target() {
    if (conn != nullptr) PQfinish(conn);
  }
};

namespace {

std::string ConnValue(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

// The login the health checker uses for a database's servers.
void Credentials(const PgConfig& cfg, const DatabaseConfig& db, std::string* user,
                 std::string* password) {
  if (!cfg.health.user.empty()) {
    *user = cfg.health.user;
    *password = cfg.health.password;
    return;
  }
  if (!db.user.empty()) {
    *user = db.user;
    *password = db.password;
    return;
  }
  for (const UserConfig& u : cfg.users) {
    bool hashed = StartsWith(u.password, "SCRAM-SHA-256$") ||
                  (StartsWith(u.password, "md5") && u.password.size() == 35);
    if (!hashed) {
      *user = u.name;
      *password = u.password;
      return;
    }
  }
}

// The libpq connection string for server `s` of database `db`.
std::string ConnInfo(const PgConfig& cfg, const DatabaseConfig& db, const ServerConfig& s,
                     const std::string& user, const std::string& password) {
  int timeout_s = static_cast<int>(std::max<int64_t>(1, (cfg.health.timeout_ms + 999) / 1000));
  std::string host, port;
  if (!s.unix_path.empty()) {
    host = s.unix_path.substr(0, s.unix_path.rfind("/.s.PGSQL."));
    port = s.unix_path.substr(s.unix_path.rfind('.') + 1);
  } else {
    host = s.address.IpString();
    port = std::to_string(s.address.port());
  }
  std::string out =
      StrCat(" port=", port, " dbname=", ConnValue(db.dbname), " user=", ConnValue(user),
             " password=", ConnValue(password), " connect_timeout=", timeout_s,
             " application_name='bulwark health check'",
             " options='-c statement_timeout=", cfg.health.timeout_ms, "'");
  // The same TLS as the proxy's own server connections (libpq's sslmode is PgBouncer's).
  const std::string& mode = cfg.server_tls_sslmode;
  StrAppend(&out, " sslmode=", s.unix_path.empty() ? mode : "disable");
  if (s.unix_path.empty() && mode != "disable") {
    const TlsClientSettings& t = cfg.server_tls;
    if (t.verify) {
      // Unset: the system's store, as the proxy's connections use (libpq would look in
      // ~/.postgresql/root.crt).
      StrAppend(&out, " sslrootcert=",
                ConnValue(!t.ca_file.empty() ? t.ca_file : X509_get_default_cert_file()));
    }
    if (!t.cert_file.empty())
      StrAppend(&out, " sslcert=", ConnValue(t.cert_file), " sslkey=", ConnValue(t.key_file));
    StrAppend(&out, " ssl_min_protocol_version=", t.min_version == 0x0304 ? "TLSv1.3" : "TLSv1.2",
              " ssl_max_protocol_version=", t.max_version == 0x0303 ? "TLSv1.2" : "TLSv1.3");
  }
  // A server written by name is checked under that name (verify-full) at its resolved address.
  if (s.unix_path.empty() && !s.host.empty())
    return StrCat("host=", ConnValue(s.host), " hostaddr=", ConnValue(host), out);
  return StrCat("host=", ConnValue(host), out);
}

// Names all of whose overloads are immutable or stable: PostgreSQL refuses writes inside such
// functions, so a query calling only these can run on a replica. Bounded: a tenant creating
// functions by the million must not grow bulwark (names past the limit count as unknown, that
// is as writes).
constexpr char kFunctionsQuery[] =
    "SELECT proname FROM pg_catalog.pg_proc GROUP BY proname "
    "HAVING bool_and(provolatile <> 'v') LIMIT 200000";
constexpr int64_t kFunctionsRefreshMs = 60 * 1000;

constexpr char kQuery[] =
    "SELECT pg_is_in_recovery(), "
    "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text "
    "ELSE pg_current_wal_lsn()::text END, "
    "CASE WHEN NOT pg_is_in_recovery() "
    "OR pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0 "
    "ELSE COALESCE(floor(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) * 1000), 0) "
    "END";

}  // namespace

const char* ReadOnlyFunctionsQuery() { return kFunctionsQuery; }

HealthChecker::HealthChecker(std::shared_ptr<const PgConfig> cfg,
                             std::map<std::string, std::shared_ptr<ServerHealth>> health)
    : cfg_(std::move(cfg)), health_(std::move(health)) {}

HealthChecker::~HealthChecker() { Stop(); }

void HealthChecker::Start() {
  thread_ = std::thread([this] { Run(); });
}

void HealthChecker::Stop() {
  {
    MutexLock l(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  if (thread_.joinable()) thread_.join();
}

void HealthChecker::Update(std::shared_ptr<const PgConfig> cfg,
                           std::map<std::string, std::shared_ptr<ServerHealth>> health) {
  MutexLock l(&mu_);
  cfg_ = std::move(cfg);
  health_ = std::move(health);
}

void HealthChecker::Run() {
  for (;;) {
    int64_t interval;
    {
      MutexLock l(&mu_);
      if (stop_) return;
      interval = cfg_->health.interval_ms;
    }
    Round();
    MutexLock l(&mu_);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(interval);
    while (!stop_ && cv_.WaitUntil(&mu_, deadline)) {
    }
    if (stop_) return;
  }
}

namespace {

// One server's answer to one round of checks.
struct Result {
  std::string name;
  ServerHealth* h;
  bool ok = false;
  bool recovery = false;
  int64_t lsn = -1, lag_ms = 0, latency_us = 0;
  std::string error;
};

// Another up, non-demoted primary sharing a database with server `name`, if any.
const std::string* OtherPrimary(const PgConfig& cfg, const std::vector<Result>& results,
                                const std::string& name) {
  for (const Result& o : results) {
    if (o.name == name || !o.ok || o.recovery || o.h->demoted.load()) continue;
    for (const auto& [dbname, db] : cfg.databases) {
      bool has_a = false, has_b = false;
      for (const ServerConfig& s : db.servers) {
        has_a = has_a || s.Name() == name;
        has_b = has_b || s.Name() == o.name;
      }
      if (has_a && has_b) return &o.name;
    }
  }
  return nullptr;
}

}  // namespace

void HealthChecker::Round() {
  std::shared_ptr<const PgConfig> cfg;
  std::map<std::string, std::shared_ptr<ServerHealth>> health;
  {
    MutexLock l(&mu_);
    cfg = cfg_;
    health = health_;
  }
  std::vector<Result> results;
  std::map<std::string, bool> seen;
  for (const auto& [dbname, db] : cfg->databases) {
    std::string user, password;
    Credentials(*cfg, db, &user, &password);
    for (const ServerConfig& s : db.servers) {
      if (seen[s.Name()]) continue;
      seen[s.Name()] = true;
      auto hit = health.find(s.Name());
      if (hit == health.end()) continue;
      std::string conninfo = ConnInfo(*cfg, db, s, user, password);
      auto& t = targets_[s.Name()];
      if (!t || t->conninfo != conninfo) {
        t = std::make_unique<Target>();
        t->name = s.Name();
        t->conninfo = conninfo;
      }
      Result r;
      r.name = s.Name();
      r.h = hit->second.get();
      int64_t started_ns = MonotonicNs();
      if (!s.resolved) r.error = StrCat("\"", s.host, "\" does not resolve (yet)");
      for (int attempt = 0; attempt < 2 && !r.ok && s.resolved; ++attempt) {
        if (t->conn == nullptr || PQstatus(t->conn) != CONNECTION_OK) {
          if (t->conn != nullptr) PQfinish(t->conn);
          t->conn = nullptr;
          r.error = RefusedAuth(
              FirstAuthRequest(s, user, db.dbname, static_cast<int>(cfg->health.timeout_ms)),
              cfg->server_auth_methods);
          if (!r.error.empty()) break;
          t->conn = PQconnectdb(t->conninfo.c_str());
          if (PQstatus(t->conn) != CONNECTION_OK) {
            r.error = Trim(PQerrorMessage(t->conn));
            PQfinish(t->conn);
            t->conn = nullptr;
            break;  // a fresh connection failed: the server is not there
          }
        }
        PGresult* res = PQexec(t->conn, kQuery);
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
          r.ok = true;
          r.recovery = PQgetvalue(res, 0, 0)[0] == 't';
          r.lsn = ParseLsn(PQgetvalue(res, 0, 1));
          r.lag_ms = std::strtoll(PQgetvalue(res, 0, 2), nullptr, 10);
        } else {
          r.error = Trim(PQerrorMessage(t->conn));
          // A connection broken since the last round: reconnect once before calling it down.
          PQfinish(t->conn);
          t->conn = nullptr;
        }
        PQclear(res);
      }
      r.latency_us = (MonotonicNs() - started_ns) / 1000;
      if (!r.ok) LogDebug("pg: health check of ", s.Name(), " failed: ", r.error);
      results.push_back(std::move(r));
    }
  }
  int64_t primary_lsn = -1;
  for (const Result& r : results) {
    if (r.ok && !r.recovery && !r.h->demoted.load()) primary_lsn = std::max(primary_lsn, r.lsn);
  }
  int64_t now = MonotonicMs();
  for (const Result& r : results) {
    ServerHealth& h = *r.h;
    h.checks.fetch_add(1, std::memory_order_relaxed);
    h.latency_us.store(r.latency_us, std::memory_order_relaxed);
    if (r.ok) {
      h.lsn.store(r.lsn, std::memory_order_relaxed);
      h.consecutive_failures.store(0, std::memory_order_relaxed);
      if (!h.up.load()) {
        LogInfo("pg: server ", r.name, " is up again");
        // Back as a primary while another server of its database is one: a failover happened
        // meanwhile (here, or on the instance holding the cluster lease). Two primaries mean
        // split brain; the one that was away gets nothing until an operator re-adds it.
        const std::string* other = r.recovery ? nullptr : OtherPrimary(*cfg, results, r.name);
        if (other != nullptr && !h.demoted.exchange(true)) {
          LogWarn("pg: server ", r.name, " came back as a primary while ", *other,
                  " is the primary of its database; it gets no queries until re-added "
                  "(POST /api/v1/pg/readd)");
        }
      }
      h.up.store(true, std::memory_order_relaxed);
      h.role.store(r.recovery ? 2 : 1, std::memory_order_relaxed);
      int64_t lag = r.recovery && primary_lsn >= 0 && r.lsn >= 0
                        ? std::max<int64_t>(0, primary_lsn - r.lsn)
                        : 0;
      h.lag_bytes.store(lag, std::memory_order_relaxed);
      h.lag_ms.store(r.recovery ? r.lag_ms : 0, std::memory_order_relaxed);
    } else {
      h.failures.fetch_add(1, std::memory_order_relaxed);
      int n = h.consecutive_failures.fetch_add(1, std::memory_order_relaxed) + 1;
      if (n == 1) h.first_failure_ms.store(now, std::memory_order_relaxed);
      if (n >= cfg->health.fails && h.up.load()) {
        h.up.store(false, std::memory_order_relaxed);
        h.banned_until_ms.store(now + cfg->health.ban_ms, std::memory_order_relaxed);
        LogWarn("pg: server ", r.name, " marked down after ", n, " failed checks: ", r.error);
      }
    }
  }
  MaybeFailover(*cfg, health);
  LoadFunctions(*cfg, health);
}

void HealthChecker::LoadFunctions(
    const PgConfig& cfg, const std::map<std::string, std::shared_ptr<ServerHealth>>& health) {
  if (!on_functions_) return;
  int64_t now = MonotonicMs();
  for (const auto& [dbname, db] : cfg.databases) {
    // Only a database split between servers asks; a shard map names other databases.
    if (db.servers.size() < 2 || db.sharding) continue;
    int64_t& loaded = functions_loaded_ms_[dbname];
    if (loaded != 0 && now - loaded < kFunctionsRefreshMs) continue;
    const ServerConfig* from = nullptr;  // the primary; else any server that is up
    for (const ServerConfig& s : db.servers) {
      auto it = health.find(s.Name());
      if (it == health.end() || !it->second->up.load() || it->second->demoted.load()) continue;
      if (it->second->role.load() == 1) {
        from = &s;
        break;
      }
      if (from == nullptr) from = &s;
    }
    if (from == nullptr) continue;
    std::string user, password;
    Credentials(cfg, db, &user, &password);
    std::string conninfo = ConnInfo(cfg, db, *from, user, password);
    PGconn* conn = nullptr;
    bool own = false;
    Target* t = TargetFor(from->Name());
    if (t != nullptr && t->conninfo == conninfo) {
      conn = t->conn;
    } else {
      // Another database on the same server: a connection of its own, after the same check of
      // what the server asks for (pg.server_auth_methods).
      std::string refused = RefusedAuth(
          FirstAuthRequest(*from, user, db.dbname, static_cast<int>(cfg.health.timeout_ms)),
          cfg.server_auth_methods);
      if (!refused.empty()) continue;
      conn = PQconnectdb(conninfo.c_str());
      own = true;
    }
    if (PQstatus(conn) == CONNECTION_OK) {
      PGresult* r = PQexec(conn, kFunctionsQuery);
      if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        auto names = std::make_shared<FunctionNames>();
        names->reserve(static_cast<size_t>(PQntuples(r)));
        for (int i = 0; i < PQntuples(r); ++i) names->insert(PQgetvalue(r, i, 0));
        loaded = now;
        on_functions_(dbname, std::move(names));
      } else {
        LogDebug("pg: reading the functions of ", dbname, " on ", from->Name(),
                 " failed: ", Trim(PQerrorMessage(conn)));
      }
      PQclear(r);
    }
    if (own) PQfinish(conn);
  }
}

HealthChecker::Target* HealthChecker::TargetFor(const std::string& name) {
  auto it = targets_.find(name);
  if (it == targets_.end() || it->second->conn == nullptr ||
      PQstatus(it->second->conn) != CONNECTION_OK) {
    return nullptr;
  }
  return it->second.get();
}

void HealthChecker::Record(const FailoverEvent& ev, FailoverResult result) {
  results_[result].fetch_add(1);
  MutexLock l(&mu_);
  events_.push_back(ev);
  if (events_.size() > 100) events_.erase(events_.begin());
}

std::vector<FailoverEvent> HealthChecker::Events() {
  MutexLock l(&mu_);
  return events_;
}

std::string ReplaceHostPort(std::string_view conninfo, const std::string& host,
                            const std::string& port) {
  // key = value pairs; values may be single-quoted with backslash escapes.
  std::vector<std::pair<std::string, std::string>> kv;
  size_t i = 0;
  auto skip = [&] {
    while (i < conninfo.size() && (conninfo[i] == ' ' || conninfo[i] == '\t')) ++i;
  };
  while (true) {
    skip();
    if (i >= conninfo.size()) break;
    size_t k = i;
    while (i < conninfo.size() && conninfo[i] != '=' && conninfo[i] != ' ') ++i;
    std::string key(conninfo.substr(k, i - k));
    skip();
    if (i < conninfo.size() && conninfo[i] == '=') ++i;
    skip();
    std::string value;
    if (i < conninfo.size() && conninfo[i] == '\'') {
      ++i;
      while (i < conninfo.size() && conninfo[i] != '\'') {
        if (conninfo[i] == '\\' && i + 1 < conninfo.size()) ++i;
        value.push_back(conninfo[i++]);
      }
      ++i;
    } else {
      while (i < conninfo.size() && conninfo[i] != ' ') value.push_back(conninfo[i++]);
    }
    if (key != "host" && key != "hostaddr" && key != "port") kv.emplace_back(key, value);
  }
  kv.insert(kv.begin(), {{"host", host}, {"port", port}});
  std::string out;
  for (const auto& [k, v] : kv) {
    if (!out.empty()) out.push_back(' ');
    out += k;
    out += '=';
    out += ConnValue(v);
  }
  return out;
}

// The primary of a database is down and no other server says it is primary: promote the
// replica holding the most WAL (a synchronous replica holds every
// acknowledged commit), point the others at it, and keep the old primary out of writes until
// an operator re-adds it. Runs on the checker's thread: every step is a blocking libpq call.
void HealthChecker::MaybeFailover(
    const PgConfig& cfg, const std::map<std::string, std::shared_ptr<ServerHealth>>& health) {
  if (!cfg.failover.enabled) return;
  if (leader_ && !leader_()) return;  // another instance holds the lease and decides
  std::map<std::string, bool> done;   // databases sharing servers fail over once
  for (const auto& [dbname, db] : cfg.databases) {
    const ServerConfig* down = nullptr;
    bool primary_up = false;
    for (const ServerConfig& s : db.servers) {
      auto it = health.find(s.Name());
      if (it == health.end() || it->second->demoted.load()) continue;
      const ServerHealth& h = *it->second;
      if (h.role.load() != 1) continue;
      if (h.up.load()) {
        primary_up = true;
      } else {
        down = &s;
      }
    }
    if (primary_up) refused_.erase(dbname);
    if (primary_up || down == nullptr || done[down->Name()]) continue;
    done[down->Name()] = true;
    const std::string& database = dbname;  // lambdas cannot capture structured bindings
    int64_t decided = MonotonicMs();
    FailoverEvent ev;
    ev.database = dbname;
    ev.old_primary = down->Name();
    ev.wall_ms = WallMicros() / 1000;
    ServerHealth& old_h = *health.at(down->Name());
    ev.detect_ms = decided - old_h.first_failure_ms.load();
    // The candidate: the up replica holding the most WAL, asked now rather than taken from the
    // last round (checks of different replicas are moments apart under load, and with the
    // primary gone the positions no longer move). Received WAL counts, not only replayed WAL:
    // promotion replays everything received first, and a synchronous replica acknowledges a
    // commit once it is flushed (synchronous_commit = on), before replaying it. Ties go to the
    // server listed first.
    const ServerConfig* best = nullptr;
    int64_t best_lsn = -1;
    for (const ServerConfig& s : db.servers) {
      if (&s == down) continue;
      auto it = health.find(s.Name());
      if (it == health.end()) continue;
      const ServerHealth& h = *it->second;
      if (!h.up.load() || h.role.load() != 2 || h.demoted.load()) continue;
      Target* ct = TargetFor(s.Name());
      if (ct == nullptr) continue;
      PGresult* r = PQexec(ct->conn,
                           "SELECT greatest(pg_last_wal_receive_lsn(), "
                           "pg_last_wal_replay_lsn())::text");
      int64_t lsn = -1;
      if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)) {
        lsn = ParseLsn(PQgetvalue(r, 0, 0));
      } else {
        LogWarn("pg: failover: cannot read the WAL position of ", s.Name(), ": ",
                Trim(PQerrorMessage(ct->conn)));
      }
      PQclear(r);
      if (lsn > best_lsn) {
        best_lsn = lsn;
        best = &s;
      }
    }
    auto finish = [&](std::string error) {
      ev.error = std::move(error);
      ev.total_ms = MonotonicMs() - old_h.first_failure_ms.load();
      if (ev.error.empty()) {
        LogWarn("pg: failover of ", database, ": ", ev.old_primary, " -> ", ev.new_primary,
                " (detected in ", ev.detect_ms, " ms, promoted in ", ev.promote_ms, " ms, total ",
                ev.total_ms, " ms; replicas repointed: ",
                ev.repointed.empty() ? "none" : Join(ev.repointed, ", "), ")");
      } else {
        LogError("pg: failover of ", database, " from ", ev.old_primary, " failed: ", ev.error);
      }
      Record(ev, ev.error.empty() ? kOk : kFailed);
    };
    // Not promoting, and trying again next round: recorded and logged once per reason while
    // the primary stays down.
    auto refuse = [&](std::string why) {
      std::string& last = refused_[database];
      if (last == why) return;
      last = why;
      ev.refused = true;
      ev.error = why;
      ev.total_ms = MonotonicMs() - old_h.first_failure_ms.load();
      LogError("pg: failover of ", database, " from ", ev.old_primary, " refused: ", why);
      Record(ev, kRefused);
    };
    if (best == nullptr) {
      finish("no replica is up to promote");
      continue;
    }
    // Patroni's maximum_lag_on_failover: a replica missing more than that much of what the old
    // primary last said it had written would lose those commits; better no failover (the old
    // primary may come back) than a silent loss.
    int64_t last_primary_lsn = old_h.lsn.load();
    if (best_lsn < 0) {
      refuse(StrCat("the WAL position of ", best->Name(), " is unknown; not promoted"));
      continue;
    }
    if (last_primary_lsn >= 0 &&
        last_primary_lsn - best_lsn > cfg.failover.maximum_lag_on_failover) {
      refuse(StrCat("the most advanced replica, ", best->Name(), ", is ",
                    last_primary_lsn - best_lsn, " bytes behind the last position seen on ",
                    ev.old_primary,
                    " (maximum_lag_on_failover: ", cfg.failover.maximum_lag_on_failover,
                    "); not promoted: bring the old primary back, or promote by hand and "
                    "re-add it"));
      continue;
    }
    Target* t = TargetFor(best->Name());
    if (t == nullptr) {
      finish(StrCat("no connection to ", best->Name()));
      continue;
    }
    if (!cfg.failover.fence_command.empty()) {
      // STONITH first, as Pacemaker: the old primary must not take writes once another is
      // promoted. No fence, no promotion.
      std::string output;
      absl::Status fenced = RunCapture(cfg.failover.fence_command,
                                       {{"BULWARK_OLD_PRIMARY", ev.old_primary},
                                        {"BULWARK_NEW_PRIMARY", best->Name()},
                                        {"BULWARK_DATABASE", database}},
                                       cfg.failover.fence_timeout_ms, &output);
      if (!fenced.ok()) {
        refuse(StrCat("fence_command failed: ", fenced.message(), "; not promoted"));
        continue;
      }
      ev.fenced = true;
      LogWarn("pg: failover of ", database, ": fenced ", ev.old_primary);
    }
    refused_.erase(database);
    ev.new_primary = best->Name();
    int64_t promote_start = MonotonicMs();
    std::string sql = StrCat("SELECT pg_promote(true, ",
                             std::max<int64_t>(1, cfg.failover.promote_timeout_ms / 1000), ")");
    // The health connection has a statement_timeout of health.timeout; promotion may take
    // longer.
    PQclear(PQexec(t->conn, "SET statement_timeout = 0"));
    PGresult* res = PQexec(t->conn, sql.c_str());
    bool promoted = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
                    PQgetvalue(res, 0, 0)[0] == 't';
    std::string err = promoted ? "" : std::string(Trim(PQerrorMessage(t->conn)));
    PQclear(res);
    PQclear(PQexec(t->conn, StrCat("SET statement_timeout = ", cfg.health.timeout_ms).c_str()));
    if (!promoted) {
      finish(StrCat("pg_promote() on ", best->Name(),
                    " did not finish: ", err.empty() ? "timed out" : err));
      continue;
    }
    ev.promote_ms = MonotonicMs() - promote_start;
    // From here on writes go to the new primary; the old one stays out until re-added.
    old_h.demoted.store(true);
    ServerHealth& new_h = *health.at(best->Name());
    new_h.role.store(1);
    new_h.lag_bytes.store(0);
    new_h.lag_ms.store(0);
    std::string host, port;
    if (!best->unix_path.empty()) {
      host = best->unix_path.substr(0, best->unix_path.rfind("/.s.PGSQL."));
      port = best->unix_path.substr(best->unix_path.rfind('.') + 1);
    } else {
      host = best->address.IpString();
      port = std::to_string(best->address.port());
    }
    for (const ServerConfig& s : db.servers) {
      if (&s == down || &s == best) continue;
      Target* rt = TargetFor(s.Name());
      if (rt == nullptr) continue;
      PGresult* ci = PQexec(rt->conn, "SHOW primary_conninfo");
      if (PQresultStatus(ci) != PGRES_TUPLES_OK || PQntuples(ci) != 1) {
        LogError("pg: failover: cannot read primary_conninfo on ", s.Name(), ": ",
                 Trim(PQerrorMessage(rt->conn)));
        PQclear(ci);
        continue;
      }
      std::string conninfo = ReplaceHostPort(PQgetvalue(ci, 0, 0), host, port);
      PQclear(ci);
      char* lit = PQescapeLiteral(rt->conn, conninfo.c_str(), conninfo.size());
      std::string alter = StrCat("ALTER SYSTEM SET primary_conninfo = ", lit ? lit : "''");
      if (lit) PQfreemem(lit);
      PGresult* a = PQexec(rt->conn, alter.c_str());
      bool ok = PQresultStatus(a) == PGRES_COMMAND_OK;
      PQclear(a);
      PGresult* rl = PQexec(rt->conn, "SELECT pg_reload_conf()");
      ok = ok && PQresultStatus(rl) == PGRES_TUPLES_OK;
      PQclear(rl);
      if (ok) {
        ev.repointed.push_back(s.Name());
      } else {
        LogError("pg: failover: could not point ", s.Name(), " at ", best->Name(), ": ",
                 Trim(PQerrorMessage(rt->conn)));
      }
    }
    finish("");
    if (on_change_) on_change_();
  }
}

}  // namespace bulwark::pg
