#include "pg/config.h"

#include <algorithm>

#include "core/strings.h"

namespace bulwark::pg {

const char* PoolModeName(PoolMode m) { return m == PoolMode::kSession ? "session" : "transaction"; }

const char* RoleName(Role r) {
  switch (r) {
    case Role::kPrimary:
      return "primary";
    case Role::kReplica:
      return "replica";
    default:
      return "auto";
  }
}

const UserConfig* PgConfig::FindUser(std::string_view name) const {
  for (const auto& u : users) {
    if (u.name == name) return &u;
  }
  return nullptr;
}

namespace {

bool ReadPoolMode(MapReader& r, std::string_view key, std::optional<PoolMode>* out) {
  std::string s;
  if (!r.Has(key)) return true;
  if (!r.Enum(key, {"session", "transaction", "statement"}, &s)) return false;
  if (s == "statement") {
    // PgBouncer's statement mode forbids multi-statement transactions; bulwark does not offer it.
    r.ctx().Error(r.Get(key).Mark(),
                  StrCat(r.what(), ".", key,
                         ": \"statement\" pooling is not supported; use \"transaction\""));
    return false;
  }
  *out = s == "session" ? PoolMode::kSession : PoolMode::kTransaction;
  return true;
}

void ReadServer(ConfigContext& ctx, const YAML::Node& n, const std::string& what,
                ServerConfig* out) {
  if (n.IsScalar()) {
    if (!ReadScalar(ctx, n, what, &out->address_text)) return;  // ${VAR} expanded, as everywhere
  } else {
    MapReader r(ctx, n, what);
    if (!r.valid()) return;
    r.Require("address");
    r.String("address", &out->address_text);
    std::string role = "auto";
    out->role_written = r.Get("role").IsDefined();
    r.Enum("role", {"auto", "primary", "replica"}, &role);
    out->role = role == "primary"   ? Role::kPrimary
                : role == "replica" ? Role::kReplica
                                    : Role::kAuto;
    r.Finish();
  }
  if (out->address_text.empty()) return;
  out->where = ctx.Where(n.IsMap() && n["address"] ? n["address"].Mark() : n.Mark());
  if (out->address_text[0] == '/') {
    // A socket directory and port, as libpq's host=/var/run/postgresql port=5432.
    std::string dir = out->address_text;
    int port = 5432;
    if (size_t colon = dir.rfind(':'); colon != std::string::npos) {
      if (!ParseInt(dir.substr(colon + 1), &port) || port <= 0 || port > 65535) {
        ctx.Error(n.Mark(), StrCat(what, ": bad port in \"", out->address_text, "\""));
        return;
      }
      dir = dir.substr(0, colon);
    }
    out->unix_path = StrCat(dir, "/.s.PGSQL.", port);
    return;
  }
  if (out->address_text.find(':') == std::string::npos) {
    ctx.Error(n.Mark(), StrCat(what, ": \"", out->address_text,
                               "\" needs a port (PostgreSQL's is usually 5432)"));
    return;
  }
  auto hp = ParseHostPort(out->address_text);
  if (!hp.ok()) {
    ctx.Error(n.Mark(), StrCat(what, ": ", hp.status().message()));
    return;
  }
  out->port = hp->port;
  if (hp->address.has_value()) {
    out->address = *hp->address;
  } else {
    // Resolved at load and kept current in the background (ExpandServerNames).
    out->host = hp->host;
    out->resolved = false;
  }
}

void ReadDatabase(ConfigContext& ctx, const std::string& name, const YAML::Node& n,
                  DatabaseConfig* db) {
  std::string what = StrCat("pg.databases.", name);
  db->name = name;
  db->dbname = name;
  MapReader r(ctx, n, what);
  if (!r.valid()) return;
  r.String("dbname", &db->dbname);
  r.String("user", &db->user);
  r.String("password", &db->password);
  ReadPoolMode(r, "pool_mode", &db->pool_mode);
  r.Int("pool_size", &db->pool_size, 1, 10000);
  r.Int("min_pool_size", &db->min_pool_size, 0, 10000);
  r.Int("reserve_pool", &db->reserve_pool, 0, 10000);
  r.Int("max_db_connections", &db->max_db_connections, 0, 100000);
  if (r.Require("servers")) {
    YAML::Node servers = r.Get("servers");
    if (!servers.IsSequence() || servers.size() == 0) {
      ctx.Error(servers.Mark(), StrCat(what, ".servers: expected a list of servers"));
    } else {
      int primaries = 0;
      for (size_t i = 0; i < servers.size(); ++i) {
        ServerConfig s;
        ReadServer(ctx, servers[i], StrCat(what, ".servers[", i, "]"), &s);
        if (s.role == Role::kPrimary) ++primaries;
        db->servers.push_back(std::move(s));
      }
      if (primaries > 1) {
        ctx.Error(servers.Mark(), StrCat(what, ".servers: ", primaries,
                                         " servers say role: primary; at most one may"));
      }
      if (db->servers.size() == 1 && db->servers[0].role == Role::kAuto) {
        db->servers[0].role = Role::kPrimary;  // one server: it takes everything
      }
    }
  }
  YAML::Node sharding = r.Get("sharding");
  std::string sharding_file;
  r.String("sharding_file", &sharding_file);
  if (sharding.IsDefined() && !sharding_file.empty()) {
    ctx.Error(sharding.Mark(), StrCat(what, ": give `sharding` or `sharding_file`, not both"));
  } else if (sharding.IsDefined()) {
    db->sharding.emplace();
    LoadSharding(ctx, sharding, &*db->sharding);
  } else if (!sharding_file.empty()) {
    std::string path = ctx.Resolve(sharding_file);
    ConfigContext sub(path, ctx.env());
    auto root = LoadYamlFile(sub, path);
    if (root && root->IsMap() && (*root)["sharding"].IsDefined()) {
      db->sharding.emplace();
      LoadSharding(sub, (*root)["sharding"], &*db->sharding);
    } else if (root) {
      sub.Error("no top-level `sharding:` mapping");
    }
    for (const auto& e : sub.errors()) ctx.ForeignError(e);
  }
  r.Finish();
}

}  // namespace

void LoadPgConfig(ConfigContext& ctx, const YAML::Node& node, PgConfig* out) {
  MapReader r(ctx, node, "pg");
  if (!r.valid()) return;
  out->enabled = true;
  r.Bool("enabled", &out->enabled);
  r.String("listen", &out->listen_text);
  if (auto a = ParseSocketAddress(out->listen_text); a.ok()) {
    out->listen = *a;
  } else {
    ctx.Error(r.Has("listen") ? r.Get("listen").Mark() : node.Mark(),
              StrCat("pg.listen: ", a.status().message()));
  }
  std::optional<PoolMode> mode;
  ReadPoolMode(r, "pool_mode", &mode);
  if (mode) out->pool_mode = *mode;
  std::string auth = "scram-sha-256";
  r.Enum("auth_type", {"scram-sha-256", "md5", "plain", "trust"}, &auth);
  out->auth_type = auth == "md5"     ? AuthType::kMd5
                   : auth == "plain" ? AuthType::kPlain
                   : auth == "trust" ? AuthType::kTrust
                                     : AuthType::kScram;
  r.String("auth_user", &out->auth_user);
  r.String("auth_query", &out->auth_query);
  if (r.Has("server_auth_methods")) {
    std::vector<std::string> methods;
    r.StringList("server_auth_methods", &methods);
    out->server_auth_methods = 0;
    for (const std::string& m : methods) {
      unsigned bit = m == "password"        ? kServerAuthPassword
                     : m == "md5"           ? kServerAuthMd5
                     : m == "scram-sha-256" ? kServerAuthScram
                     : m == "none"          ? kServerAuthNone
                                            : 0;
      if (bit == 0) {
        ctx.Error(
            r.Get("server_auth_methods").Mark(),
            StrCat("pg.server_auth_methods: unknown method \"", m,
                   "\"; expected password, md5, scram-sha-256 or none (libpq's require_auth)"));
      }
      out->server_auth_methods |= bit;
    }
  }

  r.Int("default_pool_size", &out->default_pool_size, 1, 10000);
  r.Int("min_pool_size", &out->min_pool_size, 0, 10000);
  r.Int("reserve_pool_size", &out->reserve_pool_size, 0, 10000);
  r.Duration("reserve_pool_timeout", &out->reserve_pool_timeout_ms);
  r.Int("max_client_conn", &out->max_client_conn, 1, 1000000);
  r.Int("max_db_connections", &out->max_db_connections, 0, 100000);
  r.Int("max_user_connections", &out->max_user_connections, 0, 100000);
  r.Duration("server_lifetime", &out->server_lifetime_ms);
  r.Duration("server_idle_timeout", &out->server_idle_timeout_ms);
  r.Duration("server_connect_timeout", &out->server_connect_timeout_ms);
  r.Duration("server_login_retry", &out->server_login_retry_ms);
  r.Duration("query_timeout", &out->query_timeout_ms);
  r.Duration("query_wait_timeout", &out->query_wait_timeout_ms);
  r.Duration("client_idle_timeout", &out->client_idle_timeout_ms);
  r.Duration("client_login_timeout", &out->client_login_timeout_ms);
  r.Duration("idle_transaction_timeout", &out->idle_transaction_timeout_ms);
  r.String("server_reset_query", &out->server_reset_query);
  r.Bool("server_reset_query_always", &out->server_reset_query_always);
  r.String("server_check_query", &out->server_check_query);
  r.Duration("server_check_delay", &out->server_check_delay_ms);
  r.Size("max_packet_size", &out->max_packet_size);
  if (out->max_packet_size < 1024) {
    ctx.Error(r.Get("max_packet_size").Mark(), "pg.max_packet_size: at least 1 KiB");
  }

  r.Enum("client_tls_sslmode", {"disable", "allow", "prefer", "require"}, &out->client_tls_sslmode);
  std::string cert, key;
  r.String("client_tls_cert_file", &cert);
  r.String("client_tls_key_file", &key);
  if (out->client_tls_sslmode != "disable") {
    if (cert.empty() || key.empty()) {
      ctx.Error(node.Mark(), StrCat("pg.client_tls_sslmode: ", out->client_tls_sslmode,
                                    " needs client_tls_cert_file and client_tls_key_file"));
    } else {
      out->client_tls.emplace();
      out->client_tls->certificates.push_back({cert, key});
    }
  }

  r.Enum("server_tls_sslmode",
         {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"},
         &out->server_tls_sslmode);
  if (out->server_tls_sslmode == "allow") {
    // libpq's allow tries plain and falls back to TLS when the server refuses it; bulwark does
    // not make two logins for one, so it says what to write instead of half-doing it.
    ctx.Error(r.Get("server_tls_sslmode").Mark(),
              "pg.server_tls_sslmode: allow is not supported; prefer (TLS when the server "
              "offers it, else plain) or disable");
  }
  r.String("server_tls_ca_file", &out->server_tls.ca_file);
  r.String("server_tls_cert_file", &out->server_tls.cert_file);
  r.String("server_tls_key_file", &out->server_tls.key_file);
  r.String("server_tls_ciphers", &out->server_tls.ciphers);
  std::string protocols = "secure";
  r.String("server_tls_protocols", &protocols);
  {
    // PgBouncer's values: "secure" (TLS 1.2 and 1.3), "all", or a list such as "tlsv1.3".
    int lo = 0, hi = 0;
    for (std::string p : Split(AsciiLower(protocols), ',')) {
      p = std::string(Trim(p));
      int v = p == "tlsv1.2" ? 0x0303 : p == "tlsv1.3" ? 0x0304 : 0;
      if (p == "secure" || p == "all" || p == "legacy") {
        lo = lo == 0 ? 0x0303 : std::min(lo, 0x0303);
        hi = 0x0304;
        continue;
      }
      if (v == 0) {
        ctx.Error(node.Mark(), StrCat("pg.server_tls_protocols: \"", p,
                                      "\" is not secure, all, tlsv1.2 or tlsv1.3 (older "
                                      "versions are not offered)"));
        continue;
      }
      lo = lo == 0 ? v : std::min(lo, v);
      hi = std::max(hi, v);
    }
    if (lo != 0) {
      out->server_tls.min_version = lo;
      out->server_tls.max_version = hi;
    }
  }
  if (out->server_tls.cert_file.empty() != out->server_tls.key_file.empty())
    ctx.Error(node.Mark(), "pg.server_tls_cert_file and server_tls_key_file go together");
  out->server_tls.verify = StartsWith(out->server_tls_sslmode, "verify-");
  out->server_tls.session_reuse = true;
  if (!out->server_tls.verify && !out->server_tls.ca_file.empty()) {
    ctx.Error(node.Mark(), StrCat("pg.server_tls_ca_file is only used with server_tls_sslmode "
                                  "verify-ca or verify-full (it is ",
                                  out->server_tls_sslmode, ")"));
  }
  if (out->server_tls_sslmode != "disable" && ctx.ok()) {
    if (!out->server_tls.ca_file.empty())
      out->server_tls.ca_file = ctx.Resolve(out->server_tls.ca_file);
    if (!out->server_tls.cert_file.empty()) {
      out->server_tls.cert_file = ctx.Resolve(out->server_tls.cert_file);
      out->server_tls.key_file = ctx.Resolve(out->server_tls.key_file);
    }
    auto client = TlsClient::Build(out->server_tls);
    if (!client.ok()) {
      ctx.Error(node.Mark(), StrCat("pg.server_tls: ", client.status().message()));
    } else {
      out->server_tls_client = *client;
    }
  }

  YAML::Node users = r.Get("users");
  if (users.IsDefined()) {
    if (!users.IsSequence()) {
      ctx.Error(users.Mark(), "pg.users: expected a list of {name, password}");
    } else {
      for (size_t i = 0; i < users.size(); ++i) {
        std::string what = StrCat("pg.users[", i, "]");
        MapReader u(ctx, users[i], what);
        if (!u.valid()) continue;
        UserConfig uc;
        u.Require("name");
        u.String("name", &uc.name);
        u.String("password", &uc.password);
        ReadPoolMode(u, "pool_mode", &uc.pool_mode);
        u.Int("pool_size", &uc.pool_size, 1, 10000);
        u.Int("max_user_connections", &uc.max_user_connections, 0, 100000);
        u.Finish();
        if (out->FindUser(uc.name) != nullptr) {
          ctx.Error(users[i].Mark(), StrCat(what, ": user \"", uc.name, "\" is listed twice"));
        }
        out->users.push_back(std::move(uc));
      }
    }
  }
  if (!out->auth_user.empty() && out->FindUser(out->auth_user) == nullptr) {
    ctx.Error(r.Get("auth_user").Mark(),
              StrCat("pg.auth_user: \"", out->auth_user,
                     "\" must be in pg.users (bulwark logs in as it to run auth_query)"));
  }

  YAML::Node dbs = r.Get("databases");
  if (!dbs.IsDefined() || !dbs.IsMap() || dbs.size() == 0) {
    ctx.Error(dbs.IsDefined() ? dbs.Mark() : node.Mark(),
              "pg.databases: expected a mapping of database names to their servers");
  } else {
    ForEachNamed(ctx, dbs, "pg.databases", "expected a mapping of database names to their servers",
                 [&](const std::string& name, const YAML::Node& body) {
                   DatabaseConfig db;
                   ReadDatabase(ctx, name, body, &db);
                   out->databases[name] = std::move(db);
                 });
  }

  YAML::Node routing = r.Get("routing");
  if (routing.IsDefined()) {
    MapReader rr(ctx, routing, "pg.routing");
    rr.Bool("read_write_split", &out->routing.read_write_split);
    rr.Size("max_lag_bytes", &out->routing.max_lag_bytes);
    rr.Duration("max_lag", &out->routing.max_lag_ms);
    rr.Duration("read_your_writes", &out->routing.read_your_writes_ms);
    rr.StringList("volatile_functions", &out->routing.volatile_functions);
    rr.StringList("read_only_functions", &out->routing.read_only_functions);
    for (std::string& f : out->routing.read_only_functions) f = AsciiLower(f);
    for (std::string& f : out->routing.volatile_functions) f = AsciiLower(f);
    rr.Size("classify_max_bytes", &out->routing.classify_max_bytes);
    if (out->routing.classify_max_bytes < 1024 || out->routing.classify_max_bytes > 16 << 20) {
      ctx.Error(rr.Get("classify_max_bytes").Mark(),
                "pg.routing.classify_max_bytes: between 1 KiB and 16 MiB");
    }
    rr.Bool("allow_scatter", &out->routing.allow_scatter);

    rr.Finish();
  }
  YAML::Node health = r.Get("health");
  if (health.IsDefined()) {
    MapReader hr(ctx, health, "pg.health");
    hr.Duration("interval", &out->health.interval_ms);
    hr.Duration("timeout", &out->health.timeout_ms);
    hr.Int("fails", &out->health.fails, 1, 100);
    hr.Duration("ban", &out->health.ban_ms);
    hr.String("user", &out->health.user);
    hr.String("password", &out->health.password);
    hr.Finish();
  }
  YAML::Node failover = r.Get("failover");
  if (failover.IsDefined()) {
    MapReader fr(ctx, failover, "pg.failover");
    fr.Bool("enabled", &out->failover.enabled);
    fr.Duration("promote_timeout", &out->failover.promote_timeout_ms);
    fr.Bool("single_instance", &out->failover.single_instance);
    fr.Size("maximum_lag_on_failover", &out->failover.maximum_lag_on_failover);
    fr.StringList("fence_command", &out->failover.fence_command);
    fr.Duration("fence_timeout", &out->failover.fence_timeout_ms);
    if (fr.Get("fence_command").IsDefined() && out->failover.fence_command.empty()) {
      ctx.Error(fr.Get("fence_command").Mark(),
                "pg.failover.fence_command: a program and its arguments, e.g. [ssh, db1, "
                "systemctl, stop, postgresql]");
    }
    fr.Finish();
  }
  r.Finish();
}

std::vector<NamedServer> NamedServers(const PgConfig& cfg) {
  std::vector<NamedServer> out;
  for (const auto& [name, db] : cfg.databases) AppendNamedServers(db.servers, &out);
  return out;
}

std::vector<std::string> ServerHostNames(const PgConfig& cfg) {
  return DistinctNames(NamedServers(cfg));
}

std::shared_ptr<const PgConfig> ExpandServerNames(const PgConfig& cfg, const NameTable* names) {
  auto out = std::make_shared<PgConfig>(cfg);
  for (auto& [name, db] : out->databases) {
    std::vector<ServerConfig> servers;
    for (const auto& s : db.servers) {
      std::vector<ServerConfig> expanded = ExpandByName(s, names);
      // A lone server is the primary, but a lone name with several addresses is several
      // servers: their roles are found out (pg_is_in_recovery) unless one was written.
      for (ServerConfig& e : expanded) {
        if (expanded.size() > 1 && !s.role_written) e.role = Role::kAuto;
        servers.push_back(std::move(e));
      }
    }
    db.servers = std::move(servers);
  }
  return out;
}

}  // namespace bulwark::pg
