// The gateway's configuration: listeners with routes, upstream pools, HTTP limits.
// Parsed once into plain structs; a running gateway only ever sees a complete, validated copy.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/config_reader.h"
#include "core/net.h"
#include "http/parser.h"

namespace bulwark::gateway {

// HAProxy-style active HTTP checks.
struct HealthCheckConfig {
  bool enabled = false;
  std::string path = "/";
  std::string host;            // Host header of the probe; default: the server address
  int64_t interval_ms = 5000;  // HAProxy "inter" (its default is 2s; 5s is gentler on apps)
  int64_t timeout_ms = 2000;
  int rise = 2;  // HAProxy defaults
  int fall = 3;
  int expect_min = 200;  // expected status range, inclusive
  int expect_max = 399;
};

struct ServerConfig {
  std::string address_text;
  SocketAddress address;
  int weight = 1;
  int max_fails = 1;  // nginx defaults: max_fails=1 fail_timeout=10s
  int64_t fail_timeout_ms = 10000;
  bool backup = false;
  bool down = false;  // nginx "down": configured but never used
};

enum class BalanceKind { kRoundRobin, kLeastConn, kP2C, kHash };
enum class HashKeyKind { kClientIp, kHeader, kCookie };
enum class HashAlgorithm { kRing, kMaglev };

struct UpstreamConfig {
  std::string name;
  BalanceKind balance = BalanceKind::kRoundRobin;
  HashKeyKind hash_key = HashKeyKind::kClientIp;
  std::string hash_key_name;  // header or cookie name
  HashAlgorithm hash_algorithm = HashAlgorithm::kRing;
  std::vector<ServerConfig> servers;
  int keepalive = 32;  // idle connections kept per worker per server (nginx keepalive)
  int64_t keepalive_timeout_ms = 60000;  // nginx upstream keepalive_timeout
  int keepalive_requests = 1000;         // nginx upstream keepalive_requests
  int64_t connect_timeout_ms = 60000;    // nginx proxy_connect_timeout
  int64_t send_timeout_ms = 60000;       // nginx proxy_send_timeout
  int64_t read_timeout_ms = 60000;       // nginx proxy_read_timeout
  int next_upstream_tries = 0;           // nginx proxy_next_upstream_tries (0 = no limit)
  int64_t next_upstream_timeout_ms = 0;  // nginx proxy_next_upstream_timeout (0 = no limit)
  bool retry_non_idempotent = false;     // nginx proxy_next_upstream non_idempotent
  HealthCheckConfig health_check;
};

struct ReturnConfig {
  int status = 200;
  std::string body;
  std::string content_type = "text/plain";
  std::string location;  // for 301/302/307/308
};

enum class PathMatch { kPrefix, kExact, kRegex };

struct RouteConfig {
  std::string name;  // the `endpoint` label of http_requests_total
  PathMatch match = PathMatch::kPrefix;
  std::string path = "/";
  std::vector<std::string> hosts;    // empty = any; "*.example.com" wildcards
  std::vector<std::string> methods;  // empty = any
  std::string upstream;
  std::optional<ReturnConfig> ret;
};

struct ListenerConfig {
  std::string name;
  std::string listen_text;
  SocketAddress address;
  std::vector<RouteConfig> routes;
};

struct HttpConfig {
  http::Limits limits;
  int64_t client_max_body_size = 1024 * 1024;  // nginx default 1m
  int64_t client_header_timeout_ms = 60000;    // nginx default
  int64_t client_body_timeout_ms = 60000;      // nginx default
  int64_t keepalive_timeout_ms = 75000;        // nginx default
  int keepalive_requests = 1000;               // nginx default
  int64_t send_timeout_ms = 60000;             // nginx default
};

struct AccessLogConfig {
  bool enabled = true;
  std::string path = "stdout";
  int64_t max_size = 100LL * 1024 * 1024;
  int max_files = 5;
  bool compress = true;
};

struct GatewayConfig {
  std::vector<ListenerConfig> listeners;
  std::vector<UpstreamConfig> upstreams;
  HttpConfig http;
  std::vector<CidrBlock> trusted_proxies;
  AccessLogConfig access_log;

  const UpstreamConfig* FindUpstream(std::string_view name) const;
};

// Reads the gateway keys (listeners, upstreams, http, trusted_proxies, access_log) from the
// top-level mapping. Errors go to ctx.
void ParseGatewayConfig(ConfigContext& ctx, MapReader& top, GatewayConfig* out);

}  // namespace bulwark::gateway
