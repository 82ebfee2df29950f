// The gateway's metric families, written as tables of (name, type, help, source): one row per
// family, so a new counter is a line here and the exposition code stays the same.
#include "core/strings.h"
#include "core/units.h"
#include "gateway/gateway.h"
#include "http/parser.h"
#include "security/jwt.h"

namespace bulwark::gateway {
namespace {

// One configured server of one upstream, with its counters summed over the workers.
struct ServerRow {
  std::string labels;  // upstream="...",server="..."
  const ServerState* s;
  const ServerConfig* sc;
  uint64_t requests = 0, failures = 0, retries = 0;
};

bool RowUp(const ServerRow& r, int64_t now) { return ServerTakesRequests(*r.sc, *r.s, now); }

struct ServerFamily {
  const char* name;
  const char* type;
  const char* help;
  int64_t (*value)(const ServerRow&, int64_t now);
};

const ServerFamily kServerFamilies[] = {
    {"bulwark_upstream_up", "gauge",
     "1 when the server takes new requests (not down, failed or drained).",
     [](const ServerRow& r, int64_t now) -> int64_t { return RowUp(r, now) ? 1 : 0; }},
    {"bulwark_upstream_health_score", "gauge",
     "Health score 0-100 (active-check health times passive headroom).",
     [](const ServerRow& r, int64_t now) -> int64_t { return ServerScore(*r.sc, *r.s, now); }},
    {"bulwark_upstream_active_connections", "gauge", "Requests in flight to the server.",
     [](const ServerRow& r, int64_t) -> int64_t { return r.s->active_count(); }},
    {"bulwark_upstream_fails", "gauge", "Current nginx-style failure count (max_fails window).",
     [](const ServerRow& r, int64_t) -> int64_t { return r.s->fails(); }},
    {"bulwark_upstream_requests_total", "counter",
     "Attempts sent to the server (retries included).",
     [](const ServerRow& r, int64_t) -> int64_t { return static_cast<int64_t>(r.requests); }},
    {"bulwark_upstream_failures_total", "counter",
     "Attempts that failed (connect, send, read, timeout, bad response).",
     [](const ServerRow& r, int64_t) -> int64_t { return static_cast<int64_t>(r.failures); }},
    {"bulwark_upstream_retries_total", "counter",
     "Attempts that were retries of a request another server failed.",
     [](const ServerRow& r, int64_t) -> int64_t { return static_cast<int64_t>(r.retries); }},
    {"bulwark_upstream_circuit_breaker_opens_total", "counter",
     "Times the server's circuit breaker opened.",
     [](const ServerRow& r, int64_t) -> int64_t { return r.s->breaker_opens(); }},
    {"bulwark_upstream_ejected", "gauge", "1 while outlier detection has ejected the server.",
     [](const ServerRow& r, int64_t now) -> int64_t { return r.s->ejected(now) ? 1 : 0; }},
    {"bulwark_upstream_ejections_total", "counter", "Times outlier detection ejected the server.",
     [](const ServerRow& r, int64_t) -> int64_t { return r.s->ejections(); }},
    {"bulwark_upstream_health_checks_failed_total", "counter", "Active health checks that failed.",
     [](const ServerRow& r, int64_t) -> int64_t { return r.s->checks_failed(); }},
};

// A state set (one series per state, 1 for the current one), as node_exporter's systemd states.
struct ServerStateFamily {
  const char* name;
  const char* help;
  std::vector<std::string_view> states;
  std::string_view (*current)(const ServerRow&, int64_t now);
};

const ServerStateFamily kServerStateFamilies[] = {
    {"bulwark_upstream_state",
     "The server's state: one series per state, 1 for the current one.",
     {"up", "down", "unresolved", "failed", "drained", "open", "ejected"},
     [](const ServerRow& r, int64_t now) -> std::string_view {
       return ServerStateName(*r.sc, *r.s, now);
     }},
    {"bulwark_upstream_circuit_breaker_state",
     "The server's circuit breaker: one series per state, 1 for the current.",
     {"closed", "open", "half_open"},
     [](const ServerRow& r, int64_t now) -> std::string_view {
       static constexpr std::string_view kNames[] = {"closed", "open", "half_open"};
       return kNames[static_cast<int>(r.s->breaker_state(now))];
     }},
};

// A family summed over the workers' own counters.
struct WorkerFamily {
  const char* name;
  const char* type;
  const char* help;
  uint64_t (*value)(const WorkerStats&);
};

uint64_t Gauge(const std::atomic<int64_t>& v) { return static_cast<uint64_t>(v.load()); }

const WorkerFamily kWorkerFamilies[] = {
    {"bulwark_connections_accepted_total", "counter", "Client connections accepted.",
     [](const WorkerStats& s) { return s.accepted.Get(); }},
    {"bulwark_client_connections", "gauge", "Open client connections.",
     [](const WorkerStats& s) { return Gauge(s.open_clients); }},
    {"bulwark_upstream_connections", "gauge", "Open upstream connections (active and idle).",
     [](const WorkerStats& s) { return Gauge(s.open_upstreams); }},
    {"bulwark_http_parse_errors_total", "counter",
     "Requests refused as malformed (400, 413, 414, 431, 501, 505).",
     [](const WorkerStats& s) { return s.parse_errors.Get(); }},
    {"bulwark_http_timeouts_total", "counter", "Client or upstream timeouts.",
     [](const WorkerStats& s) { return s.timeouts.Get(); }},
    {"bulwark_no_live_upstream_total", "counter",
     "Requests answered 503 because no server was usable.",
     [](const WorkerStats& s) { return s.no_upstream.Get(); }},
    {"bulwark_client_aborts_total", "counter",
     "Requests the client abandoned before the response ended (499).",
     [](const WorkerStats& s) { return s.client_aborts.Get(); }},
    {"bulwark_accept_errors_total", "counter",
     "accept() failures other than EAGAIN (EMFILE, ENFILE, ENOMEM...).",
     [](const WorkerStats& s) { return s.accept_errors.Get(); }},
    {"bulwark_retry_budget_exhausted_total", "counter",
     "Retries not made because the upstream's retry budget was spent.",
     [](const WorkerStats& s) { return s.retry_budget_exhausted.Get(); }},
    {"bulwark_retry_backoffs_total", "counter", "Retries that waited a jittered backoff first.",
     [](const WorkerStats& s) { return s.retry_backoffs.Get(); }},
    {"bulwark_upstream_panic_total", "counter",
     "Server choices made in panic mode (too few usable servers: all were used).",
     [](const WorkerStats& s) { return s.panic_selections.Get(); }},
    {"bulwark_access_denied_total", "counter", "Requests refused (403) by an allow/deny list.",
     [](const WorkerStats& s) { return s.access_denied.Get(); }},
    {"bulwark_http2_connections_total", "counter", "Client connections that spoke HTTP/2.",
     [](const WorkerStats& s) { return s.h2_connections.Get(); }},
    {"bulwark_http2_streams_total", "counter", "HTTP/2 streams clients opened.",
     [](const WorkerStats& s) { return s.h2_streams.Get(); }},
    {"bulwark_http2_rapid_resets_total", "counter",
     "HTTP/2 connections ended (GOAWAY ENHANCE_YOUR_CALM) for resetting streams faster than "
     "http.http2.reset_rate allows (CVE-2023-44487).",
     [](const WorkerStats& s) { return s.h2_rapid_resets.Get(); }},
    {"bulwark_http2_floods_total", "counter",
     "HTTP/2 connections ended for a flood: SETTINGS, PING, PRIORITY or empty DATA frames over "
     "http.http2.control_rate, or acknowledgements the client would not read.",
     [](const WorkerStats& s) { return s.h2_floods.Get(); }},
    {"bulwark_http2_protocol_errors_total", "counter",
     "HTTP/2 connections ended by a protocol error (bad frames, too many CONTINUATION frames, "
     "a header block that did not end within client_header_timeout).",
     [](const WorkerStats& s) { return s.h2_protocol_errors.Get(); }},
    {"bulwark_http_bad_paths_total", "counter",
     "Requests refused (400) for their path: a malformed or NUL escape, `..` above the root, or "
     "an encoded slash under escaped_slashes: reject.",
     [](const WorkerStats& s) { return s.bad_paths.Get(); }},
    {"bulwark_http_rewrites_total", "counter",
     "Rewrite rules that changed a request's path or redirected it (nginx rewrite).",
     [](const WorkerStats& s) { return s.requests_rewritten.Get(); }},
};

// A family with one series per HTTP cache zone.
struct CacheZoneFamily {
  const char* name;
  const char* type;
  const char* help;
  uint64_t (*value)(const HttpCacheZone&);
};

const CacheZoneFamily kCacheZoneFamilies[] = {
    {"bulwark_http_cache_hits_total", "counter", "Fresh responses served from a zone.",
     [](const HttpCacheZone& z) { return z.hits.load(); }},
    {"bulwark_http_cache_misses_total", "counter", "Cacheable requests that went to the upstream.",
     [](const HttpCacheZone& z) { return z.misses.load(); }},
    {"bulwark_http_cache_stale_total", "counter",
     "Stale responses served (stale-while-revalidate, stale-if-error).",
     [](const HttpCacheZone& z) { return z.stale.load(); }},
    {"bulwark_http_cache_bypass_total", "counter",
     "Requests on a cached route that the cache did not handle (method, credentials).",
     [](const HttpCacheZone& z) { return z.bypass.load(); }},
    {"bulwark_http_cache_coalesced_total", "counter",
     "Misses that waited for another request's fetch of the same key.",
     [](const HttpCacheZone& z) { return z.coalesced.load(); }},
    {"bulwark_http_cache_lock_timeouts_total", "counter",
     "Waits for another request's fetch that timed out (lock_timeout).",
     [](const HttpCacheZone& z) { return z.lock_timeouts.load(); }},
    {"bulwark_http_cache_stored_total", "counter", "Responses stored.",
     [](const HttpCacheZone& z) { return z.stored.load(); }},
    {"bulwark_http_cache_not_stored_total", "counter",
     "Responses not stored (Cache-Control, Set-Cookie, status, failures).",
     [](const HttpCacheZone& z) { return z.not_stored.load(); }},
    {"bulwark_http_cache_too_big_total", "counter",
     "Responses not stored because they exceed max_object_size.",
     [](const HttpCacheZone& z) { return z.too_big.load(); }},
    {"bulwark_http_cache_redis_errors_total", "counter",
     "Failed reads and writes of a zone's Redis level.",
     [](const HttpCacheZone& z) { return z.l2_errors.load(); }},
    {"bulwark_http_cache_purged_total", "counter", "Entries removed through the purge API.",
     [](const HttpCacheZone& z) { return z.purged.load(); }},
    {"bulwark_http_cache_entries", "gauge", "Responses a zone holds.",
     [](const HttpCacheZone& z) -> uint64_t { return z.Stats().entries; }},
    {"bulwark_http_cache_bytes", "gauge", "Bytes a zone holds (with overhead).",
     [](const HttpCacheZone& z) -> uint64_t { return z.Stats().bytes; }},
    {"bulwark_http_cache_evictions_total", "counter",
     "Entries evicted (or not admitted) to stay within the zone's size.",
     [](const HttpCacheZone& z) -> uint64_t {
       auto st = z.Stats();
       return st.evictions + st.rejected;
     }},
};

// A family with one series per TLS listener.
struct TlsFamily {
  const char* name;
  const char* help;
  uint64_t (*value)(const TlsServer&);
};

const TlsFamily kTlsFamilies[] = {
    {"bulwark_tls_handshake_errors_total",
     "TLS handshakes that failed or were abandoned, by listener.",
     [](const TlsServer& t) -> uint64_t { return t.failures(); }},
    {"bulwark_tls_sessions_resumed_total",
     "TLS handshakes that resumed a session (cache or ticket), by listener.",
     [](const TlsServer& t) -> uint64_t { return t.resumed(); }},
};

// A family with one series per upstream with `tls:`.
struct UpstreamTlsFamily {
  const char* name;
  const char* help;
  uint64_t (*value)(const TlsClient&);
};

const UpstreamTlsFamily kUpstreamTlsFamilies[] = {
    {"bulwark_upstream_tls_handshakes_total",
     "TLS handshakes with the upstream's servers that completed (reset by a reload).",
     [](const TlsClient& t) -> uint64_t { return t.handshakes(); }},
    {"bulwark_upstream_tls_resumed_total",
     "Of those, handshakes that resumed a saved session (proxy_ssl_session_reuse).",
     [](const TlsClient& t) -> uint64_t { return t.resumed(); }},
    {"bulwark_upstream_tls_failures_total",
     "TLS handshakes with the upstream's servers that failed.",
     [](const TlsClient& t) -> uint64_t { return t.failures(); }},
    {"bulwark_upstream_tls_verify_failures_total",
     "Of those, handshakes refused because the server's certificate did not verify.",
     [](const TlsClient& t) -> uint64_t { return t.verify_failures(); }},
};

// name{label="value"} v
template <typename V>
void Sample(std::string* out, std::string_view name, std::string_view label, std::string_view value,
            V v) {
  observe::AppendSeries(out, name, {{label, value}});
  StrAppend(out, v, "\n");
}

// A family with one unlabelled sample.
template <typename V>
void Single(std::string* out, std::string_view name, std::string_view type, std::string_view help,
            V v) {
  observe::AppendHeader(out, name, type, help);
  StrAppend(out, name, " ", v, "\n");
}

}  // namespace

void Gateway::CollectMetrics(std::string* out) const {
  std::vector<const observe::HttpShard*> shards;
  for (const auto& w : workers_) shards.push_back(&w->http_shard());
  std::vector<std::string_view> methods;
  for (int m = 0; m < http::kMethodCount; ++m)
    methods.push_back(http::MethodName(static_cast<http::Method>(m)));
  observe::RenderHttpShards(shards, endpoints_, methods, out);

  int64_t now = MonotonicMs();
  CollectUpstreams(out, now);
  for (const WorkerFamily& f : kWorkerFamilies) {
    uint64_t sum = 0;
    for (const auto& w : workers_) sum += f.value(w->stats());
    Single(out, f.name, f.type, f.help, sum);
  }
  uint64_t cap = 0, fds = 0;
  for (const auto& w : workers_) {
    cap += w->stats().limited_max_connections.Get();
    fds += w->stats().limited_descriptors.Get();
  }
  observe::AppendHeader(out, "bulwark_http_connections_limited_total", "counter",
                        "Times a worker stopped accepting: it held http.max_connections "
                        "clients, or the gateway's share of descriptors was in use.");
  StrAppend(out, "bulwark_http_connections_limited_total{reason=\"max_connections\"} ", cap,
            "\nbulwark_http_connections_limited_total{reason=\"descriptors\"} ", fds, "\n");
  // From the snapshot this thread owns (a worker's own view is its thread's).
  int configured = snapshot_->config->http.max_connections;
  Single(out, "bulwark_http_max_connections", "gauge",
         "Client connections one worker holds at most (http.max_connections).",
         configured > 0 ? configured : auto_max_connections_);
  Single(out, "bulwark_gateway_descriptors", "gauge",
         "Descriptors the gateway's client and upstream connections hold.",
         descriptors_.used.load());
  Single(out, "bulwark_gateway_descriptors_limit", "gauge",
         "Descriptors the gateway may hold: the open files limit less the reserve and what the "
         "process held at start.",
         descriptors_.limit);
  if (access_log_ != nullptr) {
    Single(out, "bulwark_access_log_write_errors_total", "counter",
           "Access log writes that failed.", access_log_->write_errors());
    Single(out, "bulwark_access_log_rotations_total", "counter", "Access log rotations.",
           access_log_->rotations());
  }
  CollectCaches(out);
  if (cfg_->redis.enabled) {
    bool all_up = true;
    uint64_t errors = 0, reconnects = 0;
    for (const auto& w : workers_) {
      if (w->redis() == nullptr) continue;
      all_up &= w->redis()->up();
      errors += w->redis()->errors();
      reconnects += w->redis()->reconnects();
    }
    Single(out, "bulwark_redis_up", "gauge", "1 when every worker's Redis connection is up.",
           all_up ? 1 : 0);
    Single(out, "bulwark_redis_errors_total", "counter",
           "Redis commands that failed (errors, timeouts, lost connections).", errors);
    Single(out, "bulwark_redis_reconnects_total", "counter",
           "Times a worker's Redis connection was lost and retried.", reconnects);
    if (sentinel_ != nullptr) {
      Single(out, "bulwark_redis_master_changes_total", "counter",
             "Times Sentinel named another master (the first answer included).",
             sentinel_->changes());
    }
  }
  CollectSecurity(out, now);
  Single(out, "bulwark_workers", "gauge", "Worker threads.", workers_.size());
}

void Gateway::CollectUpstreams(std::string* out, int64_t now) const {
  std::vector<ServerRow> rows;
  for (const auto& ur : snapshot_->upstreams) {
    for (size_t i = 0; i < ur.servers.size(); ++i) {
      ServerRow r{"upstream=\"", ur.servers[i].get(), &ur.cfg->servers[i]};
      observe::AppendLabelValue(&r.labels, ur.cfg->name);
      r.labels.append("\",server=\"");
      observe::AppendLabelValue(&r.labels, ur.servers[i]->address_text());
      r.labels.append("\"");
      for (const auto& w : workers_) {
        const ServerCounters& c = w->server_counters(r.s->id());
        r.requests += c.requests.Get();
        r.failures += c.failures.Get();
        r.retries += c.retries.Get();
      }
      rows.push_back(std::move(r));
    }
  }
  for (const ServerFamily& f : kServerFamilies) {
    observe::AppendHeader(out, f.name, f.type, f.help);
    for (const auto& r : rows) StrAppend(out, f.name, "{", r.labels, "} ", f.value(r, now), "\n");
  }
  for (const ServerStateFamily& f : kServerStateFamilies) {
    observe::AppendHeader(out, f.name, "gauge", f.help);
    for (const auto& r : rows) {
      std::string_view cur = f.current(r, now);
      for (std::string_view st : f.states) {
        StrAppend(out, f.name, "{", r.labels, ",state=\"", st, "\"} ", cur == st ? 1 : 0, "\n");
      }
    }
  }
}

void Gateway::CollectCaches(std::string* out) const {
  observe::AppendHeader(out, "bulwark_ratelimit_requests_total", "counter",
                        "limit_req decisions by zone and result.");
  for (const auto& z : snapshot_->zones) {
    auto counts = z->Counts();
    for (int k = 0; k < kLimitResults; ++k) {
      observe::AppendSeries(
          out, "bulwark_ratelimit_requests_total",
          {{"zone", z->name()}, {"result", LimitResultName(static_cast<LimitResult>(k))}});
      StrAppend(out, counts[k], "\n");
    }
  }
  observe::AppendHeader(out, "bulwark_ratelimit_keys", "gauge", "Keys a limit_req zone holds.");
  for (const auto& z : snapshot_->zones)
    Sample(out, "bulwark_ratelimit_keys", "zone", z->name(), z->Keys());
  observe::AppendHeader(out, "bulwark_ratelimit_evictions_total", "counter",
                        "Keys dropped because a zone was full (raise its size).");
  for (const auto& z : snapshot_->zones) {
    Sample(out, "bulwark_ratelimit_evictions_total", "zone", z->name(), z->Evictions());
  }
  observe::AppendHeader(out, "bulwark_ratelimit_redis_fallbacks_total", "counter",
                        "Shared-zone decisions made without Redis (unreachable or too slow).");
  for (const auto& z : snapshot_->zones) {
    Sample(out, "bulwark_ratelimit_redis_fallbacks_total", "zone", z->name(), z->fallbacks());
  }
  if (!snapshot_->conn_zones.empty()) {
    observe::AppendHeader(out, "bulwark_limit_conn_requests_total", "counter",
                          "limit_conn decisions by zone and result.");
    for (const auto& z : snapshot_->conn_zones) {
      for (int k = 0; k < kConnResults; ++k) {
        auto r = static_cast<ConnResult>(k);
        observe::AppendSeries(out, "bulwark_limit_conn_requests_total",
                              {{"zone", z->name()}, {"result", ConnResultName(r)}});
        StrAppend(out, z->Counted(r), "\n");
      }
    }
    observe::AppendHeader(out, "bulwark_limit_conn_keys", "gauge",
                          "Keys with requests in progress in a limit_conn zone.");
    for (const auto& z : snapshot_->conn_zones) {
      Sample(out, "bulwark_limit_conn_keys", "zone", z->name(), z->Keys());
    }
  }
  if (snapshot_->cache_zones.empty()) return;
  // The AlkaidSYS names (cache_hits_total, cache_operations_total) beside bulwark_http_cache_*.
  uint64_t hit = 0, miss = 0, stored = 0, purged = 0;
  uint64_t l2_hit = 0, l2_miss = 0, l2_sets = 0, l2_purged = 0;
  bool any_l2 = false;
  for (const auto& z : snapshot_->cache_zones) {
    hit += z->hits.load() + z->stale.load();
    miss += z->misses.load();
    stored += z->stored.load();
    purged += z->purged.load();
    any_l2 |= z->config().redis;
    l2_hit += z->l2_hits.load();
    l2_miss += z->l2_misses.load();
    l2_sets += z->l2_sets.load();
    l2_purged += z->l2_purged.load();
  }
  observe::AppendHeader(out, "cache_hits_total", "counter",
                        "HTTP cache lookups by cache type and result (hit includes stale).");
  StrAppend(out, "cache_hits_total{cache_type=\"memory\",result=\"hit\"} ", hit, "\n");
  StrAppend(out, "cache_hits_total{cache_type=\"memory\",result=\"miss\"} ", miss, "\n");
  if (any_l2) {
    StrAppend(out, "cache_hits_total{cache_type=\"redis\",result=\"hit\"} ", l2_hit, "\n");
    StrAppend(out, "cache_hits_total{cache_type=\"redis\",result=\"miss\"} ", l2_miss, "\n");
  }
  observe::AppendHeader(out, "cache_operations_total", "counter",
                        "HTTP cache operations by cache type and operation.");
  struct Op {
    const char* type;
    const char* op;
    uint64_t value;
    bool shown;
  };
  const Op ops[] = {{"memory", "get", hit + miss, true}, {"memory", "set", stored, true},
                    {"memory", "purge", purged, true},   {"redis", "get", l2_hit + l2_miss, any_l2},
                    {"redis", "set", l2_sets, any_l2},   {"redis", "purge", l2_purged, any_l2}};
  for (const Op& o : ops) {
    if (!o.shown) continue;
    StrAppend(out, "cache_operations_total{cache_type=\"", o.type, "\",operation=\"", o.op, "\"} ",
              o.value, "\n");
  }
  for (const CacheZoneFamily& f : kCacheZoneFamilies) {
    observe::AppendHeader(out, f.name, f.type, f.help);
    for (const auto& z : snapshot_->cache_zones)
      Sample(out, f.name, "zone", z->config().name, f.value(*z));
  }
}

void Gateway::CollectSecurity(std::string* out, int64_t now) const {
  bans_->List(now);  // drops expired bans so the gauge is current
  Single(out, "bulwark_bans_active", "gauge", "Keys banned now.", bans_->active());
  Single(out, "bulwark_bans_received_total", "counter",
         "Bans other instances shared through Redis.", bans_->received());
  Single(out, "bulwark_bans_resynced_total", "counter",
         "This instance's bans written to Redis again after a reconnection (a failover, Redis "
         "back) or a failed write, because Redis no longer held them.",
         bans_resynced_.load(std::memory_order_relaxed));
  Single(out, "bulwark_ban_refused_total", "counter",
         "Requests refused because their key was banned.", bans_->refused());
  auto rule_counts = bans_->RuleCounts();
  observe::AppendHeader(out, "bulwark_bans_total", "counter", "Bans imposed, by rule (route).");
  for (const auto& [rule, c] : rule_counts)
    Sample(out, "bulwark_bans_total", "rule", rule, c.first);
  observe::AppendHeader(out, "bulwark_ban_strikes_total", "counter",
                        "Events counted towards a ban (rate-limit rejections, auth failures).");
  for (const auto& [rule, c] : rule_counts) {
    if (rule != "admin") Sample(out, "bulwark_ban_strikes_total", "rule", rule, c.second);
  }
  observe::AppendHeader(out, "bulwark_tls_handshakes_total", "counter",
                        "TLS handshakes completed, by listener and protocol (reset by a reload).");
  for (const auto& l : snapshot_->config->listeners) {
    if (l.tls.server == nullptr) continue;
    for (const char* proto : TlsServer::kProtocols) {
      observe::AppendSeries(out, "bulwark_tls_handshakes_total",
                            {{"listener", l.name}, {"protocol", proto}});
      StrAppend(out, l.tls.server->handshakes(proto), "\n");
    }
  }
  for (const TlsFamily& f : kTlsFamilies) {
    observe::AppendHeader(out, f.name, "counter", f.help);
    for (const auto& l : snapshot_->config->listeners) {
      if (l.tls.server != nullptr) Sample(out, f.name, "listener", l.name, f.value(*l.tls.server));
    }
  }
  for (const UpstreamTlsFamily& f : kUpstreamTlsFamilies) {
    observe::AppendHeader(out, f.name, "counter", f.help);
    for (const auto& u : snapshot_->config->upstreams) {
      if (u.tls.enabled && u.tls.client != nullptr)
        Sample(out, f.name, "upstream", u.name, f.value(*u.tls.client));
    }
  }
  observe::AppendHeader(out, "bulwark_jwt_verified_total", "counter",
                        "Requests whose JWT verified, by provider.");
  for (const auto& p : snapshot_->config->jwt_providers) {
    Sample(out, "bulwark_jwt_verified_total", "provider", p.name,
           p.counters->verified.load(std::memory_order_relaxed));
  }
  observe::AppendHeader(out, "bulwark_jwt_rejections_total", "counter",
                        "Requests refused (401) by a JWT check, by provider and reason.");
  for (const auto& p : snapshot_->config->jwt_providers) {
    for (int f = 1; f < security::kJwtFailures; ++f) {
      observe::AppendSeries(
          out, "bulwark_jwt_rejections_total",
          {{"provider", p.name},
           {"reason", security::JwtFailureName(static_cast<security::JwtFailure>(f))}});
      StrAppend(out, p.counters->rejected[f].load(std::memory_order_relaxed), "\n");
    }
  }
}

}  // namespace bulwark::gateway
