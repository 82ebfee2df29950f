// bulwark's whole configuration: one YAML file.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/config_reader.h"
#include "core/log_file.h"
#include "core/net.h"
#include "core/resolver.h"
#include "gateway/config.h"
#include "observe/config.h"
#include "pg/config.h"
#include "vault/config.h"

namespace bulwark {

struct AdminConfig {
  bool enabled = true;
  std::string listen = "127.0.0.1:9901";
  SocketAddress address;
  // Every endpoint but /health, /ready, /metrics and the dashboard page needs it as a bearer
  // token; when none is set, one is generated in the state directory (app/state.h).
  std::string token;
  // Host names the admin API answers to besides IP literals and loopback names (DNS rebinding).
  std::vector<std::string> server_names;
  bool protect_metrics = false;  // /metrics needs the token too (Prometheus: authorization)
  // Every admin mutation, as JSON lines (0600): "" = STATE_DIR/audit.log.
  LogFileConfig audit_log{.path = "", .mode = 0600};
};

// Several instances in front of the same servers: who does the work that must happen once.
struct ClusterConfig {
  std::string name;  // this instance (default: host name and admin port)
  std::vector<std::string> etcd_endpoints;
  std::vector<std::string> etcd_where;  // FILE:LINE:COL of each endpoint
  std::string etcd_key_prefix = "/bulwark";
  int64_t lease_ttl_ms = 10000;
  // etcd's authentication (`etcdctl auth enable`) and TLS (https:// endpoints; a CA of its own,
  // a client certificate when etcd has --client-cert-auth). Paths resolved against the file.
  std::string etcd_username, etcd_password;
  std::string etcd_ca_file, etcd_cert_file, etcd_key_file;
  bool enabled() const { return !etcd_endpoints.empty(); }
};

struct Config {
  std::string path;
  std::string state_dir;  // "" = StateDir()'s default (app/state.h)
  int workers = 0;        // 0 = one per core
  int64_t drain_timeout_ms = 30000;
  // Descriptors the gateway's connections may never take (admin, the pg proxy, the vault, log
  // files). 0: 256, plus two per pg.max_client_conn when the pg proxy is on.
  int64_t reserved_descriptors = 0;
  // Started as root: the user and group to run as once every listener is bound (nginx `user`;
  // group "" = the user's primary group, as systemd's User= without Group=).
  std::string user, group;
  std::string log_level = "info";
  std::string log_format = "text";
  LogFileConfig log_file{.path = ""};  // path "" = stderr
  std::string error_log;               // warnings and errors again, in their own file ("" = none)
  bool metrics_enabled = true;
  AdminConfig admin;
  ClusterConfig cluster;
  // Host names in server addresses (`resolver:`): the name servers, TTL bounds and tries.
  ResolverOptions resolver;
  // A name that does not resolve at load is an error (check-config, start, reload) rather than
  // a server that starts down.
  bool resolver_required_at_start = false;
  std::shared_ptr<gateway::GatewayConfig> gateway = std::make_shared<gateway::GatewayConfig>();
  std::shared_ptr<observe::ObserveConfig> observe = std::make_shared<observe::ObserveConfig>();
  std::shared_ptr<pg::PgConfig> pg = std::make_shared<pg::PgConfig>();
  std::shared_ptr<vault::VaultConfig> vault = std::make_shared<vault::VaultConfig>();

  int EffectiveWorkers() const;
};

struct ConfigLoad {
  std::unique_ptr<Config> config;   // null when there are errors
  std::vector<std::string> errors;  // FILE:LINE:COL: message
};

ConfigLoad LoadConfigFile(const std::string& path, const EnvLookup& env);
// With resolver.required_at_start, looks up every host name the config uses (all at once) and
// returns one error per name that does not resolve, at the place it is written; else nothing.
std::vector<std::string> CheckNamesResolve(const Config& cfg, Resolver* resolver);
ConfigLoad LoadConfigText(const std::string& text, const std::string& name, const EnvLookup& env);

}  // namespace bulwark
