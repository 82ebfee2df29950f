// The gateway's configuration: listeners with routes, upstream pools, HTTP limits.
// Parsed once into plain structs; a running gateway only ever sees a complete, validated copy.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config_reader.h"
#include "core/log_file.h"
#include "core/names.h"
#include "core/net.h"
#include "core/redis_client.h"
#include "core/redis_link.h"
#include "core/tls.h"
#include "gateway/http_cache.h"
#include "http/parser.h"
#include "http/path.h"
#include "re2/re2.h"
#include "security/jwt.h"

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
  // As written: "10.0.0.5:3000" or "iam-api-1:3000". In a snapshot, the server's label: a name
  // that stands for several addresses is several servers, "NAME:PORT", "NAME:PORT#2", ...
  // (HAProxy server-template), each keeping its label while the name keeps its address.
  std::string address_text;
  SocketAddress address;  // valid when `resolved`
  std::string host;       // the host name, or empty for a literal address
  uint16_t port = 0;
  bool resolved = true;  // false: a name with no address yet; the server is down
  std::string where;     // "FILE:LINE:COL" of the address, for errors found after parsing
  int weight = 1;
  int max_fails = 1;  // nginx defaults: max_fails=1 fail_timeout=10s
  int64_t fail_timeout_ms = 10000;
  bool backup = false;
  bool down = false;  // nginx "down": configured but never used
};

enum class BalanceKind { kRoundRobin, kLeastConn, kP2C, kHash };
enum class HashKeyKind { kClientIp, kHeader, kCookie };
enum class HashAlgorithm { kRing, kMaglev };

// A circuit breaker per server. Closed: `failures` consecutive failed attempts (connection
// errors, timeouts, or a status in `statuses`) open it. Open: the server gets nothing for
// `open_time`, doubled at each re-open up to `max_open_time` (APISIX api-breaker's schedule).
// Half-open: up to `half_open_requests` probes at a time; `successes` good answers close it, one
// failure re-opens it.
struct BreakerConfig {
  bool enabled = false;
  int failures = 3;
  std::vector<int> statuses = {500, 502, 503, 504};
  int64_t open_time_ms = 2000;
  int64_t max_open_time_ms = 300000;
  int half_open_requests = 1;
  int successes = 1;
};

// Envoy outlier detection (consecutive 5xx, where connection errors and timeouts count as 5xx).
struct OutlierConfig {
  bool enabled = false;
  int consecutive_5xx = 5;
  int64_t interval_ms = 10000;
  int64_t base_ejection_time_ms = 30000;
  int64_t max_ejection_time_ms = 300000;
  int max_ejection_percent = 10;
  int panic_threshold = 50;  // percent of usable servers below which all are used (0: never)
};

// Envoy-style retry policy. Without it bulwark retries like nginx proxy_next_upstream (error,
// timeout; at once).
struct RetryPolicyConfig {
  bool enabled = false;
  bool on_connect_failure = true;
  bool on_timeout = true;
  bool on_reset = true;
  std::vector<int> statuses;       // e.g. 502, 503, 504: the response is dropped and retried
  int64_t per_try_timeout_ms = 0;  // 0: the upstream's read_timeout only
  int64_t backoff_base_ms = 25;    // Envoy retry_back_off defaults
  int64_t backoff_max_ms = 250;
  int budget_percent = 20;        // active retries <= this share of active requests...
  int min_retry_concurrency = 3;  // ...or this many, whichever is larger (Envoy retry_budget)
};

// Sticky sessions. `cookie`: bulwark sets a cookie naming the server (signed, so a client cannot
// choose one) and sends later requests carrying it to that server while it is usable; otherwise
// another is chosen and the cookie rewritten. `session_cookie`: the application's own session
// cookie is mapped to a server in Redis (shared by instances, refreshed on use, with a TTL).
struct StickyConfig {
  bool enabled = false;
  std::string cookie;      // e.g. "bulwark_srv"
  std::string secret;      // HMAC key; empty: random per process
  int64_t max_age_ms = 0;  // 0: a session cookie
  std::string path = "/";
  bool http_only = true;
  bool secure = false;
  std::string same_site = "Lax";
  std::string session_cookie;  // the app's cookie for the Redis table
  int64_t ttl_ms = 30 * 60 * 1000;
};

// TLS to an upstream's servers (nginx proxy_ssl_*, HAProxy `server ... ssl verify required`).
struct UpstreamTlsConfig {
  bool enabled = false;
  TlsClientSettings settings;
  // SNI sent (nginx proxy_ssl_name with proxy_ssl_server_name on); "" = the server's host name
  // (none for a server written as an IP).
  std::string sni;
  // The name the certificate must carry; "" = `sni`, else the server's host name, else its IP.
  std::string verify_name;
  std::shared_ptr<TlsClient> client;  // built when the config is loaded (files read then)
};

// What a TLS connection to one server sends and checks: SNI, the name its certificate must
// carry, and the key its session is kept under for resumption.
struct TlsPeer {
  std::string sni, verify_name, session_key;
};

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
  BreakerConfig breaker;
  OutlierConfig outlier;
  RetryPolicyConfig retry;
  StickyConfig sticky;
  UpstreamTlsConfig tls;
};

// SNI: `tls.sni`, else the server's host name (none for an IP). The name checked:
// `tls.verify_name`, else the SNI, else the server's IP.
TlsPeer TlsPeerFor(const UpstreamTlsConfig& tls, const ServerConfig& server);

struct ReturnConfig {
  int status = 200;
  std::string body;
  std::string content_type = "text/plain";
  std::string location;  // for 301/302/307/308
};

enum class PathMatch { kPrefix, kExact, kRegex };

// nginx gzip: compress responses of these types (text/html always) from min_length bytes up,
// for clients that accept gzip.
struct GzipConfig {
  bool enabled = false;
  std::vector<std::string> types = {"text/html"};
  int64_t min_length = 20;  // nginx gzip_min_length default
  int level = 1;            // nginx gzip_comp_level default
  bool vary = false;        // nginx gzip_vary default
  bool proxied = false;     // nginx gzip_proxied: off (requests with Via) or any
};

// nginx add_header: added to responses with status 200, 201, 204, 206, 301, 302, 303, 304, 307
// or 308, or to every response with `always`.
struct AddHeader {
  std::string name;
  std::string value;
  bool always = false;
};

// Text with nginx variables ("$remote_addr", "${host}:8443", "$http_x_tenant"): literal text
// and variables in order. proxy_set_header values are compiled when the config loads; `return`
// and cache keys name the same variables (Exchange::ExpandVariables).
struct VarTemplate {
  enum class Var : uint8_t {
    kText,                   // `text` as written
    kHost,                   // $host: the request's host, lower case, without a port
    kHttpHost,               // $http_host: the Host header as sent
    kRemoteAddr,             // $remote_addr: the client's address (after trusted_proxies)
    kScheme,                 // $scheme: http or https
    kRequestUri,             // $request_uri: the target as the client sent it
    kUri,                    // $uri: the normalised path
    kArgs,                   // $args: the query string
    kIsArgs,                 // $is_args: "?" when there is a query string
    kRequestMethod,          // $request_method
    kRequestId,              // $request_id: the request's id
    kProxyAddXForwardedFor,  // $proxy_add_x_forwarded_for
    kHttp,                   // $http_NAME: the request header NAME (`text`, lower-case, '-')
    kCookie,                 // $cookie_NAME: the cookie NAME (`text`)
    kUpstreamRequestUri,     // bulwark's: the normalised target as it goes upstream
    kCapture,                // $1..$9 in a rewrite's replacement (`text`: the digit)
  };
  struct Part {
    Var var = Var::kText;
    std::string text;
  };
  std::vector<Part> parts;
  bool empty() const { return parts.empty(); }
};

// The variable `name` (without '$') names, or nullopt when nginx's set here has no such one.
std::optional<VarTemplate::Part> NginxVariable(std::string_view name);
// The list of variable names for error messages.
std::string_view NginxVariableNames();

// nginx `rewrite REGEX REPLACEMENT [FLAG]`: when REGEX matches the path, it becomes REPLACEMENT
// (with $1..$9 and variables; a '?' in it sets the query, the old one appended unless it ends in
// '?'). A replacement starting with http://, https:// or $scheme redirects (302).
struct RewriteRule {
  enum class Flag : uint8_t { kNone, kLast, kBreak, kRedirect, kPermanent };
  std::string pattern;
  std::shared_ptr<const RE2> regex;
  VarTemplate replacement;
  Flag flag = Flag::kNone;
  bool redirects = false;  // kRedirect, kPermanent, or an absolute replacement
};

// nginx `proxy_set_header NAME VALUE`: the request goes upstream with NAME set to VALUE instead of
// what the client sent (or bulwark's own X-Forwarded-* / X-Real-IP / Host); an empty value, as
// written or once expanded, leaves the header out.
struct SetHeader {
  std::string name;
  VarTemplate value;
};

// nginx `allow` / `deny`: rules are checked in the order written and the first match decides;
// when none matches the request is allowed. A route with its own list ignores the listener's
// (nginx inherits a server's rules only into locations that have none).
struct AccessRule {
  bool allow = true;
  bool all = false;
  CidrBlock block;
  std::string text;  // as written, for errors and the admin API
};
struct AccessList {
  bool set = false;
  std::vector<AccessRule> rules;
  bool Allows(const IpAddress& ip) const;
};

// What identifies a client for a rate limit or a ban. Several parts are concatenated; as with
// an nginx key made of variables, a key whose parts are all empty is not limited.
enum class KeyPartKind { kClientIp, kHeader, kRoute, kJwtClaim };
struct KeyPart {
  KeyPartKind kind = KeyPartKind::kClientIp;
  std::string name;  // header name (lower case) or claim name
};
struct KeySpec {
  std::vector<KeyPart> parts;
  std::string text;  // as written
  bool operator==(const KeySpec& o) const { return text == o.text; }
};

// What a shared (Redis) zone does while Redis cannot answer.
enum class RedisFailure { kLocal, kOpen, kClosed };

// nginx limit_req_zone: a named table of per-key leaky buckets shared by every worker, and with
// `shared` by every bulwark instance through Redis.
struct LimitZoneConfig {
  std::string name;
  KeySpec key;
  int64_t rate_milli = 0;                 // thousandths of a request per second
  int64_t size_bytes = 10 * 1024 * 1024;  // bounds the keys kept, as nginx's zone size does
  bool shared = false;
  RedisFailure redis_failure = RedisFailure::kLocal;
};

// A JWT provider: keys, checks, where the token is and which claims go upstream.
struct JwtProviderConfig {
  std::string name;
  std::string header = "authorization";  // lower case; "Bearer " is stripped when present
  std::vector<std::pair<std::string, std::string>> forward_claims;  // claim -> header
  std::string secret;  // HS256 (for `bulwark token issue` too)
  std::vector<std::string> issuers, audiences;
  std::shared_ptr<const security::JwtVerifier> verifier;
  // Counters (reset by a reload): verified, and rejections by JwtFailure.
  struct Counters {
    std::atomic<uint64_t> verified{0};
    std::array<std::atomic<uint64_t>, security::kJwtFailures> rejected{};
  };
  std::shared_ptr<Counters> counters = std::make_shared<Counters>();
};

// The Redis shared state lives in (rate limits across instances, bans, sticky sessions, the
// HTTP cache's Redis level): one server, a Redis Cluster or Sentinel's master, written as the
// cache library's `redis:` is (core/redis_link.h).
struct RedisConfig {
  bool enabled = false;
  RedisServers servers;
  std::string username;  // Redis 6 ACL: AUTH username password
  std::string password;
  int db = 0;
  UpstreamTlsConfig tls;     // Redis 6 --tls-port: the same keys as an upstream's `tls:`
  int64_t timeout_ms = 100;  // per command; a later reply counts as a failure
  int64_t connect_timeout_ms = 500;
  std::string key_prefix = "bulwark:";
  bool operator==(const RedisConfig& o) const {
    return enabled == o.enabled && servers == o.servers && username == o.username &&
           password == o.password && db == o.db && timeout_ms == o.timeout_ms &&
           connect_timeout_ms == o.connect_timeout_ms && key_prefix == o.key_prefix &&
           tls.enabled == o.tls.enabled && tls.settings == o.tls.settings && tls.sni == o.tls.sni &&
           tls.verify_name == o.tls.verify_name;
  }
};

// The RedisClient options for `redis:` but the address (credentials, TLS, database, timeouts;
// `command_timeout_ms` as given).
RedisOptions ToRedisOptions(const RedisConfig& rc, int64_t command_timeout_ms);

// nginx limit_conn_zone: per-key counts of requests in progress, shared by every worker.
struct LimitConnZoneConfig {
  std::string name;
  KeySpec key;
  int64_t size_bytes = 10 * 1024 * 1024;  // bounds the keys kept, as nginx's zone size does
};

// One nginx `limit_conn zone N` line.
struct LimitConnRule {
  std::string zone;
  int zone_index = -1;
  int max = 0;
};
constexpr size_t kMaxConnRules = 4;
struct LimitConnConfig {
  bool set = false;  // the rules were written here (not inherited)
  std::vector<LimitConnRule> rules;
  int status = 429;  // nginx limit_conn_status (nginx itself defaults to 503)
  bool status_set = false;
  bool dry_run = false;  // nginx limit_conn_dry_run
  bool dry_run_set = false;
};

// One nginx `limit_req zone=... burst=... [nodelay | delay=N]` line. burst and delay are in
// thousandths of a request, as nginx keeps them.
struct LimitReqRule {
  std::string zone;
  int zone_index = -1;
  int64_t burst = 0;
  int64_t delay = 0;
};
struct LimitReqConfig {
  bool set = false;  // the rules were written here (not inherited)
  std::vector<LimitReqRule> rules;
  int status = 429;  // nginx limit_req_status (nginx itself defaults to 503)
  bool status_set = false;
  bool dry_run = false;  // nginx limit_req_dry_run
  bool dry_run_set = false;
  bool retry_after = true;  // add Retry-After to rejections
  bool retry_after_set = false;
};

// Automatic bans, with fail2ban's semantics: `maxretry` counted events from one key within
// `findtime` ban that key for `bantime`. Counted events are the route's rate-limit rejections
// and/or responses with the listed statuses (e.g. 401 and 403 from a login route).
struct BanRuleConfig {
  bool set = false;
  bool on_rate_limited = false;
  std::vector<int> statuses;
  KeySpec key;
  int maxretry = 5;  // fail2ban defaults: 5 within 10m bans for 10m
  int64_t findtime_ms = 10 * 60 * 1000;
  int64_t bantime_ms = 10 * 60 * 1000;
};

// A route's HTTP cache (nginx proxy_cache with its proxy_cache_* settings; RFC 9111 freshness).
struct RouteCacheConfig {
  bool enabled = false;
  std::string zone;
  int zone_index = -1;
  std::vector<std::string> methods = {"GET", "HEAD"};  // HEAD is answered from GET entries
  // The key, with nginx variables: $request_method (HEAD counts as GET), $scheme, $host,
  // $request_uri, $uri, $args, $http_NAME, $cookie_NAME, and bulwark's $upstream_request_uri
  // (the normalised target as it goes upstream). Like nginx's default key it starts with the
  // scheme's part: an http request never fills the entry https clients get.
  std::string key = "$request_method $scheme://$host$upstream_request_uri";
  int64_t ttl_ms = 0;  // for responses without Cache-Control/Expires (nginx proxy_cache_valid)
  std::vector<int> statuses = {200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501};
  int64_t max_object_bytes = 1 << 20;
  int64_t stale_while_revalidate_ms = 0;  // unless the response says otherwise
  int64_t stale_if_error_ms = 0;
  bool lock = true;                // coalesce concurrent misses (proxy_cache_lock)
  int64_t lock_timeout_ms = 5000;  // proxy_cache_lock_timeout
  std::vector<std::string> tag_headers = {"cache-tag", "surrogate-key"};
  bool ignore_set_cookie = false;  // proxy_ignore_headers Set-Cookie
};

struct RouteConfig {
  std::string name;  // the `endpoint` label of http_requests_total
  PathMatch match = PathMatch::kPrefix;
  std::string path = "/";
  std::vector<std::string> hosts;    // empty = any; "*.example.com" wildcards
  std::vector<std::string> methods;  // empty = any
  std::string upstream;
  std::optional<ReturnConfig> ret;
  AccessList access;
  LimitReqConfig limit_req;
  LimitConnConfig limit_conn;
  BanRuleConfig ban;
  std::string jwt;  // provider name ("" none)
  int jwt_index = -1;
  bool jwt_set = false;
  std::vector<AddHeader> add_headers;
  bool add_headers_set = false;
  std::vector<SetHeader> set_headers;  // proxy_set_header
  bool set_headers_set = false;
  std::vector<RewriteRule> rewrites;  // nginx rewrite in the location
  // nginx client_max_body_size and proxy_{connect,send,read}_timeout in a location: they
  // override http.client_max_body_size (-1: not set; 0, as nginx: no limit) and the upstream's
  // timeouts (0: not set).
  int64_t client_max_body_size = -1;
  int64_t connect_timeout_ms = 0, send_timeout_ms = 0, read_timeout_ms = 0;
  std::vector<std::string> hide_headers;  // proxy_hide_header: response headers not passed on
  bool hide_headers_set = false;
  GzipConfig gzip;
  bool gzip_set = false;
  RouteCacheConfig cache;
  // Resend POST/PATCH/... that reached a failed server (overrides the upstream's setting).
  std::optional<bool> retry_non_idempotent;
  std::string add_header_block;         // the lines for success statuses, pre-rendered
  std::string add_header_always_block;  // the lines for every status
};

struct ListenerTlsConfig {
  bool enabled = false;
  TlsSettings settings;
  std::shared_ptr<TlsServer> server;  // built when the config is loaded (files read then)
};

struct ListenerConfig {
  std::string name;
  std::string listen_text;
  SocketAddress address;
  std::vector<RouteConfig> routes;
  // Defaults for routes that set none of their own (nginx server-level inheritance).
  AccessList access;
  LimitReqConfig limit_req;
  LimitConnConfig limit_conn;
  BanRuleConfig ban;
  std::string jwt;
  int jwt_index = -1;
  ListenerTlsConfig tls;
  std::vector<AddHeader> add_headers;
  std::vector<SetHeader> set_headers;
  std::vector<std::string> hide_headers;
  std::vector<RewriteRule> rewrites;  // nginx rewrite at server level: before route matching
  int64_t client_max_body_size = -1;  // as a route's, for routes without their own
  int64_t connect_timeout_ms = 0, send_timeout_ms = 0, read_timeout_ms = 0;
  GzipConfig gzip;
  // HTTP/2 besides HTTP/1.1, as nginx `http2 on`: over TLS when ALPN picks "h2", in clear text
  // when a connection starts with the HTTP/2 preface (prior knowledge).
  bool http2 = false;
};

// Settings of the shared ban table.
struct BansConfig {
  int64_t max_entries = 100000;      // bans and strike counters kept; the oldest go first
  std::vector<CidrBlock> never_ban;  // e.g. the office network or monitoring
  int status = 403;                  // what a banned client gets
};

// What goes upstream as the request path (Envoy normalize_path): the normalised path, or the
// path exactly as the client sent it. Routes always decide on the normalised path.
enum class UpstreamPath : uint8_t { kNormalized, kOriginal };

// HTTP/2 settings and defences (http.http2). Defaults: HAProxy's 100 streams, the RFC's 64 KiB
// windows and 4 KiB HPACK table; budgets in the spirit of nghttp2's and nginx's flood checks.
// The header list's bound is http.max_header_bytes, as nginx (since 1.19.7) bounds HTTP/2
// headers by large_client_header_buffers: one limit for both protocols.
struct Http2Config {
  int max_concurrent_streams = 100;  // SETTINGS_MAX_CONCURRENT_STREAMS
  int initial_window_size = 65535;   // SETTINGS_INITIAL_WINDOW_SIZE: request body per stream
  int header_table_size = 4096;      // SETTINGS_HEADER_TABLE_SIZE (HPACK)
  int max_continuations = 8;         // CONTINUATION frames after one HEADERS
  // Rapid reset (CVE-2023-44487): RST_STREAM frames from the client, as a token bucket.
  int reset_burst = 200;
  int reset_rate = 33;  // per second
  // SETTINGS, PING, PRIORITY, WINDOW_UPDATE and empty DATA frames, as a token bucket.
  int control_burst = 1000;
  int control_rate = 100;  // per second

  bool operator==(const Http2Config&) const = default;
};

struct HttpConfig {
  Http2Config http2;
  http::Limits limits;
  http::PathOptions path;  // merge_slashes, escaped_slashes
  UpstreamPath upstream_path = UpstreamPath::kNormalized;
  int64_t client_max_body_size = 1024 * 1024;  // nginx default 1m; 0: no limit, as nginx
  int64_t client_header_timeout_ms = 60000;    // nginx default
  int64_t client_body_timeout_ms = 60000;      // nginx default
  int64_t keepalive_timeout_ms = 75000;        // nginx default
  int keepalive_requests = 1000;               // nginx default
  int64_t send_timeout_ms = 60000;             // nginx default
  // Client connections one worker holds at most (nginx worker_connections, HAProxy maxconn);
  // at the cap the worker stops accepting and new connections wait in the kernel's queue.
  // 0: worked out at start from the open files limit (see ServerLimits in app/server.cc).
  int max_connections = 0;
};

struct AccessLogConfig : LogFileConfig {
  bool enabled = true;
};

struct GatewayConfig {
  std::vector<ListenerConfig> listeners;
  std::vector<UpstreamConfig> upstreams;
  HttpConfig http;
  std::vector<CidrBlock> trusted_proxies;
  AccessLogConfig access_log;
  std::vector<LimitZoneConfig> limit_zones;
  std::vector<LimitConnZoneConfig> conn_zones;
  BansConfig bans;
  RedisConfig redis;
  std::vector<JwtProviderConfig> jwt_providers;
  std::vector<CacheZoneConfig> cache_zones;

  const UpstreamConfig* FindUpstream(std::string_view name) const;
  int FindLimitZone(std::string_view name) const;
  int FindConnZone(std::string_view name) const;
};

// The upstream servers of `cfg` written with host names, with where they are written.
std::vector<NamedServer> NamedServers(const GatewayConfig& cfg);

// Reads the gateway keys (listeners, upstreams, http, trusted_proxies, access_log) from the
// top-level mapping. Errors go to ctx.
void ParseGatewayConfig(ConfigContext& ctx, MapReader& top, GatewayConfig* out);

}  // namespace bulwark::gateway
