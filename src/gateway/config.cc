#include "gateway/config.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <optional>
#include <sstream>

#include "core/strings.h"
#include "re2/re2.h"

namespace bulwark::gateway {
namespace {

constexpr int64_t kMaxTimeoutMs = 7LL * 24 * 3600 * 1000;

void ParseHealthCheck(ConfigContext& ctx, const YAML::Node& node, const std::string& what,
                      HealthCheckConfig* hc) {
  MapReader r(ctx, node, what);
  if (!r.valid()) return;
  hc->enabled = true;
  r.Bool("enabled", &hc->enabled);
  r.String("path", &hc->path);
  if (!hc->path.empty() && hc->path[0] != '/')
    ctx.Error(r.Get("path").Mark(), StrCat(what, ".path: must start with '/'"));
  r.String("host", &hc->host);
  r.Duration("interval", &hc->interval_ms);
  r.Duration("timeout", &hc->timeout_ms);
  r.Int("rise", &hc->rise, 1, 1000);
  r.Int("fall", &hc->fall, 1, 1000);
  YAML::Node es = r.Get("expect_status");
  if (es.IsDefined()) {
    std::string s;
    if (ReadScalar(ctx, es, what + ".expect_status", &s)) {
      std::vector<std::string> parts = Split(s, '-');
      int lo = 0, hi = 0;
      bool ok = parts.size() == 1
                    ? ParseInt(parts[0], &lo) && (hi = lo, true)
                    : parts.size() == 2 && ParseInt(parts[0], &lo) && ParseInt(parts[1], &hi);
      if (!ok || lo < 100 || hi > 599 || lo > hi) {
        ctx.Error(
            es.Mark(),
            StrCat(what,
                   ".expect_status: expected a status such as 200 or a range such as 200-399"));
      } else {
        hc->expect_min = lo;
        hc->expect_max = hi;
      }
    }
  }
  if (hc->timeout_ms <= 0 || hc->interval_ms <= 0)
    ctx.Error(node.Mark(), StrCat(what, ": interval and timeout must be positive"));
  r.Finish();
}

void ParseStatusList(ConfigContext& ctx, MapReader& r, std::string_view key,
                     const std::string& what, std::vector<int>* out) {
  YAML::Node n = r.Get(key);
  if (!n.IsDefined()) return;
  std::vector<std::string> items;
  if (!r.StringList(key, &items)) return;
  out->clear();
  for (const auto& item : items) {
    int st = 0;
    if (!ParseInt(item, &st) || st < 100 || st > 599) {
      ctx.Error(n.Mark(), StrCat(what, ".", key, ": \"", item, "\" is not an HTTP status"));
      continue;
    }
    out->push_back(st);
  }
}

void ParseBreaker(ConfigContext& ctx, const YAML::Node& node, const std::string& what,
                  BreakerConfig* b) {
  MapReader r(ctx, node, what);
  if (!r.valid()) return;
  b->enabled = true;
  r.Bool("enabled", &b->enabled);
  r.Int("failures", &b->failures, 1, 1000000);
  ParseStatusList(ctx, r, "statuses", what, &b->statuses);
  r.Duration("open_time", &b->open_time_ms);
  r.Duration("max_open_time", &b->max_open_time_ms);
  r.Int("half_open_requests", &b->half_open_requests, 1, 1000);
  r.Int("successes", &b->successes, 1, 1000);
  if (b->open_time_ms <= 0 || b->max_open_time_ms < b->open_time_ms)
    ctx.Error(node.Mark(), StrCat(what, ": need 0 < open_time <= max_open_time"));
  r.Finish();
}

void ParseOutlier(ConfigContext& ctx, const YAML::Node& node, const std::string& what,
                  OutlierConfig* o) {
  MapReader r(ctx, node, what);
  if (!r.valid()) return;
  o->enabled = true;
  r.Bool("enabled", &o->enabled);
  r.Int("consecutive_5xx", &o->consecutive_5xx, 1, 1000000);
  r.Duration("interval", &o->interval_ms);
  r.Duration("base_ejection_time", &o->base_ejection_time_ms);
  r.Duration("max_ejection_time", &o->max_ejection_time_ms);
  r.Int("max_ejection_percent", &o->max_ejection_percent, 0, 100);
  r.Int("panic_threshold", &o->panic_threshold, 0, 100);
  if (o->interval_ms <= 0 || o->base_ejection_time_ms <= 0 ||
      o->max_ejection_time_ms < o->base_ejection_time_ms)
    ctx.Error(node.Mark(),
              StrCat(what, ": need positive interval and base_ejection_time <= max_ejection_time"));
  r.Finish();
}

void ParseRetry(ConfigContext& ctx, const YAML::Node& node, const std::string& what,
                RetryPolicyConfig* p) {
  MapReader r(ctx, node, what);
  if (!r.valid()) return;
  p->enabled = true;
  YAML::Node on = r.Get("on");
  if (on.IsDefined()) {
    std::vector<std::string> items;
    r.StringList("on", &items);
    p->on_connect_failure = p->on_timeout = p->on_reset = false;
    p->statuses.clear();
    for (const auto& item : items) {
      int st = 0;
      if (item == "connect_failure") {
        p->on_connect_failure = true;
      } else if (item == "timeout") {
        p->on_timeout = true;
      } else if (item == "reset") {
        p->on_reset = true;
      } else if (ParseInt(item, &st) && st >= 500 && st <= 599) {
        p->statuses.push_back(st);
      } else {
        ctx.Error(on.Mark(), StrCat(what, ".on: \"", item,
                                    "\" is not one of connect_failure, timeout, reset or a 5xx "
                                    "status"));
      }
    }
  }
  r.Duration("per_try_timeout", &p->per_try_timeout_ms);
  YAML::Node bo = r.Get("backoff");
  if (bo.IsDefined()) {
    MapReader b(ctx, bo, what + ".backoff");
    bool has_max = b.Has("max");
    b.Duration("base", &p->backoff_base_ms);
    b.Duration("max", &p->backoff_max_ms);
    if (!has_max) p->backoff_max_ms = p->backoff_base_ms * 10;  // Envoy: 10 x base
    if (p->backoff_base_ms < 0 || p->backoff_max_ms < p->backoff_base_ms)
      ctx.Error(bo.Mark(), StrCat(what, ".backoff: need 0 <= base <= max"));
    b.Finish();
  }
  YAML::Node budget = r.Get("budget");
  if (budget.IsDefined()) {
    MapReader b(ctx, budget, what + ".budget");
    b.Int("percent", &p->budget_percent, 0, 100);
    b.Int("min_retry_concurrency", &p->min_retry_concurrency, 0, 100000);
    b.Finish();
  }
  r.Finish();
}

void ParseSticky(ConfigContext& ctx, const YAML::Node& node, const std::string& what,
                 StickyConfig* st) {
  MapReader r(ctx, node, what);
  if (!r.valid()) return;
  st->enabled = true;
  r.String("cookie", &st->cookie);
  r.String("secret", &st->secret);
  r.Duration("max_age", &st->max_age_ms);
  r.String("path", &st->path);
  r.Bool("http_only", &st->http_only);
  r.Bool("secure", &st->secure);
  r.Enum("same_site", {"Strict", "Lax", "None"}, &st->same_site);
  r.String("session_cookie", &st->session_cookie);
  r.Duration("ttl", &st->ttl_ms);
  auto token = [](const std::string& s) {
    if (s.empty()) return false;
    for (char c : s) {
      if (c <= 32 || c >= 127 ||
          std::string_view("()<>@,;:\\\"/[]?={}").find(c) != std::string_view::npos)
        return false;
    }
    return true;
  };
  if (st->cookie.empty() && st->session_cookie.empty())
    ctx.Error(node.Mark(), StrCat(what,
                                  ": set `cookie` (bulwark's own cookie) and/or "
                                  "`session_cookie` (the application's, kept in Redis)"));
  if (!st->cookie.empty() && !token(st->cookie))
    ctx.Error(r.Get("cookie").Mark(), StrCat(what, ".cookie: not a valid cookie name"));
  if (!st->session_cookie.empty() && !token(st->session_cookie))
    ctx.Error(r.Get("session_cookie").Mark(),
              StrCat(what, ".session_cookie: not a valid cookie name"));
  if (st->ttl_ms <= 0) ctx.Error(node.Mark(), StrCat(what, ".ttl: must be positive"));
  if (st->same_site == "None" && !st->secure)
    ctx.Error(node.Mark(),
              StrCat(what, ": same_site None needs secure: true (browsers require it)"));
  r.Finish();
}

void ParseServer(ConfigContext& ctx, const YAML::Node& node, const std::string& what,
                 ServerConfig* s) {
  std::optional<MapReader> r;
  if (node.IsMap()) {
    r.emplace(ctx, node, what);
    if (!r->Require("address")) return;
  }
  // (Never assign one YAML::Node to another: yaml-cpp's operator= writes through to the node.)
  const YAML::Node addr_node = r ? r->Get("address") : node;
  if (!ReadScalar(ctx, addr_node, what + ".address", &s->address_text)) return;
  s->where = ctx.Where(addr_node.Mark());
  auto hp = ParseHostPort(s->address_text);
  if (!hp.ok()) {
    ctx.Error(addr_node.Mark(), StrCat(what, ".address: ", hp.status().message()));
  } else if (hp->address.has_value()) {
    s->address = *hp->address;
    s->port = hp->port;
  } else {
    // Resolved at load and kept current in the background (see NameTable in core/names.h).
    s->host = hp->host;
    s->port = hp->port;
    s->resolved = false;
  }
  if (r) {
    r->Int("weight", &s->weight, 1, 1000);
    r->Int("max_fails", &s->max_fails, 0, 1000000);
    r->Duration("fail_timeout", &s->fail_timeout_ms);
    r->Bool("backup", &s->backup);
    r->Bool("down", &s->down);
    r->Finish();
  }
}

}  // namespace

RedisOptions ToRedisOptions(const RedisConfig& rc, int64_t command_timeout_ms) {
  RedisOptions o;
  o.username = rc.username;
  o.password = rc.password;
  o.db = rc.db;
  o.connect_timeout_ms = rc.connect_timeout_ms;
  o.command_timeout_ms = command_timeout_ms;
  if (rc.tls.enabled) {
    o.tls = rc.tls.client;
    // As an upstream's tls: SNI is `sni`; the name checked is `verify_name`, else `sni`.
    o.tls_sni = rc.tls.sni;
    o.tls_verify_name = !rc.tls.verify_name.empty() ? rc.tls.verify_name : rc.tls.sni;
  }
  return o;
}

std::vector<NamedServer> NamedServers(const GatewayConfig& cfg) {
  std::vector<NamedServer> out;
  for (const auto& u : cfg.upstreams) AppendNamedServers(u.servers, &out);
  return out;
}

TlsPeer TlsPeerFor(const UpstreamTlsConfig& tls, const ServerConfig& server) {
  TlsPeer p;
  p.sni = !tls.sni.empty() ? tls.sni : server.host;
  p.verify_name = !tls.verify_name.empty() ? tls.verify_name
                  : !p.sni.empty()         ? p.sni
                                           : server.address.IpString();
  p.session_key = server.address.ToString();
  return p;
}

namespace {

// TLS protocol versions from a `protocols:` list ([TLSv1.2, TLSv1.3]).
void ReadProtocols(ConfigContext& ctx, MapReader& r, const std::string& what, int* min_version,
                   int* max_version) {
  std::vector<std::string> protocols;
  YAML::Node pn = r.Get("protocols");
  if (!pn.IsDefined() || !r.StringList("protocols", &protocols)) return;
  int lo = 0, hi = 0;
  for (const auto& p : protocols) {
    int v = TlsVersionFromName(p);
    if (v == 0) {
      ctx.Error(pn.Mark(), StrCat(what, ".protocols: \"", p, "\" is not TLSv1.2 or TLSv1.3"));
      continue;
    }
    lo = lo == 0 ? v : std::min(lo, v);
    hi = std::max(hi, v);
  }
  if (lo != 0) {
    *min_version = lo;
    *max_version = hi;
  }
}

void ParseUpstreamTls(ConfigContext& ctx, const YAML::Node& node, const std::string& what,
                      UpstreamTlsConfig* t) {
  t->enabled = true;
  if (node.IsScalar()) {
    // `tls: true` / `tls: on`: everything by default.
    std::string v;
    if (!ReadScalar(ctx, node, what, &v)) return;
    std::optional<bool> on = ParseBoolWord(v);
    if (!on.has_value()) {
      ctx.Error(node.Mark(), StrCat(what, ": expected true, false or a map"));
      return;
    }
    t->enabled = *on;
  } else {
    MapReader r(ctx, node, what);
    if (!r.valid()) return;
    r.Bool("enabled", &t->enabled);
    r.Bool("verify", &t->settings.verify);
    r.String("ca_file", &t->settings.ca_file);
    r.String("sni", &t->sni);
    r.String("verify_name", &t->verify_name);
    r.String("cert", &t->settings.cert_file);
    r.String("key", &t->settings.key_file);
    ReadProtocols(ctx, r, what, &t->settings.min_version, &t->settings.max_version);
    r.String("ciphers", &t->settings.ciphers);
    r.Bool("session_reuse", &t->settings.session_reuse);
    if (t->settings.cert_file.empty() != t->settings.key_file.empty())
      ctx.Error(node.Mark(), StrCat(what, ": `cert` and `key` go together"));
    for (const std::string* name : {&t->sni, &t->verify_name}) {
      if (!name->empty() && !IsHostName(*name) && !IpAddress::Parse(*name).has_value())
        ctx.Error(node.Mark(),
                  StrCat(what, ": \"", *name, "\" is neither a host name nor an IP address"));
    }
    if (!t->settings.verify && !t->settings.ca_file.empty())
      ctx.Error(node.Mark(), StrCat(what, ": ca_file with verify: false would not be used"));
    r.Finish();
  }
  if (!t->enabled || !ctx.ok()) return;
  t->settings.ca_file = t->settings.ca_file.empty() ? "" : ctx.Resolve(t->settings.ca_file);
  if (!t->settings.cert_file.empty()) {
    t->settings.cert_file = ctx.Resolve(t->settings.cert_file);
    t->settings.key_file = ctx.Resolve(t->settings.key_file);
  }
  auto client = TlsClient::Build(t->settings);
  if (!client.ok()) {
    ctx.Error(node.Mark(), StrCat(what, ": ", client.status().message()));
  } else {
    t->client = *client;
  }
}

void ParseUpstream(ConfigContext& ctx, const std::string& name, const YAML::Node& node,
                   UpstreamConfig* u) {
  std::string what = StrCat("upstreams.", name);
  u->name = name;
  MapReader r(ctx, node, what);
  if (!r.valid()) return;
  std::string balance = "round_robin";
  r.Enum("balance", {"round_robin", "least_conn", "p2c", "hash"}, &balance);
  if (balance == "least_conn")
    u->balance = BalanceKind::kLeastConn;
  else if (balance == "p2c")
    u->balance = BalanceKind::kP2C;
  else if (balance == "hash")
    u->balance = BalanceKind::kHash;

  YAML::Node hash = r.Get("hash");
  if (hash.IsDefined()) {
    MapReader h(ctx, hash, what + ".hash");
    std::string key = "client_ip";
    h.String("key", &key);
    if (key == "client_ip") {
      u->hash_key = HashKeyKind::kClientIp;
    } else if (StartsWith(key, "header:") && key.size() > 7) {
      u->hash_key = HashKeyKind::kHeader;
      u->hash_key_name = AsciiLower(key.substr(7));
    } else if (StartsWith(key, "cookie:") && key.size() > 7) {
      u->hash_key = HashKeyKind::kCookie;
      u->hash_key_name = key.substr(7);
    } else {
      ctx.Error(h.Get("key").Mark(),
                StrCat(what, ".hash.key: expected client_ip, header:NAME or cookie:NAME"));
    }
    std::string algo = "ring";
    h.Enum("algorithm", {"ring", "maglev"}, &algo);
    u->hash_algorithm = algo == "maglev" ? HashAlgorithm::kMaglev : HashAlgorithm::kRing;
    h.Finish();
    if (u->balance != BalanceKind::kHash)
      ctx.Error(hash.Mark(), StrCat(what, ".hash: only used with balance: hash"));
  }

  r.Int("keepalive", &u->keepalive, 0, 100000);
  r.Duration("keepalive_timeout", &u->keepalive_timeout_ms);
  r.Int("keepalive_requests", &u->keepalive_requests, 1, 100000000);
  r.Duration("connect_timeout", &u->connect_timeout_ms);
  r.Duration("send_timeout", &u->send_timeout_ms);
  r.Duration("read_timeout", &u->read_timeout_ms);
  r.Int("next_upstream_tries", &u->next_upstream_tries, 0, 1000);
  r.Duration("next_upstream_timeout", &u->next_upstream_timeout_ms);
  r.Bool("retry_non_idempotent", &u->retry_non_idempotent);
  for (int64_t t : {u->connect_timeout_ms, u->send_timeout_ms, u->read_timeout_ms}) {
    if (t <= 0 || t > kMaxTimeoutMs) {
      ctx.Error(node.Mark(), StrCat(what, ": timeouts must be between 1ms and 7d"));
      break;
    }
  }

  YAML::Node hc = r.Get("health_check");
  if (hc.IsDefined()) ParseHealthCheck(ctx, hc, what + ".health_check", &u->health_check);
  YAML::Node cb = r.Get("circuit_breaker");
  if (cb.IsDefined()) ParseBreaker(ctx, cb, what + ".circuit_breaker", &u->breaker);
  YAML::Node od = r.Get("outlier_detection");
  if (od.IsDefined()) ParseOutlier(ctx, od, what + ".outlier_detection", &u->outlier);
  YAML::Node rp = r.Get("retry");
  if (rp.IsDefined()) ParseRetry(ctx, rp, what + ".retry", &u->retry);
  YAML::Node sk = r.Get("sticky");
  if (sk.IsDefined()) ParseSticky(ctx, sk, what + ".sticky", &u->sticky);
  YAML::Node tls = r.Get("tls");
  if (tls.IsDefined()) ParseUpstreamTls(ctx, tls, what + ".tls", &u->tls);

  YAML::Node servers = r.Get("servers");
  if (!servers.IsDefined() || !servers.IsSequence() || servers.size() == 0) {
    ctx.Error(servers.IsDefined() ? servers.Mark() : node.Mark(),
              StrCat(what, ": expected `servers:` with a list of at least one server"));
  } else {
    int i = 0;
    for (const auto& s : servers) {
      ServerConfig sc;
      ParseServer(ctx, s, StrCat(what, ".servers[", i, "]"), &sc);
      for (const auto& other : u->servers) {
        if (other.address_text == sc.address_text) {
          ctx.Error(s.Mark(), StrCat(what, ": server ", sc.address_text, " is listed twice"));
        }
      }
      u->servers.push_back(std::move(sc));
      ++i;
    }
    if (u->balance == BalanceKind::kHash &&
        std::any_of(u->servers.begin(), u->servers.end(),
                    [](const ServerConfig& s) { return s.backup; })) {
      // Same restriction as nginx: backup servers cannot be used with hash balancing.
      ctx.Error(servers.Mark(), StrCat(what, ": backup servers cannot be used with balance: hash"));
    }
  }
  r.Finish();
}

// "client_ip", "header:NAME", "route", or a list of them; nginx's $binary_remote_addr,
// $remote_addr and $http_NAME are accepted as the same things.
void ParseKeySpec(ConfigContext& ctx, const YAML::Node& node, const std::string& what,
                  KeySpec* out) {
  std::vector<std::string> items;
  if (node.IsSequence()) {
    for (const auto& n : node) {
      std::string v;
      if (ReadScalar(ctx, n, what, &v)) items.push_back(v);
    }
  } else {
    std::string v;
    if (!ReadScalar(ctx, node, what, &v)) return;
    items.push_back(v);
  }
  if (items.empty()) {
    ctx.Error(node.Mark(), StrCat(what, ": expected client_ip, header:NAME, route or a list"));
    return;
  }
  out->parts.clear();
  out->text.clear();
  for (const auto& item : items) {
    KeyPart part;
    if (item == "client_ip" || item == "$binary_remote_addr" || item == "$remote_addr") {
      part.kind = KeyPartKind::kClientIp;
    } else if (item == "route") {
      part.kind = KeyPartKind::kRoute;
    } else if (StartsWith(item, "jwt:") && item.size() > 4) {
      part.kind = KeyPartKind::kJwtClaim;
      part.name = item.substr(4);
    } else if (StartsWith(item, "header:") && item.size() > 7) {
      part.kind = KeyPartKind::kHeader;
      part.name = AsciiLower(item.substr(7));
    } else if (StartsWith(item, "$http_") && item.size() > 6) {
      part.kind = KeyPartKind::kHeader;
      part.name = AsciiLower(item.substr(6));
      for (char& c : part.name) {
        if (c == '_') c = '-';
      }
    } else {
      ctx.Error(node.Mark(), StrCat(what, ": unknown key part \"", item,
                                    "\" (expected client_ip, header:NAME, jwt:CLAIM or route)"));
      continue;
    }
    if (!out->text.empty()) out->text.push_back('+');
    out->text.append(item);
    out->parts.push_back(std::move(part));
  }
}

// A list of nginx-style rules: "allow 10.0.0.0/8", "deny 192.168.1.1", "deny all".
void ParseAccess(ConfigContext& ctx, const YAML::Node& node, const std::string& what,
                 AccessList* out) {
  if (!node.IsSequence()) {
    ctx.Error(
        node.Mark(),
        StrCat(what, ": expected a list of rules such as [\"allow 10.0.0.0/8\", \"deny all\"]"));
    return;
  }
  out->set = true;
  out->rules.clear();
  for (const auto& n : node) {
    std::string text;
    if (!ReadScalar(ctx, n, what, &text)) continue;
    std::vector<std::string> words;
    for (auto& w : Split(text, ' ')) {
      if (!w.empty()) words.push_back(w);
    }
    AccessRule rule;
    rule.text = text;
    if (words.size() != 2 || (words[0] != "allow" && words[0] != "deny")) {
      ctx.Error(n.Mark(), StrCat(what, ": \"", text,
                                 "\" is not a rule (expected \"allow CIDR\", \"deny CIDR\" or "
                                 "\"allow all\" / \"deny all\")"));
      continue;
    }
    rule.allow = words[0] == "allow";
    if (words[1] == "all") {
      rule.all = true;
    } else {
      auto c = ParseCidr(words[1]);
      if (!c.ok()) {
        ctx.Error(n.Mark(), StrCat(what, ": ", c.status().message()));
        continue;
      }
      rule.block = *c;
    }
    out->rules.push_back(std::move(rule));
  }
}

void ParseLimitReqRule(ConfigContext& ctx, const YAML::Node& node, const std::string& what,
                       const GatewayConfig& gw, LimitReqRule* rule) {
  MapReader r(ctx, node, what);
  if (!r.valid()) return;
  if (r.Require("zone") && r.String("zone", &rule->zone)) {
    rule->zone_index = gw.FindLimitZone(rule->zone);
    if (rule->zone_index < 0) {
      std::vector<std::string> names;
      for (const auto& z : gw.limit_zones) names.push_back(z.name);
      std::string hint = Suggest(rule->zone, names);
      ctx.Error(r.Get("zone").Mark(),
                StrCat(what, ".zone: no zone named \"", rule->zone, "\" in limit_req_zones",
                       hint.empty() ? "" : StrCat(" (did you mean \"", hint, "\"?)")));
    }
  }
  // Same arithmetic as nginx: burst and delay are kept in thousandths of a request; nodelay is
  // a delay as large as the burst can ever be.
  int64_t burst = 0, delay = 0;
  bool nodelay = false;
  r.Int("burst", &burst, 0, 1000000);
  r.Bool("nodelay", &nodelay);
  bool has_delay = r.Has("delay");
  r.Int("delay", &delay, 0, 1000000);
  if (nodelay && has_delay)
    ctx.Error(node.Mark(), StrCat(what, ": use either nodelay or delay, not both"));
  rule->burst = burst * 1000;
  rule->delay = nodelay ? INT64_MAX / 2 : delay * 1000;
  r.Finish();
}

// Reads limit_req, limit_req_status, limit_req_dry_run and limit_req_retry_after from `r`.
void ParseLimitReq(ConfigContext& ctx, MapReader& r, const std::string& what,
                   const GatewayConfig& gw, LimitReqConfig* out) {
  YAML::Node lr = r.Get("limit_req");
  if (lr.IsDefined()) {
    out->set = true;
    out->rules.clear();
    if (lr.IsSequence()) {
      int i = 0;
      for (const auto& n : lr) {
        LimitReqRule rule;
        ParseLimitReqRule(ctx, n, StrCat(what, ".limit_req[", i++, "]"), gw, &rule);
        for (const auto& other : out->rules) {
          if (other.zone == rule.zone && !rule.zone.empty())
            ctx.Error(n.Mark(),
                      StrCat(what, ".limit_req: zone \"", rule.zone, "\" is listed twice"));
          if (other.zone_index >= 0 && rule.zone_index >= 0 &&
              gw.limit_zones[other.zone_index].shared != gw.limit_zones[rule.zone_index].shared)
            ctx.Error(n.Mark(), StrCat(what,
                                       ".limit_req: zones of one route must be all shared "
                                       "or all local (they are decided together)"));
        }
        if (!out->rules.empty() && rule.zone_index >= 0 && gw.limit_zones[rule.zone_index].shared &&
            gw.redis.servers.mode == RedisServers::Mode::kCluster)
          ctx.Error(n.Mark(),
                    StrCat(what,
                           ".limit_req: several shared zones are decided in one Redis script, "
                           "whose keys a Redis Cluster may keep on different nodes; use one "
                           "shared zone per route, or a single Redis (or Sentinel)"));
        if (static_cast<int>(out->rules.size()) >= 16)
          ctx.Error(n.Mark(), StrCat(what, ".limit_req: at most 16 zones per route"));
        out->rules.push_back(std::move(rule));
      }
    } else {
      LimitReqRule rule;
      ParseLimitReqRule(ctx, lr, what + ".limit_req", gw, &rule);
      out->rules.push_back(std::move(rule));
    }
  }
  out->status_set = r.Has("limit_req_status");
  r.Int("limit_req_status", &out->status, 400, 599);
  out->dry_run_set = r.Has("limit_req_dry_run");
  r.Bool("limit_req_dry_run", &out->dry_run);
  out->retry_after_set = r.Has("limit_req_retry_after");
  r.Bool("limit_req_retry_after", &out->retry_after);
}

// Reads limit_conn ({zone, max} or a list of them), limit_conn_status and limit_conn_dry_run
// (nginx's directives) from `r`.
void ParseLimitConn(ConfigContext& ctx, MapReader& r, const std::string& what,
                    const GatewayConfig& gw, LimitConnConfig* out) {
  YAML::Node lc = r.Get("limit_conn");
  if (lc.IsDefined()) {
    out->set = true;
    out->rules.clear();
    auto one = [&](const YAML::Node& n, const std::string& w) {
      MapReader m(ctx, n, w);
      if (!m.valid()) return;
      LimitConnRule rule;
      if (m.Require("zone") && m.String("zone", &rule.zone)) {
        rule.zone_index = gw.FindConnZone(rule.zone);
        if (rule.zone_index < 0) {
          std::vector<std::string> names;
          for (const auto& z : gw.conn_zones) names.push_back(z.name);
          std::string hint = Suggest(rule.zone, names);
          ctx.Error(m.Get("zone").Mark(),
                    StrCat(w, ".zone: no zone named \"", rule.zone, "\" in limit_conn_zones",
                           hint.empty() ? "" : StrCat(" (did you mean \"", hint, "\"?)")));
        }
      }
      if (m.Require("max")) m.Int("max", &rule.max, 1, 1000000);
      m.Finish();
      for (const auto& other : out->rules) {
        if (other.zone == rule.zone && !rule.zone.empty())
          ctx.Error(n.Mark(), StrCat(w, ": zone \"", rule.zone, "\" is listed twice"));
      }
      if (out->rules.size() >= kMaxConnRules) {
        ctx.Error(n.Mark(), StrCat(w, ": at most ", kMaxConnRules, " zones per route"));
        return;
      }
      out->rules.push_back(std::move(rule));
    };
    if (lc.IsSequence()) {
      int i = 0;
      for (const auto& n : lc) one(n, StrCat(what, ".limit_conn[", i++, "]"));
    } else {
      one(lc, what + ".limit_conn");
    }
  }
  out->status_set = r.Has("limit_conn_status");
  r.Int("limit_conn_status", &out->status, 400, 599);
  out->dry_run_set = r.Has("limit_conn_dry_run");
  r.Bool("limit_conn_dry_run", &out->dry_run);
}

void ParseBan(ConfigContext& ctx, const YAML::Node& node, const std::string& what,
              BanRuleConfig* out) {
  MapReader r(ctx, node, what);
  if (!r.valid()) return;
  out->set = true;
  out->key.parts = {KeyPart{}};
  out->key.text = "client_ip";
  YAML::Node on = r.Get("on");
  std::vector<std::string> events;
  if (!on.IsDefined()) {
    ctx.Error(node.Mark(), StrCat(what,
                                  ": expected `on:` with what to count, e.g. [rate_limited, "
                                  "401, 403]"));
  } else {
    r.StringList("on", &events);
  }
  for (const auto& e : events) {
    int status = 0;
    if (e == "rate_limited") {
      out->on_rate_limited = true;
    } else if (ParseInt(e, &status) && status >= 100 && status <= 599) {
      out->statuses.push_back(status);
    } else {
      ctx.Error(on.Mark(),
                StrCat(what, ".on: \"", e, "\" is neither rate_limited nor an HTTP status"));
    }
  }
  YAML::Node key = r.Get("key");
  if (key.IsDefined()) ParseKeySpec(ctx, key, what + ".key", &out->key);
  r.Int("maxretry", &out->maxretry, 1, 1000);
  r.Duration("findtime", &out->findtime_ms);
  r.Duration("bantime", &out->bantime_ms);
  if (out->findtime_ms <= 0 || out->bantime_ms <= 0)
    ctx.Error(node.Mark(), StrCat(what, ": findtime and bantime must be positive"));
  r.Finish();
}

bool ReadConfigFile(ConfigContext& ctx, const YAML::Node& at, const std::string& what,
                    const std::string& path, std::string* out) {
  std::string full = ctx.Resolve(path);
  std::ifstream f(full, std::ios::binary);
  if (!f) {
    ctx.Error(at.Mark(), StrCat(what, ": cannot read ", full));
    return false;
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  if (out->size() > 1024 * 1024) {
    ctx.Error(at.Mark(), StrCat(what, ": ", full, " is larger than 1M"));
    return false;
  }
  return true;
}

void ParseTls(ConfigContext& ctx, const YAML::Node& node, const std::string& what,
              ListenerTlsConfig* t) {
  MapReader r(ctx, node, what);
  if (!r.valid()) return;
  t->enabled = true;
  auto read_cert = [&](MapReader& m, const std::string& w) {
    TlsCertificate c;
    if (m.Require("cert") && m.Require("key")) {
      m.String("cert", &c.cert_file);
      m.String("key", &c.key_file);
      c.cert_file = ctx.Resolve(c.cert_file);
      c.key_file = ctx.Resolve(c.key_file);
      t->settings.certificates.push_back(c);
    }
    (void)w;
  };
  YAML::Node certs = r.Get("certificates");
  if (certs.IsDefined()) {
    if (!certs.IsSequence() || certs.size() == 0) {
      ctx.Error(certs.Mark(), StrCat(what, ".certificates: expected a list of {cert, key}"));
    } else {
      int i = 0;
      for (const auto& c : certs) {
        std::string w = StrCat(what, ".certificates[", i++, "]");
        MapReader m(ctx, c, w);
        if (!m.valid()) continue;
        read_cert(m, w);
        m.Finish();
      }
    }
  } else if (r.Has("cert") || r.Has("key")) {
    read_cert(r, what);
  } else {
    ctx.Error(node.Mark(), StrCat(what, ": expected `cert` and `key`, or `certificates:`"));
  }
  ReadProtocols(ctx, r, what, &t->settings.min_version, &t->settings.max_version);
  r.String("ciphers", &t->settings.ciphers);
  int64_t timeout_ms = t->settings.session_timeout_s * 1000;
  r.Duration("session_timeout", &timeout_ms);
  t->settings.session_timeout_s = std::max<int64_t>(1, timeout_ms / 1000);
  r.Bool("session_cache", &t->settings.session_cache);
  r.Finish();
  if (!t->settings.certificates.empty()) {
    auto server = TlsServer::Build(t->settings);
    if (!server.ok()) {
      ctx.Error(node.Mark(), StrCat(what, ": ", server.status().message()));
    } else {
      t->server = *server;
    }
  }
}

void ParseJwtProvider(ConfigContext& ctx, const std::string& name, const YAML::Node& node,
                      JwtProviderConfig* p) {
  std::string what = StrCat("jwt_providers.", name);
  p->name = name;
  MapReader r(ctx, node, what);
  if (!r.valid()) return;
  std::vector<security::JwtKey> keys;
  int sources = 0;
  std::string secret, secret_file, pem_file, jwks_file;
  if (r.Has("secret")) {
    ++sources;
    r.String("secret", &secret);
  }
  if (r.Has("secret_file")) {
    ++sources;
    r.String("secret_file", &secret_file);
    if (ReadConfigFile(ctx, r.Get("secret_file"), what + ".secret_file", secret_file, &secret)) {
      while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
    }
  }
  if (sources > 0) {
    // RFC 7518: an HS256 key must be at least as long as the hash (256 bits).
    if (secret.size() < 32) {
      ctx.Error(node.Mark(), StrCat(what, ": the HS256 secret must be at least 32 bytes"));
    } else {
      security::JwtKey k;
      k.alg = security::JwtAlg::kHS256;
      k.secret = secret;
      keys.push_back(std::move(k));
      p->secret = secret;
    }
  }
  if (r.Has("public_key_file")) {
    ++sources;
    r.String("public_key_file", &pem_file);
    std::string pem;
    if (ReadConfigFile(ctx, r.Get("public_key_file"), what + ".public_key_file", pem_file, &pem)) {
      auto k = security::JwtKeyFromPem(pem);
      if (!k.ok()) {
        ctx.Error(r.Get("public_key_file").Mark(),
                  StrCat(what, ".public_key_file: ", k.status().message()));
      } else {
        keys.push_back(std::move(*k));
      }
    }
  }
  if (r.Has("jwks_file")) {
    ++sources;
    r.String("jwks_file", &jwks_file);
    std::string json;
    if (ReadConfigFile(ctx, r.Get("jwks_file"), what + ".jwks_file", jwks_file, &json)) {
      auto ks = security::JwtKeysFromJwks(json);
      if (!ks.ok()) {
        ctx.Error(r.Get("jwks_file").Mark(), StrCat(what, ".jwks_file: ", ks.status().message()));
      } else {
        for (auto& k : *ks) keys.push_back(std::move(k));
      }
    }
  }
  if (sources != 1)
    ctx.Error(node.Mark(), StrCat(what,
                                  ": set exactly one of secret, secret_file, "
                                  "public_key_file or jwks_file"));
  security::JwtPolicy policy;
  r.StringList("issuer", &p->issuers);
  r.StringList("audience", &p->audiences);
  policy.issuers = p->issuers;
  policy.audiences = p->audiences;
  int64_t leeway_ms = 60000;
  r.Duration("leeway", &leeway_ms);
  policy.leeway_s = leeway_ms / 1000;
  r.Bool("require_exp", &policy.require_exp);
  r.String("header", &p->header);
  p->header = AsciiLower(p->header);
  ForEachNamed(ctx, r.Get("forward_claims"), what + ".forward_claims",
               "expected {claim: Header-Name}",
               [&](const std::string& claim, const YAML::Node& value) {
                 std::string header;
                 if (ReadScalar(ctx, value, what + ".forward_claims", &header))
                   p->forward_claims.emplace_back(claim, header);
               });
  r.Finish();
  p->verifier = std::make_shared<security::JwtVerifier>(std::move(keys), policy);
}

// What add_header, proxy_set_header and proxy_hide_header accept as a header's name and value.
bool ValidHeaderName(std::string_view name) {
  bool ok = !name.empty();
  for (char c : name) ok &= c > 32 && c < 127 && c != ':';
  return ok;
}

bool ValidHeaderValue(std::string_view value) {
  bool ok = true;
  for (char c : value) ok &= (c >= 32 && c != 127) || c == '\t';
  return ok;
}

void ParseAddHeaders(ConfigContext& ctx, const YAML::Node& node, const std::string& what,
                     std::vector<AddHeader>* out) {
  if (!node.IsSequence()) {
    ctx.Error(node.Mark(), StrCat(what, ": expected a list of {name, value, always}"));
    return;
  }
  out->clear();
  int i = 0;
  for (const auto& n : node) {
    std::string w = StrCat(what, "[", i++, "]");
    MapReader r(ctx, n, w);
    if (!r.valid()) continue;
    AddHeader h;
    if (r.Require("name")) r.String("name", &h.name);
    if (r.Require("value")) r.String("value", &h.value);
    r.Bool("always", &h.always);
    if (!ValidHeaderName(h.name) || !ValidHeaderValue(h.value))
      ctx.Error(n.Mark(), StrCat(w, ": not a valid header name and value"));
    r.Finish();
    out->push_back(std::move(h));
  }
}

}  // namespace

namespace {

// The variables by name; an alias is accepted but not listed in messages.
struct NamedVariable {
  std::string_view name;
  VarTemplate::Var var;
  bool alias = false;
};
constexpr NamedVariable kNginxVariables[] = {
    {"host", VarTemplate::Var::kHost},
    {"http_host", VarTemplate::Var::kHttpHost},
    {"remote_addr", VarTemplate::Var::kRemoteAddr},
    {"scheme", VarTemplate::Var::kScheme},
    {"request_uri", VarTemplate::Var::kRequestUri},
    {"uri", VarTemplate::Var::kUri},
    {"args", VarTemplate::Var::kArgs},
    {"query_string", VarTemplate::Var::kArgs, /*alias=*/true},
    {"is_args", VarTemplate::Var::kIsArgs},
    {"request_method", VarTemplate::Var::kRequestMethod},
    {"request_id", VarTemplate::Var::kRequestId},
    {"proxy_add_x_forwarded_for", VarTemplate::Var::kProxyAddXForwardedFor},
    {"upstream_request_uri", VarTemplate::Var::kUpstreamRequestUri},
};

// The listed names, for Suggest.
const std::vector<std::string>& NginxVariableList() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& nv : kNginxVariables) {
      if (!nv.alias) v.emplace_back(nv.name);
    }
    return v;
  }();
  return names;
}

}  // namespace

std::optional<VarTemplate::Part> NginxVariable(std::string_view name) {
  using Var = VarTemplate::Var;
  for (const auto& nv : kNginxVariables) {
    if (name == nv.name) return VarTemplate::Part{nv.var, ""};
  }
  if (name.size() > 5 && name.substr(0, 5) == "http_") {
    std::string h = AsciiLower(name.substr(5));
    std::replace(h.begin(), h.end(), '_', '-');
    return VarTemplate::Part{Var::kHttp, std::move(h)};
  }
  if (name.size() > 7 && name.substr(0, 7) == "cookie_")
    return VarTemplate::Part{Var::kCookie, std::string(name.substr(7))};
  return std::nullopt;
}

std::string_view NginxVariableNames() {
  static const std::string names = [] {
    std::string s;
    for (const std::string& n : NginxVariableList()) StrAppend(&s, "$", n, ", ");
    return s + "$http_NAME, $cookie_NAME";
  }();
  return names;
}

namespace {

// nginx variables in a proxy_set_header value or a rewrite's replacement: "$name" (letters,
// digits, '_') or "${name}"; with `captures`, $1..$9 too.
std::optional<VarTemplate> CompileVarTemplate(std::string_view text, std::string* error,
                                              bool captures = false) {
  using Var = VarTemplate::Var;
  VarTemplate t;
  auto literal = [&](std::string_view s) {
    if (s.empty()) return;
    if (t.parts.empty() || t.parts.back().var != Var::kText) t.parts.push_back({Var::kText, ""});
    t.parts.back().text.append(s);
  };
  size_t i = 0;
  while (i < text.size()) {
    size_t dollar = text.find('$', i);
    if (dollar == std::string_view::npos) {
      literal(text.substr(i));
      break;
    }
    literal(text.substr(i, dollar - i));
    size_t start = dollar + 1, end;
    bool braced = start < text.size() && text[start] == '{';
    if (braced) {
      ++start;
      end = text.find('}', start);
      if (end == std::string_view::npos) {
        *error = StrCat("\"", text, "\": the variable after '${' has no '}'");
        return std::nullopt;
      }
    } else if (captures && start < text.size() && text[start] >= '0' && text[start] <= '9') {
      end = start + 1;  // nginx: "$10" is capture 1, then "0"
    } else {
      end = start;
      while (end < text.size() &&
             (std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '_'))
        ++end;
    }
    std::string_view name = text.substr(start, end - start);
    if (name.empty()) {
      *error = StrCat("\"", text, "\": '$' without a variable name (nginx has no escape for it)");
      return std::nullopt;
    }
    std::optional<VarTemplate::Part> part = NginxVariable(name);
    if (captures && name.size() == 1 && name[0] >= '1' && name[0] <= '9')
      part = VarTemplate::Part{Var::kCapture, std::string(name)};
    if (!part.has_value()) {
      std::string hint = Suggest(name, NginxVariableList());
      *error = StrCat("unknown variable \"$", name, "\"",
                      hint.empty() ? "" : StrCat(" (did you mean $", hint, "?)"),
                      "; known: ", NginxVariableNames());
      return std::nullopt;
    }
    t.parts.push_back(std::move(*part));
    i = braced ? end + 1 : end;
  }
  return t;
}

// A route's or listener's client_max_body_size and upstream timeouts (nginx location level).
void ParseLocationLimits(ConfigContext& ctx, MapReader& r, const std::string& what,
                         int64_t* max_body, int64_t* connect_ms, int64_t* send_ms,
                         int64_t* read_ms) {
  if (r.Has("client_max_body_size")) r.Size("client_max_body_size", max_body);
  for (auto [key, ms] : {std::pair{"connect_timeout", connect_ms},
                         {"send_timeout", send_ms},
                         {"read_timeout", read_ms}}) {
    if (!r.Has(key) || !r.Duration(key, ms)) continue;
    if (*ms <= 0 || *ms > kMaxTimeoutMs) {
      ctx.Error(r.Get(key).Mark(), StrCat(what, ".", key, ": must be between 1ms and 7d"));
      *ms = 0;
    }
  }
}

// proxy_set_header: {NAME: VALUE, ...}.
void ParseSetHeaders(ConfigContext& ctx, const YAML::Node& node, const std::string& what,
                     std::vector<SetHeader>* out) {
  if (!node.IsMap()) {
    ctx.Error(node.Mark(), StrCat(what, ": expected a mapping of header names to values"));
    return;
  }
  out->clear();
  for (const auto& kv : node) {
    std::string name, value;
    if (!ReadScalar(ctx, kv.first, what, &name)) continue;
    if (!kv.second.IsNull() && !ReadScalar(ctx, kv.second, StrCat(what, ".", name), &value))
      continue;
    if (!ValidHeaderName(name)) {
      ctx.Error(kv.first.Mark(), StrCat(what, ": \"", name, "\" is not a header name"));
      continue;
    }
    std::string lower = AsciiLower(name);
    if (http::IsHopByHop(lower) || lower == "content-length" || lower == "x-request-id" ||
        lower == "traceparent") {
      // These carry the message's framing or bulwark's tracing: setting them would desync the
      // server or break the request's trail.
      ctx.Error(kv.first.Mark(), StrCat(what, ": \"", name, "\" is bulwark's to set"));
      continue;
    }
    bool ok = ValidHeaderValue(value);
    std::string error;
    std::optional<VarTemplate> t = CompileVarTemplate(value, &error);
    if (!ok) error = "control characters in the value";
    if (!ok || !t.has_value()) {
      ctx.Error(kv.second.Mark(), StrCat(what, ".", name, ": ", error));
      continue;
    }
    for (const auto& s : *out) {
      if (EqualsIgnoreCase(s.name, name))
        ctx.Error(kv.first.Mark(), StrCat(what, ": \"", name, "\" is set twice"));
    }
    out->push_back({std::move(name), std::move(*t)});
  }
}

// rewrite: [{regex, replacement, flag}] or nginx's own words: ["REGEX REPLACEMENT [FLAG]"].
void ParseRewrites(ConfigContext& ctx, const YAML::Node& node, const std::string& what,
                   std::vector<RewriteRule>* out) {
  if (!node.IsSequence()) {
    ctx.Error(node.Mark(), StrCat(what, ": expected a list of {regex, replacement, flag}"));
    return;
  }
  int i = 0;
  for (const auto& n : node) {
    std::string w = StrCat(what, "[", i++, "]");
    RewriteRule rule;
    std::string replacement, flag;
    if (n.IsScalar()) {
      std::string line;
      if (!ReadScalar(ctx, n, w, &line)) continue;
      std::vector<std::string> words = Split(line, ' ', true);
      if (words.size() < 2 || words.size() > 3) {
        ctx.Error(n.Mark(), StrCat(w, ": expected \"REGEX REPLACEMENT [FLAG]\""));
        continue;
      }
      rule.pattern = words[0];
      replacement = words[1];
      if (words.size() == 3) flag = words[2];
    } else {
      MapReader r(ctx, n, w);
      if (!r.valid()) continue;
      if (r.Require("regex")) r.String("regex", &rule.pattern);
      if (r.Require("replacement")) r.String("replacement", &replacement);
      r.Enum("flag", {"last", "break", "redirect", "permanent"}, &flag);
      r.Finish();
    }
    auto re = std::make_shared<const RE2>(rule.pattern, RE2::Quiet);
    if (!re->ok()) {
      ctx.Error(n.Mark(), StrCat(w, ": regex \"", rule.pattern, "\": ", re->error()));
      continue;
    }
    if (re->NumberOfCapturingGroups() > 9) {
      ctx.Error(n.Mark(), StrCat(w, ": at most 9 capturing groups ($1..$9)"));
      continue;
    }
    rule.regex = std::move(re);
    std::string error;
    std::optional<VarTemplate> t = CompileVarTemplate(replacement, &error, /*captures=*/true);
    if (!t.has_value() || replacement.empty()) {
      ctx.Error(n.Mark(), StrCat(w, ": replacement: ", replacement.empty() ? "empty" : error));
      continue;
    }
    rule.replacement = std::move(*t);
    using Flag = RewriteRule::Flag;
    if (flag == "last") {
      rule.flag = Flag::kLast;
    } else if (flag == "break") {
      rule.flag = Flag::kBreak;
    } else if (flag == "redirect") {
      rule.flag = Flag::kRedirect;
    } else if (flag == "permanent") {
      rule.flag = Flag::kPermanent;
    } else if (!flag.empty()) {
      ctx.Error(n.Mark(), StrCat(w, ": flag \"", flag,
                                 "\": expected last, break, redirect or "
                                 "permanent"));
      continue;
    }
    // As nginx: a replacement that starts with the scheme redirects whatever the flag.
    const auto& first = rule.replacement.parts.front();
    bool absolute = first.var == VarTemplate::Var::kScheme ||
                    (first.var == VarTemplate::Var::kText &&
                     (first.text.rfind("http://", 0) == 0 || first.text.rfind("https://", 0) == 0));
    if (!absolute && (first.var != VarTemplate::Var::kText || first.text[0] != '/') &&
        rule.flag != Flag::kRedirect && rule.flag != Flag::kPermanent &&
        first.var != VarTemplate::Var::kCapture) {
      ctx.Error(n.Mark(), StrCat(w, ": replacement \"", replacement,
                                 "\" must start with '/', a "
                                 "capture, http://, https:// or $scheme"));
      continue;
    }
    rule.redirects = absolute || rule.flag == Flag::kRedirect || rule.flag == Flag::kPermanent;
    out->push_back(std::move(rule));
  }
}

// proxy_hide_header: [NAME, ...].
void ParseHideHeaders(ConfigContext& ctx, const YAML::Node& node, const std::string& what,
                      std::vector<std::string>* out) {
  if (!node.IsSequence()) {
    ctx.Error(node.Mark(), StrCat(what, ": expected a list of header names"));
    return;
  }
  out->clear();
  for (const auto& n : node) {
    std::string name;
    if (!ReadScalar(ctx, n, what, &name)) continue;
    if (!ValidHeaderName(name)) {
      ctx.Error(n.Mark(), StrCat(what, ": \"", name, "\" is not a header name"));
      continue;
    }
    out->push_back(AsciiLower(name));
  }
}

void ParseGzip(ConfigContext& ctx, const YAML::Node& node, const std::string& what, GzipConfig* g) {
  if (node.IsScalar()) {
    std::string v;
    if (ReadScalar(ctx, node, what, &v)) {
      std::string l = AsciiLower(v);
      if (l == "on" || l == "true") {
        g->enabled = true;
      } else if (l == "off" || l == "false") {
        g->enabled = false;
      } else {
        ctx.Error(node.Mark(), StrCat(what, ": expected on, off or {types, min_length, ...}"));
      }
    }
    return;
  }
  MapReader r(ctx, node, what);
  if (!r.valid()) return;
  g->enabled = true;
  r.Bool("enabled", &g->enabled);
  std::vector<std::string> types;
  if (r.Has("types") && r.StringList("types", &types)) {
    g->types = {"text/html"};
    for (auto& t : types) {
      t = AsciiLower(t);
      if (t != "text/html") g->types.push_back(t);
    }
  }
  r.Size("min_length", &g->min_length);
  r.Int("level", &g->level, 1, 9);
  r.Bool("vary", &g->vary);
  std::string proxied = "off";
  r.Enum("proxied", {"off", "any"}, &proxied);
  g->proxied = proxied == "any";
  r.Finish();
}

// route.cache: a zone name, or {zone, ttl, key, methods, statuses, max_object_size,
// stale_while_revalidate, stale_if_error, lock, lock_timeout, tag_headers, ignore_set_cookie}.
void ParseRouteCache(ConfigContext& ctx, const YAML::Node& node, const std::string& what,
                     const GatewayConfig& gw, RouteCacheConfig* c) {
  c->enabled = true;
  YAML::Node zone_node = node;
  if (node.IsScalar()) {
    ReadScalar(ctx, node, what, &c->zone);
  } else {
    MapReader r(ctx, node, what);
    if (!r.valid()) return;
    r.Require("zone");
    zone_node.reset(r.Get("zone"));  // (reset: Node = Node would write through)
    r.String("zone", &c->zone);
    r.Bool("enabled", &c->enabled);
    r.String("key", &c->key);
    r.Duration("ttl", &c->ttl_ms);
    if (r.Has("methods")) {
      r.StringList("methods", &c->methods);
      for (auto& m : c->methods) {
        m = AsciiUpper(m);
        if (m != "GET" && m != "HEAD") {
          ctx.Error(r.Get("methods").Mark(),
                    StrCat(what, ".methods: only GET and HEAD responses are cached, not ", m));
        }
      }
    }
    if (r.Has("statuses")) {
      std::vector<std::string> st;
      r.StringList("statuses", &st);
      c->statuses.clear();
      for (const auto& x : st) {
        int v = 0;
        if (!ParseInt(x, &v) || v < 200 || v > 599) {
          ctx.Error(r.Get("statuses").Mark(),
                    StrCat(what, ".statuses: \"", x, "\" is not a status 200-599"));
        } else {
          c->statuses.push_back(v);
        }
      }
    }
    r.Size("max_object_size", &c->max_object_bytes);
    r.Duration("stale_while_revalidate", &c->stale_while_revalidate_ms);
    r.Duration("stale_if_error", &c->stale_if_error_ms);
    r.Bool("lock", &c->lock);
    r.Duration("lock_timeout", &c->lock_timeout_ms);
    if (r.Has("tag_headers")) {
      r.StringList("tag_headers", &c->tag_headers);
      for (auto& h : c->tag_headers) h = AsciiLower(h);
    }
    r.Bool("ignore_set_cookie", &c->ignore_set_cookie);
    r.Finish();
  }
  for (size_t i = 0; i < gw.cache_zones.size(); ++i) {
    if (gw.cache_zones[i].name == c->zone) c->zone_index = static_cast<int>(i);
  }
  if (c->zone_index < 0) {
    std::vector<std::string> names;
    for (const auto& z : gw.cache_zones) names.push_back(z.name);
    std::string hint = Suggest(c->zone, names);
    ctx.Error(zone_node.Mark(),
              StrCat(what, ": no zone named \"", c->zone, "\" in cache_zones",
                     hint.empty() ? "" : StrCat(" (did you mean \"", hint, "\"?)")));
  }
  if (c->key.empty()) ctx.Error(node.Mark(), StrCat(what, ".key: must not be empty"));
}

void ParseRoute(ConfigContext& ctx, const YAML::Node& node, const std::string& what,
                const GatewayConfig& gw, RouteConfig* rc) {
  MapReader r(ctx, node, what);
  if (!r.valid()) return;
  r.String("name", &rc->name);
  int matchers = 0;
  for (auto [key, kind] : {std::pair{"prefix", PathMatch::kPrefix},
                           {"exact", PathMatch::kExact},
                           {"regex", PathMatch::kRegex}}) {
    if (r.Has(key)) {
      ++matchers;
      rc->match = kind;
      r.String(key, &rc->path);
    }
  }
  if (matchers > 1) ctx.Error(node.Mark(), StrCat(what, ": use only one of prefix, exact, regex"));
  if (matchers == 0) rc->path = "/";
  if (rc->match == PathMatch::kRegex) {
    RE2 re(rc->path, RE2::Quiet);
    if (!re.ok()) ctx.Error(r.Get("regex").Mark(), StrCat(what, ".regex: ", re.error()));
  } else if (rc->path.empty() || rc->path[0] != '/') {
    ctx.Error(node.Mark(), StrCat(what, ": paths must start with '/'"));
  }
  r.StringList("host", &rc->hosts);
  for (auto& h : rc->hosts) h = AsciiLower(h);
  r.StringList("methods", &rc->methods);
  for (auto& m : rc->methods) m = AsciiUpper(m);
  r.String("upstream", &rc->upstream);
  YAML::Node ret = r.Get("return");
  if (ret.IsDefined()) {
    ReturnConfig rv;
    if (ret.IsScalar()) {
      int64_t status;
      std::string s;
      if (ReadScalar(ctx, ret, what + ".return", &s) && ParseInt(s, &status)) {
        rv.status = static_cast<int>(status);
      } else {
        ctx.Error(ret.Mark(), StrCat(what, ".return: expected a status or {status, body}"));
      }
    } else {
      MapReader rr(ctx, ret, what + ".return");
      rr.Int("status", &rv.status, 100, 599);
      rr.String("body", &rv.body);
      rr.String("content_type", &rv.content_type);
      rr.String("location", &rv.location);
      rr.Finish();
    }
    if (rv.status < 100 || rv.status > 599)
      ctx.Error(ret.Mark(), StrCat(what, ".return: status must be 100-599"));
    rc->ret = std::move(rv);
  }
  if (rc->ret.has_value() == !rc->upstream.empty()) {
    ctx.Error(node.Mark(), StrCat(what, ": a route needs exactly one of `upstream` or `return`"));
  }
  if (rc->name.empty()) rc->name = rc->ret ? StrCat("return:", rc->path) : rc->path;
  YAML::Node access = r.Get("access");
  if (access.IsDefined()) ParseAccess(ctx, access, what + ".access", &rc->access);
  ParseLimitReq(ctx, r, what, gw, &rc->limit_req);
  ParseLimitConn(ctx, r, what, gw, &rc->limit_conn);
  YAML::Node ban = r.Get("ban");
  if (ban.IsDefined()) ParseBan(ctx, ban, what + ".ban", &rc->ban);
  rc->jwt_set = r.Has("jwt");
  r.String("jwt", &rc->jwt);
  if (r.Has("retry_non_idempotent")) {
    bool v = false;
    r.Bool("retry_non_idempotent", &v);
    rc->retry_non_idempotent = v;
  }
  YAML::Node gz = r.Get("gzip");
  if (gz.IsDefined()) {
    rc->gzip_set = true;
    ParseGzip(ctx, gz, what + ".gzip", &rc->gzip);
  }
  YAML::Node ah = r.Get("add_header");
  if (ah.IsDefined()) {
    rc->add_headers_set = true;
    ParseAddHeaders(ctx, ah, what + ".add_header", &rc->add_headers);
  }
  YAML::Node sh = r.Get("proxy_set_header");
  if (sh.IsDefined()) {
    rc->set_headers_set = true;
    ParseSetHeaders(ctx, sh, what + ".proxy_set_header", &rc->set_headers);
  }
  YAML::Node hh = r.Get("proxy_hide_header");
  if (hh.IsDefined()) {
    rc->hide_headers_set = true;
    ParseHideHeaders(ctx, hh, what + ".proxy_hide_header", &rc->hide_headers);
  }
  ParseLocationLimits(ctx, r, what, &rc->client_max_body_size, &rc->connect_timeout_ms,
                      &rc->send_timeout_ms, &rc->read_timeout_ms);
  YAML::Node rw = r.Get("rewrite");
  if (rw.IsDefined()) ParseRewrites(ctx, rw, what + ".rewrite", &rc->rewrites);
  if (rc->ret.has_value() &&
      (r.Has("connect_timeout") || r.Has("send_timeout") || r.Has("read_timeout"))) {
    ctx.Error(node.Mark(), StrCat(what,
                                  ": connect_timeout, send_timeout and read_timeout need an "
                                  "upstream; this route answers with `return`"));
  }
  if (rc->ret.has_value() && (sh.IsDefined() || hh.IsDefined())) {
    ctx.Error((sh.IsDefined() ? sh : hh).Mark(),
              StrCat(what,
                     ": proxy_set_header and proxy_hide_header need an upstream; this route "
                     "answers with `return`"));
  }
  YAML::Node cache = r.Get("cache");
  if (cache.IsDefined()) ParseRouteCache(ctx, cache, what + ".cache", gw, &rc->cache);
  r.Finish();
}

// nginx-style inheritance: a route without its own rules takes its listener's.
void InheritFromListener(const ListenerConfig& l, RouteConfig* rc) {
  if (!rc->access.set) rc->access = l.access;
  LimitReqConfig& lr = rc->limit_req;
  if (!lr.set) lr.rules = l.limit_req.rules;
  if (!lr.status_set) lr.status = l.limit_req.status;
  if (!lr.dry_run_set) lr.dry_run = l.limit_req.dry_run;
  if (!lr.retry_after_set) lr.retry_after = l.limit_req.retry_after;
  LimitConnConfig& lc = rc->limit_conn;
  if (!lc.set) lc.rules = l.limit_conn.rules;
  if (!lc.status_set) lc.status = l.limit_conn.status;
  if (!lc.dry_run_set) lc.dry_run = l.limit_conn.dry_run;
  if (!rc->ban.set) rc->ban = l.ban;
  if (!rc->jwt_set) rc->jwt = l.jwt;
  if (!rc->add_headers_set) rc->add_headers = l.add_headers;
  if (!rc->set_headers_set) rc->set_headers = l.set_headers;
  if (!rc->hide_headers_set) rc->hide_headers = l.hide_headers;
  if (rc->client_max_body_size < 0) rc->client_max_body_size = l.client_max_body_size;
  if (rc->connect_timeout_ms == 0) rc->connect_timeout_ms = l.connect_timeout_ms;
  if (rc->send_timeout_ms == 0) rc->send_timeout_ms = l.send_timeout_ms;
  if (rc->read_timeout_ms == 0) rc->read_timeout_ms = l.read_timeout_ms;
  if (!rc->gzip_set) rc->gzip = l.gzip;
  for (const auto& h : rc->add_headers) {
    std::string& block = h.always ? rc->add_header_always_block : rc->add_header_block;
    StrAppend(&block, h.name, ": ", h.value, "\r\n");
  }
}

}  // namespace

bool AccessList::Allows(const IpAddress& ip) const {
  for (const auto& rule : rules) {
    if (rule.all || rule.block.Contains(ip)) return rule.allow;
  }
  return true;
}

int GatewayConfig::FindConnZone(std::string_view name) const {
  for (size_t i = 0; i < conn_zones.size(); ++i) {
    if (conn_zones[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

int GatewayConfig::FindLimitZone(std::string_view name) const {
  for (size_t i = 0; i < limit_zones.size(); ++i) {
    if (limit_zones[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

const UpstreamConfig* GatewayConfig::FindUpstream(std::string_view name) const {
  for (const auto& u : upstreams) {
    if (u.name == name) return &u;
  }
  return nullptr;
}

void ParseGatewayConfig(ConfigContext& ctx, MapReader& top, GatewayConfig* out) {
  // http: limits and client-side timeouts (nginx names and defaults).
  YAML::Node http = top.Get("http");
  if (http.IsDefined()) {
    MapReader r(ctx, http, "http");
    HttpConfig& h = out->http;
    int64_t v = static_cast<int64_t>(h.limits.max_request_line);
    if (r.Size("max_request_line", &v)) h.limits.max_request_line = static_cast<size_t>(v);
    v = static_cast<int64_t>(h.limits.max_header_bytes);
    if (r.Size("max_header_bytes", &v)) h.limits.max_header_bytes = static_cast<size_t>(v);
    r.Int("max_headers", &h.limits.max_headers, 1, 10000);
    r.Size("client_max_body_size", &h.client_max_body_size);
    r.Duration("client_header_timeout", &h.client_header_timeout_ms);
    r.Duration("client_body_timeout", &h.client_body_timeout_ms);
    r.Duration("keepalive_timeout", &h.keepalive_timeout_ms);
    r.Int("keepalive_requests", &h.keepalive_requests, 1, 100000000);
    r.Duration("send_timeout", &h.send_timeout_ms);
    r.Int("max_connections", &h.max_connections, 1, 10000000);
    r.Bool("merge_slashes", &h.path.merge_slashes);
    std::string slashes, upstream_path;
    r.Enum("escaped_slashes", {"decode", "keep", "reject"}, &slashes);
    if (slashes == "keep") h.path.escaped_slashes = http::EscapedSlashes::kKeep;
    if (slashes == "reject") h.path.escaped_slashes = http::EscapedSlashes::kReject;
    r.Enum("upstream_path", {"normalized", "original"}, &upstream_path);
    if (upstream_path == "original") h.upstream_path = UpstreamPath::kOriginal;
    YAML::Node h2 = r.Get("http2");
    if (h2.IsDefined()) {
      MapReader m(ctx, h2, "http.http2");
      Http2Config& c = h.http2;
      m.Int("max_concurrent_streams", &c.max_concurrent_streams, 1, 10000);
      int64_t n = c.initial_window_size;
      if (m.Size("initial_window_size", &n)) {
        if (n < 1024 || n > 16 * 1024 * 1024) {
          ctx.Error(m.Get("initial_window_size").Mark(),
                    "http.http2.initial_window_size: must be between 1k and 16m");
        } else {
          c.initial_window_size = static_cast<int>(n);
        }
      }
      n = c.header_table_size;
      if (m.Size("header_table_size", &n)) {
        if (n < 0 || n > 65536) {
          ctx.Error(m.Get("header_table_size").Mark(),
                    "http.http2.header_table_size: must be between 0 and 64k");
        } else {
          c.header_table_size = static_cast<int>(n);
        }
      }
      m.Int("max_continuations", &c.max_continuations, 0, 1000);
      m.Int("reset_burst", &c.reset_burst, 1, 1000000);
      m.Int("reset_rate", &c.reset_rate, 1, 1000000);
      m.Int("control_burst", &c.control_burst, 1, 1000000);
      m.Int("control_rate", &c.control_rate, 1, 1000000);
      m.Finish();
    }
    if (h.limits.max_header_bytes < 256 || h.limits.max_header_bytes > 1024 * 1024) {
      ctx.Error(http.Mark(), "http.max_header_bytes: must be between 256 and 1M");
    }
    if (h.limits.max_request_line < 64 || h.limits.max_request_line > h.limits.max_header_bytes) {
      ctx.Error(http.Mark(), "http.max_request_line: must be between 64 and max_header_bytes");
    }
    r.Finish();
  }

  std::vector<std::string> proxies;
  YAML::Node tp = top.Get("trusted_proxies");
  top.StringList("trusted_proxies", &proxies);
  for (const auto& p : proxies) {
    auto c = ParseCidr(p);
    if (!c.ok()) {
      ctx.Error(tp.Mark(), StrCat("trusted_proxies: ", c.status().message()));
    } else {
      out->trusted_proxies.push_back(*c);
    }
  }

  YAML::Node al = top.Get("access_log");
  if (al.IsDefined()) {
    MapReader r(ctx, al, "access_log");
    r.Bool("enabled", &out->access_log.enabled);
    r.String("path", &out->access_log.path);
    r.Size("max_size", &out->access_log.max_size);
    r.Int("max_files", &out->access_log.max_files, 0, 1000);
    r.Bool("compress", &out->access_log.compress);
    if (out->access_log.path.empty())
      ctx.Error(al.Mark(), "access_log.path: must not be empty (use stdout)");
    r.Finish();
  }

  YAML::Node ups = top.Get("upstreams");
  ForEachNamed(ctx, ups, "upstreams", "expected a mapping of upstream names to their settings",
               [&](const std::string& name, const YAML::Node& body) {
                 UpstreamConfig u;
                 ParseUpstream(ctx, name, body, &u);
                 out->upstreams.push_back(std::move(u));
               });

  YAML::Node redis = top.Get("redis");
  if (redis.IsDefined()) {
    MapReader r(ctx, redis, "redis");
    RedisConfig& rc = out->redis;
    rc.enabled = true;
    r.Bool("enabled", &rc.enabled);
    // address / host + port, cluster or sentinel: the cache library's keys, read by its code.
    ParseRedisServers(ctx, r, &rc.servers, &rc.password, &rc.db);
    if (rc.servers.nodes.empty() && !r.Has("cluster") && !r.Has("sentinel"))
      ctx.Error(redis.Mark(), "redis: needs address, cluster or sentinel");
    r.String("username", &rc.username);
    r.String("password", &rc.password);
    if (!rc.username.empty() && rc.password.empty())
      ctx.Error(redis.Mark(), "redis.username: needs password (AUTH username password)");
    r.Int("db", &rc.db, 0, 1000);
    if (rc.servers.mode == RedisServers::Mode::kCluster && rc.db != 0 && r.Has("db"))
      ctx.Error(r.Get("db").Mark(), "redis.db: Redis Cluster has only database 0");
    if (YAML::Node tls = r.Get("tls"); tls.IsDefined())
      ParseUpstreamTls(ctx, tls, "redis.tls", &rc.tls);
    r.Duration("timeout", &rc.timeout_ms);
    r.Duration("connect_timeout", &rc.connect_timeout_ms);
    r.String("key_prefix", &rc.key_prefix);
    if (rc.timeout_ms <= 0 || rc.connect_timeout_ms <= 0)
      ctx.Error(redis.Mark(), "redis: timeouts must be positive");
    r.Finish();
  }

  for (const auto& u : out->upstreams) {
    if (!u.sticky.session_cookie.empty() && !out->redis.enabled)
      ctx.Error(ups.Mark(), StrCat("upstreams.", u.name,
                                   ".sticky.session_cookie: needs a `redis:` section (the "
                                   "session table lives there)"));
  }

  ForEachNamed(ctx, top.Get("jwt_providers"), "jwt_providers",
               "expected a mapping of provider names to settings",
               [&](const std::string& name, const YAML::Node& body) {
                 JwtProviderConfig p;
                 ParseJwtProvider(ctx, name, body, &p);
                 out->jwt_providers.push_back(std::move(p));
               });

  // cache_zones: name -> {max_size, max_entries, policy} (nginx proxy_cache_path keys_zone).
  ForEachNamed(
      ctx, top.Get("cache_zones"), "cache_zones", "expected a mapping of zone names to settings",
      [&](const std::string& name, const YAML::Node& body) {
        CacheZoneConfig z;
        z.name = name;
        std::string what = StrCat("cache_zones.", z.name);
        MapReader r(ctx, body, what);
        if (!r.valid()) return;
        r.Size("max_size", &z.max_bytes);
        r.Int("max_entries", &z.max_entries, 0, int64_t{1} << 32);
        if (YAML::Node p = r.Get("policy"); p.IsDefined()) {
          std::string text;
          if (ReadScalar(ctx, p, what + ".policy", &text)) {
            auto policy = cache::ParseEvictionPolicy(text);
            if (policy.ok()) {
              z.policy = *policy;
            } else {
              ctx.Error(p.Mark(), StrCat(what, ".policy: ", policy.status().message()));
            }
          }
        }
        r.Bool("redis", &z.redis);
        r.Bool("per_worker", &z.per_worker);
        if (z.redis && !out->redis.enabled)
          ctx.Error(
              r.Get("redis").Mark(),
              StrCat(what, ".redis: needs a `redis:` section with the server to share through"));
        if (z.max_bytes < (int64_t{1} << 20) || z.max_bytes > (int64_t{1} << 40))
          ctx.Error(body.Mark(), StrCat(what, ".max_size: must be between 1m and 1t"));
        r.Finish();
        out->cache_zones.push_back(std::move(z));
      });

  // limit_req_zones: name -> {key, rate, size} (nginx limit_req_zone).
  ForEachNamed(
      ctx, top.Get("limit_req_zones"), "limit_req_zones",
      "expected a mapping of zone names to settings",
      [&](const std::string& name, const YAML::Node& body) {
        LimitZoneConfig z;
        z.name = name;
        std::string what = StrCat("limit_req_zones.", z.name);
        MapReader r(ctx, body, what);
        if (!r.valid()) return;
        z.key.parts = {KeyPart{}};
        z.key.text = "client_ip";
        YAML::Node key = r.Get("key");
        if (key.IsDefined()) ParseKeySpec(ctx, key, what + ".key", &z.key);
        if (r.Require("rate") && r.Rate("rate", &z.rate_milli) && z.rate_milli <= 0)
          ctx.Error(r.Get("rate").Mark(), StrCat(what, ".rate: must be at least 1r/m"));
        r.Size("size", &z.size_bytes);
        r.Bool("shared", &z.shared);
        std::string failure = "local";
        r.Enum("redis_failure", {"local", "open", "closed"}, &failure);
        z.redis_failure = failure == "open"     ? RedisFailure::kOpen
                          : failure == "closed" ? RedisFailure::kClosed
                                                : RedisFailure::kLocal;
        if (z.shared && !out->redis.enabled)
          ctx.Error(
              r.Get("shared").Mark(),
              StrCat(what, ".shared: needs a `redis:` section with the server to share through"));
        // nginx refuses zones smaller than 8 pages; the same floor keeps a useful table here.
        if (z.size_bytes < 32 * 1024 || z.size_bytes > (int64_t{1} << 34))
          ctx.Error(body.Mark(), StrCat(what, ".size: must be between 32k and 16g"));
        r.Finish();
        out->limit_zones.push_back(std::move(z));
      });

  // limit_conn_zones: name -> {key, size} (nginx limit_conn_zone).
  ForEachNamed(ctx, top.Get("limit_conn_zones"), "limit_conn_zones",
               "expected a mapping of zone names to settings",
               [&](const std::string& name, const YAML::Node& node) {
                 LimitConnZoneConfig z;
                 z.name = name;
                 std::string what = StrCat("limit_conn_zones.", name);
                 MapReader r(ctx, node, what);
                 if (!r.valid()) return;
                 z.key.parts = {KeyPart{}};
                 z.key.text = "client_ip";
                 YAML::Node key = r.Get("key");
                 if (key.IsDefined()) ParseKeySpec(ctx, key, what + ".key", &z.key);
                 r.Size("size", &z.size_bytes);
                 if (z.size_bytes < 32 * 1024 || z.size_bytes > (int64_t{1} << 34))
                   ctx.Error(node.Mark(), StrCat(what, ".size: must be between 32k and 16g"));
                 r.Finish();
                 out->conn_zones.push_back(std::move(z));
               });

  YAML::Node bans = top.Get("bans");
  if (bans.IsDefined()) {
    MapReader r(ctx, bans, "bans");
    r.Int("max_entries", &out->bans.max_entries, 16, 100000000);
    r.Int("status", &out->bans.status, 400, 599);
    std::vector<std::string> never;
    YAML::Node nb = r.Get("never_ban");
    r.StringList("never_ban", &never);
    for (const auto& n : never) {
      auto c = ParseCidr(n);
      if (!c.ok()) {
        ctx.Error(nb.Mark(), StrCat("bans.never_ban: ", c.status().message()));
      } else {
        out->bans.never_ban.push_back(*c);
      }
    }
    r.Finish();
  }

  YAML::Node ls = top.Get("listeners");
  if (!ls.IsDefined() || !ls.IsSequence()) {
    if (ls.IsDefined()) ctx.Error(ls.Mark(), "listeners: expected a list of listeners");
  } else {
    int li = 0;
    for (const auto& ln : ls) {
      std::string what = StrCat("listeners[", li++, "]");
      ListenerConfig lc;
      MapReader r(ctx, ln, what);
      if (!r.valid()) continue;
      r.String("name", &lc.name);
      if (r.Require("listen") && r.String("listen", &lc.listen_text)) {
        auto a = ParseSocketAddress(lc.listen_text);
        if (!a.ok()) {
          ctx.Error(r.Get("listen").Mark(), StrCat(what, ".listen: ", a.status().message()));
        } else {
          lc.address = *a;
        }
        for (const auto& other : out->listeners) {
          if (other.listen_text == lc.listen_text)
            ctx.Error(r.Get("listen").Mark(),
                      StrCat(what, ".listen: ", lc.listen_text, " is used by another listener"));
        }
      }
      if (lc.name.empty()) lc.name = lc.listen_text;
      YAML::Node access = r.Get("access");
      if (access.IsDefined()) ParseAccess(ctx, access, what + ".access", &lc.access);
      ParseLimitReq(ctx, r, what, *out, &lc.limit_req);
      ParseLimitConn(ctx, r, what, *out, &lc.limit_conn);
      YAML::Node ban = r.Get("ban");
      if (ban.IsDefined()) ParseBan(ctx, ban, what + ".ban", &lc.ban);
      r.String("jwt", &lc.jwt);
      r.Bool("http2", &lc.http2);
      lc.tls.settings.http2 = lc.http2;  // read before the TLS server is built: ALPN offers h2
      YAML::Node tls = r.Get("tls");
      if (tls.IsDefined()) ParseTls(ctx, tls, what + ".tls", &lc.tls);
      YAML::Node ah = r.Get("add_header");
      if (ah.IsDefined()) ParseAddHeaders(ctx, ah, what + ".add_header", &lc.add_headers);
      YAML::Node sh = r.Get("proxy_set_header");
      if (sh.IsDefined()) ParseSetHeaders(ctx, sh, what + ".proxy_set_header", &lc.set_headers);
      YAML::Node hh = r.Get("proxy_hide_header");
      if (hh.IsDefined()) ParseHideHeaders(ctx, hh, what + ".proxy_hide_header", &lc.hide_headers);
      YAML::Node gz = r.Get("gzip");
      if (gz.IsDefined()) ParseGzip(ctx, gz, what + ".gzip", &lc.gzip);
      ParseLocationLimits(ctx, r, what, &lc.client_max_body_size, &lc.connect_timeout_ms,
                          &lc.send_timeout_ms, &lc.read_timeout_ms);
      YAML::Node rw = r.Get("rewrite");
      if (rw.IsDefined()) ParseRewrites(ctx, rw, what + ".rewrite", &lc.rewrites);
      YAML::Node routes = r.Get("routes");
      if (!routes.IsDefined() || !routes.IsSequence() || routes.size() == 0) {
        ctx.Error(routes.IsDefined() ? routes.Mark() : ln.Mark(),
                  StrCat(what, ": expected `routes:` with at least one route"));
      } else {
        int ri = 0;
        for (const auto& rn : routes) {
          RouteConfig rc;
          std::string rwhat = StrCat(what, ".routes[", ri++, "]");
          ParseRoute(ctx, rn, rwhat, *out, &rc);
          InheritFromListener(lc, &rc);
          if (!rc.jwt.empty()) {
            for (size_t i = 0; i < out->jwt_providers.size(); ++i) {
              if (out->jwt_providers[i].name == rc.jwt) rc.jwt_index = static_cast<int>(i);
            }
            if (rc.jwt_index < 0) {
              std::vector<std::string> names;
              for (const auto& p : out->jwt_providers) names.push_back(p.name);
              std::string hint = Suggest(rc.jwt, names);
              ctx.Error(rn.Mark(),
                        StrCat(rwhat, ".jwt: no jwt_providers entry named \"", rc.jwt, "\"",
                               hint.empty() ? "" : StrCat(" (did you mean \"", hint, "\"?)")));
            }
          }
          if (!rc.upstream.empty() && out->FindUpstream(rc.upstream) == nullptr) {
            std::vector<std::string> names;
            for (const auto& u : out->upstreams) names.push_back(u.name);
            std::string hint = Suggest(rc.upstream, names);
            ctx.Error(rn.Mark(),
                      StrCat(rwhat, ".upstream: no upstream named \"", rc.upstream, "\"",
                             hint.empty() ? "" : StrCat(" (did you mean \"", hint, "\"?)")));
          }
          lc.routes.push_back(std::move(rc));
        }
      }
      r.Finish();
      out->listeners.push_back(std::move(lc));
    }
  }
}

}  // namespace bulwark::gateway
