#include "app/config.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "app/privileges.h"
#include "core/host_pins.h"
#include "core/net.h"
#include "core/strings.h"

namespace bulwark {

int Config::EffectiveWorkers() const {
  if (workers > 0) return workers;
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

namespace {

ConfigLoad Parse(ConfigContext& ctx, std::optional<YAML::Node> root, const std::string& path) {
  ConfigLoad out;
  if (!root.has_value()) {
    out.errors = ctx.errors();
    return out;
  }
  auto cfg = std::make_unique<Config>();
  cfg->path = path;
  if (root->IsNull()) {
    ctx.Error("the file is empty; see config/examples/minimal.yml for a starting point");
    out.errors = ctx.errors();
    return out;
  }
  MapReader top(ctx, *root, "config");
  if (top.valid()) {
    YAML::Node w = top.Get("workers");
    if (w.IsDefined()) {
      std::string s;
      if (ReadScalar(ctx, w, "workers", &s)) {
        int n = 0;
        if (s == "auto") {
          cfg->workers = 0;
        } else if (ParseInt(s, &n) && n >= 1 && n <= 256) {
          cfg->workers = n;
        } else {
          ctx.Error(w.Mark(), StrCat("workers: expected \"auto\" or a number from 1 to 256, got \"",
                                     s, "\""));
        }
      }
    }
    top.String("user", &cfg->user);
    top.String("group", &cfg->group);
    if (!cfg->group.empty() && cfg->user.empty())
      ctx.Error(top.Get("group").Mark(), "group: needs user");
    if (!cfg->user.empty()) {
      if (absl::StatusOr<RunAs> who = LookUpRunAs(cfg->user, cfg->group); !who.ok()) {
        std::string m(who.status().message());
        ctx.Error(top.Get(StartsWith(m, "group") ? "group" : "user").Mark(), m);
      }
    }
    top.Duration("drain_timeout", &cfg->drain_timeout_ms);
    top.String("state_dir", &cfg->state_dir);
    top.Int("reserved_descriptors", &cfg->reserved_descriptors, 16, 10000000);
    YAML::Node log = top.Get("log");
    if (log.IsDefined()) {
      MapReader r(ctx, log, "log");
      r.Enum("level", {"debug", "info", "warn", "error"}, &cfg->log_level);
      r.Enum("format", {"text", "json"}, &cfg->log_format);
      r.String("file", &cfg->log_file.path);
      r.String("error_file", &cfg->error_log);
      r.Size("max_size", &cfg->log_file.max_size);
      r.Int("max_files", &cfg->log_file.max_files, 0, 1000);
      r.Bool("compress", &cfg->log_file.compress);
      r.Finish();
    }
    YAML::Node metrics = top.Get("metrics");
    if (metrics.IsDefined()) {
      MapReader r(ctx, metrics, "metrics");
      r.Bool("enabled", &cfg->metrics_enabled);
      r.Finish();
    }
    YAML::Node cluster = top.Get("cluster");
    if (cluster.IsDefined()) {
      MapReader r(ctx, cluster, "cluster");
      r.String("name", &cfg->cluster.name);
      YAML::Node etcd = r.Get("etcd");
      if (etcd.IsDefined()) {
        MapReader e(ctx, etcd, "cluster.etcd");
        e.Require("endpoints");
        e.StringList("endpoints", &cfg->cluster.etcd_endpoints);
        e.String("key_prefix", &cfg->cluster.etcd_key_prefix);
        e.Duration("lease_ttl", &cfg->cluster.lease_ttl_ms);
        if (cfg->cluster.lease_ttl_ms < 2000) {
          ctx.Error(etcd.Mark(), "cluster.etcd.lease_ttl: at least 2s (etcd counts in seconds)");
        }
        ClusterConfig& cc = cfg->cluster;
        e.String("username", &cc.etcd_username);
        e.String("password", &cc.etcd_password);
        if (cc.etcd_username.empty() != cc.etcd_password.empty())
          ctx.Error(etcd.Mark(), "cluster.etcd: username and password go together (etcd auth)");
        if (YAML::Node tls = e.Get("tls"); tls.IsDefined()) {
          MapReader t(ctx, tls, "cluster.etcd.tls");
          for (auto [key, out] : {std::pair<const char*, std::string*>{"ca_file", &cc.etcd_ca_file},
                                  {"cert", &cc.etcd_cert_file},
                                  {"key", &cc.etcd_key_file}}) {
            if (!t.String(key, out) || out->empty()) continue;
            *out = ctx.Resolve(*out);
            if (access(out->c_str(), R_OK) != 0)
              ctx.Error(t.Get(key).Mark(), StrCat("cluster.etcd.tls.", key, ": cannot read ", *out,
                                                  ": ", strerror(errno)));
          }
          if (cc.etcd_cert_file.empty() != cc.etcd_key_file.empty())
            ctx.Error(tls.Mark(), "cluster.etcd.tls: cert and key go together");
          t.Finish();
        }
        YAML::Node list = e.Get("endpoints");
        for (size_t i = 0; i < cfg->cluster.etcd_endpoints.size(); ++i) {
          std::string& ep = cfg->cluster.etcd_endpoints[i];
          YAML::Mark mark = list.IsSequence() && i < list.size() ? list[i].Mark() : etcd.Mark();
          if (ep.find("://") == std::string::npos) ep = "http://" + ep;
          while (!ep.empty() && ep.back() == '/') ep.pop_back();
          cfg->cluster.etcd_where.push_back(ctx.Where(mark));
          if (absl::StatusOr<HostPort> hp = UrlHostPort(ep); !hp.ok())
            ctx.Error(mark, StrCat("cluster.etcd.endpoints: ", hp.status().message()));
        }
        e.Finish();
      }
      r.Finish();
    }
    YAML::Node resolver = top.Get("resolver");
    if (resolver.IsDefined()) {
      MapReader r(ctx, resolver, "resolver");
      ResolverOptions& o = cfg->resolver;
      r.StringList("servers", &o.servers);
      for (const std::string& server : o.servers) {
        if (!IpAddress::Parse(server).has_value() && !ParseSocketAddress(server).ok()) {
          ctx.Error(r.Get("servers").Mark(),
                    StrCat("resolver.servers: \"", server,
                           "\" is not IP, IP:PORT or [IPv6]:PORT (name servers are addresses)"));
        }
      }
      r.Duration("min_ttl", &o.min_ttl_ms);
      r.Duration("max_ttl", &o.max_ttl_ms);
      r.Duration("timeout", &o.timeout_ms);
      r.Int("attempts", &o.attempts, 1, 10);
      r.Duration("retry", &o.retry_ms);
      r.Bool("required_at_start", &cfg->resolver_required_at_start);
      if (o.min_ttl_ms < 100 || o.max_ttl_ms < o.min_ttl_ms || o.max_ttl_ms > 86400000)
        ctx.Error(resolver.Mark(),
                  "resolver: min_ttl must be at least 100ms and max_ttl between min_ttl and 1d");
      if (o.timeout_ms < 10 || o.timeout_ms > 60000)
        ctx.Error(resolver.Mark(), "resolver.timeout: between 10ms and 60s");
      if (o.retry_ms < 100 || o.retry_ms > 3600000)
        ctx.Error(resolver.Mark(), "resolver.retry: between 100ms and 1h");
      r.Finish();
    }
    YAML::Node admin = top.Get("admin");
    if (admin.IsDefined()) {
      MapReader r(ctx, admin, "admin");
      r.Bool("enabled", &cfg->admin.enabled);
      r.String("listen", &cfg->admin.listen);
      r.String("token", &cfg->admin.token);
      if (!cfg->admin.token.empty() && cfg->admin.token.size() < 16) {
        ctx.Error(r.Get("token").Mark(),
                  "admin.token: use at least 16 characters (or leave it out: bulwark then "
                  "generates one in its state directory)");
      }
      r.StringList("server_names", &cfg->admin.server_names);
      r.Bool("protect_metrics", &cfg->admin.protect_metrics);
      YAML::Node audit = r.Get("audit_log");
      if (audit.IsDefined()) {
        MapReader a(ctx, audit, "admin.audit_log");
        a.String("path", &cfg->admin.audit_log.path);
        a.Size("max_size", &cfg->admin.audit_log.max_size);
        a.Int("max_files", &cfg->admin.audit_log.max_files, 0, 1000);
        a.Bool("compress", &cfg->admin.audit_log.compress);
        a.Finish();
      }
      r.Finish();
    }
    if (cfg->admin.enabled) {
      auto a = ParseSocketAddress(cfg->admin.listen);
      if (!a.ok()) {
        ctx.Error(admin.IsDefined() ? admin.Mark() : root->Mark(),
                  StrCat("admin.listen: ", a.status().message()));
      } else {
        cfg->admin.address = *a;
      }
    }
    YAML::Node observe = top.Get("observe");
    if (observe.IsDefined()) observe::LoadObserveConfig(ctx, observe, cfg->observe.get());
    YAML::Node pg = top.Get("pg");
    if (pg.IsDefined()) pg::LoadPgConfig(ctx, pg, cfg->pg.get());
    if (cfg->pg->failover.enabled && cfg->cluster.etcd_endpoints.empty() &&
        !cfg->pg->failover.single_instance) {
      // Two instances promoting on their own would each pick a primary: split brain.
      ctx.Error(pg["failover"].Mark(),
                "pg.failover: automatic failover without cluster.etcd needs `single_instance: "
                "true` (this is the only bulwark in front of these databases); with several "
                "instances, configure cluster.etcd so that only the lease holder promotes");
    }
    YAML::Node vault = top.Get("vault");
    if (vault.IsDefined()) vault::LoadVaultConfig(ctx, vault, cfg->vault.get());
    gateway::ParseGatewayConfig(ctx, top, cfg->gateway.get());
    // Observing alone (scrapes and rules behind the admin API) is something to do too.
    bool observes =
        cfg->admin.enabled && (!cfg->observe->scrape.empty() || !cfg->observe->rule_files.empty());
    if (cfg->gateway->listeners.empty() && !cfg->pg->enabled && !cfg->vault->enabled && !observes &&
        ctx.ok()) {
      ctx.Error(root->Mark(),
                "config: no `listeners:`, no `pg:`, no `vault:` and no `observe:` scrapes or "
                "rules; bulwark needs something to do");
    }
    if (cfg->admin.enabled) {
      for (const auto& l : cfg->gateway->listeners) {
        if (l.listen_text == cfg->admin.listen) {
          ctx.Error(root->Mark(),
                    StrCat("admin.listen: ", cfg->admin.listen, " is also a gateway listener"));
        }
      }
      if (cfg->pg->enabled && cfg->pg->listen_text == cfg->admin.listen) {
        ctx.Error(root->Mark(), StrCat("admin.listen: ", cfg->admin.listen, " is also pg.listen"));
      }
    }
    top.Finish();
  }
  out.errors = ctx.errors();
  if (out.errors.empty()) out.config = std::move(cfg);
  return out;
}

}  // namespace

ConfigLoad LoadConfigFile(const std::string& path, const EnvLookup& env) {
  ConfigContext ctx(path, env);
  return Parse(ctx, LoadYamlFile(ctx, path), path);
}

std::vector<std::string> CheckNamesResolve(const Config& cfg, Resolver* resolver) {
  if (!cfg.resolver_required_at_start) return {};
  // Every place a name is written: the planes' servers, the gateway's Redis, then the URLs
  // libcurl connects to.
  std::vector<NamedServer> places = gateway::NamedServers(*cfg.gateway);
  if (cfg.gateway->redis.enabled) {
    for (const RedisEndpoint& e : cfg.gateway->redis.servers.nodes) {
      if (!IpAddress::Parse(e.host)) places.push_back({e.host, e.where});
    }
  }
  if (cfg.pg->enabled) {
    std::vector<NamedServer> pg = pg::NamedServers(*cfg.pg);
    places.insert(places.end(), pg.begin(), pg.end());
  }
  auto add_url = [&](const std::string& url, const std::string& at) {
    absl::StatusOr<HostPort> hp = UrlHostPort(url);
    if (hp.ok() && !hp->host.empty()) places.push_back({hp->host, at});
  };
  for (size_t i = 0; i < cfg.cluster.etcd_endpoints.size(); ++i)
    add_url(cfg.cluster.etcd_endpoints[i], cfg.cluster.etcd_where[i]);
  if (cfg.observe) {
    for (size_t i = 0; i < cfg.observe->forward.size(); ++i)
      add_url(cfg.observe->forward[i], cfg.observe->forward_where[i]);
    for (const auto& job : cfg.observe->scrape) {
      for (size_t i = 0; i < job.targets.size(); ++i)
        add_url("http://" + job.targets[i], job.targets_where[i]);
    }
  }
  std::vector<std::string> errors;
  if (places.empty()) return errors;
  std::vector<std::string> names;
  for (const NamedServer& p : places) names.push_back(p.name);
  auto answers = resolver->LookupAll(names);
  for (size_t i = 0; i < places.size(); ++i) {
    if (!answers[i].ok()) {
      errors.push_back(StrCat(places[i].where, ": ", answers[i].status().message(),
                              " (resolver.required_at_start is true)"));
    }
  }
  return errors;
}

ConfigLoad LoadConfigText(const std::string& text, const std::string& name, const EnvLookup& env) {
  ConfigContext ctx(name, env);
  return Parse(ctx, LoadYamlText(ctx, text), name);
}

}  // namespace bulwark
