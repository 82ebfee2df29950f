// The `pg:` block: bulwark as a PostgreSQL proxy. Pool settings keep PgBouncer's names, units
// and defaults, so an operator's pgbouncer.ini translates key by key (docs/pg.md has the table).
//
//   pg:
//     listen: 127.0.0.1:6432
//     pool_mode: transaction        # session | transaction
//     default_pool_size: 20
//     auth_type: scram-sha-256      # scram-sha-256 | md5 | plain | trust
//     users:
//       - {name: app, password: secret}        # or "SCRAM-SHA-256$..." / "md5..."
//     databases:
//       app:
//         dbname: app
//         servers:
//           - {address: 127.0.0.1:5432, role: primary}
//           - {address: 127.0.0.1:5433, role: replica}
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config_reader.h"
#include "core/names.h"
#include "core/net.h"
#include "core/tls.h"
#include "pg/sharding.h"

namespace bulwark::pg {

enum class PoolMode { kSession, kTransaction };
enum class AuthType { kScram, kMd5, kPlain, kTrust };
enum class Role { kAuto, kPrimary, kReplica };

const char* PoolModeName(PoolMode m);
const char* RoleName(Role r);

struct UserConfig {
  std::string name;
  // As given: a plain password, a pg_authid SCRAM verifier or an "md5<hex>" hash.
  std::string password;
  std::optional<PoolMode> pool_mode;
  int pool_size = 0;  // 0: the database's or default_pool_size
  int max_user_connections = 0;
};

struct ServerConfig {
  // host:port, or a unix socket directory (starts with "/"). Once a host name's addresses are
  // known (ExpandServerNames), the label of one of them: "NAME:PORT", "NAME:PORT#2", ...
  std::string address_text;
  SocketAddress address;  // TCP only, valid when `resolved`
  std::string unix_path;  // ".../.s.PGSQL.<port>" for socket directories
  std::string host;       // a host name, or empty (an IP address or a socket directory)
  uint16_t port = 0;
  bool resolved = true;  // false: a host name with no address yet (the server is down)
  std::string where;     // "FILE:LINE:COL" of the address
  Role role = Role::kAuto;
  bool role_written = false;  // `role:` was given (else a lone server is taken as the primary)
  std::string Name() const { return address_text; }
};

struct DatabaseConfig {
  std::string name;    // what clients ask for
  std::string dbname;  // on the servers (default: name)
  // Fixed server login for every client of this database (PgBouncer's `user=`/`password=` in
  // [databases]); empty: each client's own user with the password bulwark knows for it.
  std::string user, password;
  std::vector<ServerConfig> servers;
  std::optional<PoolMode> pool_mode;
  int pool_size = 0;  // 0: default_pool_size
  int min_pool_size = -1;
  int reserve_pool = -1;
  int max_db_connections = 0;
  std::optional<ShardingConfig> sharding;
};

struct RoutingConfig {
  bool read_write_split = true;  // with replicas configured
  int64_t max_lag_bytes = 16 * 1024 * 1024;
  int64_t max_lag_ms = 10000;
  int64_t read_your_writes_ms = 0;  // after a write, the client's reads stay on the primary
  std::vector<std::string> volatile_functions;   // empty: the classifier's list
  std::vector<std::string> read_only_functions;  // reads whatever pg_proc says (pgpool-II's)
  int64_t classify_max_bytes = 64 * 1024;        // longer statements go to the primary unparsed
  bool allow_scatter = false;  // queries without a shard key: error (default) or every shard
};

struct HealthConfig {
  int64_t interval_ms = 2000;
  int64_t timeout_ms = 1000;
  int fails = 3;           // consecutive failed checks that mark a server down
  int64_t ban_ms = 30000;  // how long a failed server gets no new connections
  // The health checker's login; default: the database's `user`, else the first of `users`
  // with a plain password.
  std::string user, password;
};

// Automatic failover (off by default: promoting a replica is a decision operators opt in to).
struct FailoverConfig {
  bool enabled = false;
  int64_t promote_timeout_ms = 60000;  // pg_promote(wait => true, wait_seconds)
  // Without cluster.etcd, automatic failover is only safe when this is the only bulwark in
  // front of the database: the operator says so.
  bool single_instance = false;
  // A replica further behind the old primary's last known WAL position is not promoted
  // (Patroni's maximum_lag_on_failover and its 1 MB default).
  int64_t maximum_lag_on_failover = 1024 * 1024;
  // Run before promoting (argv, no shell); a failure means no promotion. Gets
  // BULWARK_OLD_PRIMARY, BULWARK_NEW_PRIMARY and BULWARK_DATABASE.
  std::vector<std::string> fence_command;
  int64_t fence_timeout_ms = 30000;
};

// libpq require_auth names: password (cleartext), md5, scram-sha-256, none (no authentication).
constexpr unsigned kServerAuthPassword = 1, kServerAuthMd5 = 2, kServerAuthScram = 4,
                   kServerAuthNone = 8;

struct PgConfig {
  bool enabled = false;
  std::string listen_text = "127.0.0.1:6432";
  SocketAddress listen;
  PoolMode pool_mode = PoolMode::kSession;  // PgBouncer's default
  AuthType auth_type = AuthType::kScram;
  // What servers may ask of bulwark when it logs in (libpq's require_auth): bits of
  // kServerAuth*. A cleartext password is never sent unless `password` is listed.
  unsigned server_auth_methods = kServerAuthScram | kServerAuthMd5 | kServerAuthNone;
  std::vector<UserConfig> users;
  std::string auth_user;  // runs auth_query for users not in `users`
  std::string auth_query = "SELECT usename, passwd FROM pg_shadow WHERE usename=$1";
  std::map<std::string, DatabaseConfig> databases;

  // PgBouncer's names and defaults.
  int default_pool_size = 20;
  int min_pool_size = 0;
  int reserve_pool_size = 0;
  int64_t reserve_pool_timeout_ms = 5000;
  int max_client_conn = 100;
  int max_db_connections = 0;
  int max_user_connections = 0;
  int64_t server_lifetime_ms = 3600 * 1000;
  int64_t server_idle_timeout_ms = 600 * 1000;
  int64_t server_connect_timeout_ms = 15 * 1000;
  int64_t server_login_retry_ms = 15 * 1000;
  int64_t query_timeout_ms = 0;
  int64_t query_wait_timeout_ms = 120 * 1000;
  int64_t client_idle_timeout_ms = 0;
  int64_t client_login_timeout_ms = 60 * 1000;
  int64_t idle_transaction_timeout_ms = 0;
  std::string server_reset_query = "DISCARD ALL";
  bool server_reset_query_always = false;
  std::string server_check_query = "select 1";
  int64_t server_check_delay_ms = 30 * 1000;
  // Larger messages end the client's connection. PgBouncer allows 2 GiB; a statement or bound
  // value of 64 MiB is far beyond what a web backend sends, and every client may hold one.
  int64_t max_packet_size = 64 * 1024 * 1024;

  // Client-side TLS (PgBouncer's client_tls_*): disable | allow | prefer | require.
  std::string client_tls_sslmode = "disable";
  std::optional<TlsSettings> client_tls;

  // Server-side TLS, PgBouncer's server_tls_* (libpq's sslmode): disable | prefer | require |
  // verify-ca | verify-full (allow is refused). PgBouncer's default, prefer: TLS when the server
  // offers it, unverified. verify-ca checks the chain against server_tls_ca_file (the system's
  // store when unset), verify-full the server's name (or IP) too.
  std::string server_tls_sslmode = "prefer";
  TlsClientSettings server_tls;                  // verify, ca_file, cert/key, protocols, ciphers
  std::shared_ptr<TlsClient> server_tls_client;  // built at load (files read then)

  RoutingConfig routing;
  HealthConfig health;
  FailoverConfig failover;

  const UserConfig* FindUser(std::string_view name) const;
};

// Reads `pg:`; a relative sharding_file is taken from the configuration file's directory.
void LoadPgConfig(ConfigContext& ctx, const YAML::Node& node, PgConfig* out);

// The servers of `cfg` written with host names, with where they are written.
std::vector<NamedServer> NamedServers(const PgConfig& cfg);
// Their names, each once.
std::vector<std::string> ServerHostNames(const PgConfig& cfg);
// `cfg` with each server written by host name replaced by one server per address the name
// stands for in `names` (see NameTable), or by itself unresolved while it has none. The proxy
// only ever runs an expanded configuration.
std::shared_ptr<const PgConfig> ExpandServerNames(const PgConfig& cfg, const NameTable* names);

}  // namespace bulwark::pg
