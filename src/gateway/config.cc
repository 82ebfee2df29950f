#include "gateway/config.h"

#include <algorithm>

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
  auto a = ParseSocketAddress(s->address_text);
  if (!a.ok()) {
    ctx.Error(addr_node.Mark(), StrCat(what, ".address: ", a.status().message()));
  } else if (a->port() == 0) {
    ctx.Error(addr_node.Mark(), StrCat(what, ".address: a server needs a port"));
  } else {
    s->address = *a;
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

void ParseRoute(ConfigContext& ctx, const YAML::Node& node, const std::string& what,
                RouteConfig* rc) {
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
  r.Finish();
}

}  // namespace

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
  if (ups.IsDefined()) {
    if (!ups.IsMap()) {
      ctx.Error(ups.Mark(), "upstreams: expected a mapping of upstream names to their settings");
    } else {
      for (const auto& kv : ups) {
        UpstreamConfig u;
        ParseUpstream(ctx, kv.first.Scalar(), kv.second, &u);
        out->upstreams.push_back(std::move(u));
      }
    }
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
      YAML::Node routes = r.Get("routes");
      if (!routes.IsDefined() || !routes.IsSequence() || routes.size() == 0) {
        ctx.Error(routes.IsDefined() ? routes.Mark() : ln.Mark(),
                  StrCat(what, ": expected `routes:` with at least one route"));
      } else {
        int ri = 0;
        for (const auto& rn : routes) {
          RouteConfig rc;
          std::string rwhat = StrCat(what, ".routes[", ri++, "]");
          ParseRoute(ctx, rn, rwhat, &rc);
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
