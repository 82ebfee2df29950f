#include "core/redis_link.h"

#include "core/strings.h"

namespace bulwark {
namespace {

bool ParseEndpoint(ConfigContext& ctx, const YAML::Node& n, std::string_view what,
                   RedisEndpoint* out) {
  if (n.IsScalar()) {
    std::string s;
    if (!ReadScalar(ctx, n, what, &s)) return false;
    size_t colon = s.rfind(':');
    out->host = colon == std::string::npos ? s : s.substr(0, colon);
    if (colon != std::string::npos &&
        (!ParseInt(std::string_view(s).substr(colon + 1), &out->port) || out->port <= 0 ||
         out->port > 65535)) {
      ctx.Error(n.Mark(), StrCat(what, ": \"", s, "\" is not HOST:PORT"));
      return false;
    }
    if (!out->host.empty() && out->host.front() == '[' && out->host.back() == ']') {
      out->host = out->host.substr(1, out->host.size() - 2);
    }
  } else {
    MapReader r(ctx, n, std::string(what));
    if (!r.valid()) return false;
    r.Require("host");
    r.String("host", &out->host);
    r.Int("port", &out->port, 1, 65535);
    r.Finish();
  }
  if (!IpAddress::Parse(out->host) && !IsHostName(out->host)) {
    ctx.Error(n.Mark(),
              StrCat(what, ": \"", out->host, "\" is neither an address nor a host name"));
    return false;
  }
  out->where = ctx.Where(n.Mark());
  return true;
}

void ParseEndpoints(ConfigContext& ctx, MapReader& r, std::string_view key,
                    std::vector<RedisEndpoint>* out) {
  YAML::Node n = r.Get(key);
  if (!n.IsDefined()) return;
  if (!n.IsSequence()) {
    ctx.Error(n.Mark(), StrCat(r.what(), ".", key, ": expected a list of {host, port}"));
    return;
  }
  for (size_t i = 0; i < n.size(); ++i) {
    RedisEndpoint e;
    if (ParseEndpoint(ctx, n[i], StrCat(r.what(), ".", key, "[", i, "]"), &e)) out->push_back(e);
  }
}

}  // namespace

void ParseRedisServers(ConfigContext& ctx, MapReader& r, RedisServers* out, std::string* password,
                       int* database) {
  const std::string what(r.what());
  if (YAML::Node c = r.Get("cluster"); c.IsDefined()) {
    MapReader cr(ctx, c, what + ".cluster");
    if (cr.valid()) {
      bool enabled = true;
      cr.Bool("enabled", &enabled);
      std::vector<RedisEndpoint> nodes;
      ParseEndpoints(ctx, cr, "nodes", &nodes);
      cr.String("password", password);
      cr.Int("database", database, 0, 15);
      if (enabled) {
        out->mode = RedisServers::Mode::kCluster;
        out->nodes = nodes;
        if (nodes.empty()) ctx.Error(c.Mark(), what + ".cluster: enabled but lists no nodes");
        if (*database != 0)
          ctx.Error(c.Mark(), what + ".cluster: Redis Cluster has only database 0");
      }
      cr.Finish();
    }
  }
  if (YAML::Node s = r.Get("sentinel"); s.IsDefined()) {
    MapReader sr(ctx, s, what + ".sentinel");
    if (sr.valid()) {
      if (out->mode == RedisServers::Mode::kCluster)
        ctx.Error(s.Mark(), what + ": use either cluster or sentinel, not both");
      out->mode = RedisServers::Mode::kSentinel;
      sr.Require("master_name");
      sr.String("master_name", &out->sentinel_master);
      out->nodes.clear();
      ParseEndpoints(ctx, sr, "nodes", &out->nodes);
      if (out->nodes.empty()) ctx.Error(s.Mark(), what + ".sentinel: lists no sentinel nodes");
      sr.Finish();
    }
  }
  if (YAML::Node a = r.Get("address"); a.IsDefined()) {
    if (out->mode != RedisServers::Mode::kSingle)
      ctx.Error(a.Mark(), what + ".address: not with cluster or sentinel");
    RedisEndpoint e;
    if (ParseEndpoint(ctx, a, what + ".address", &e)) out->nodes = {e};
  }
  if (r.Has("host")) {
    RedisEndpoint e;
    r.String("host", &e.host);
    r.Int("port", &e.port, 1, 65535);
    if (!IpAddress::Parse(e.host) && !IsHostName(e.host)) {
      ctx.Error(r.Get("host").Mark(),
                StrCat(what, ".host: \"", e.host, "\" is neither an address nor a host name"));
    } else {
      e.where = ctx.Where(r.Get("host").Mark());
      out->nodes = {e};
    }
  }
}

RedisOptions OneConnectionOptions(const RedisServers& servers, RedisOptions base,
                                  const RedisLookup& lookup,
                                  std::function<std::optional<SocketAddress>()> master) {
  RedisOptions o = std::move(base);
  if (servers.mode == RedisServers::Mode::kSentinel) {
    o.resolve = std::move(master);
    o.recheck_ms = 1000;  // a new master is followed within a second, even by a quiet link
    return o;
  }
  if (servers.mode == RedisServers::Mode::kCluster) {
    // Any node will do (a cluster forwards PUBLISH to every node): the next one at each attempt.
    o.resolve = EndpointsInTurn(servers.nodes, lookup);
    return o;
  }
  const RedisEndpoint& e = servers.nodes.front();
  if (std::optional<IpAddress> ip = IpAddress::Parse(e.host)) {
    o.address = MakeSocketAddress(*ip, static_cast<uint16_t>(e.port));
    return o;
  }
  // A name: looked up before every attempt, so a Redis that moves (a new pod, a replaced
  // instance) is found at the next reconnection.
  o.resolve = [host = e.host, port = e.port, lookup]() { return lookup(host, port); };
  o.recheck_ms = 1000;
  return o;
}

RedisLink::RedisLink(EventLoop* loop, const RedisServers& servers, RedisOptions base,
                     RedisLookup lookup, std::function<std::optional<SocketAddress>()> master,
                     std::string name) {
  if (!lookup) lookup = SystemRedisLookup();
  if (servers.mode == RedisServers::Mode::kCluster) {
    RedisClusterOptions co;
    co.seeds = servers.nodes;
    co.node = std::move(base);
    co.node.db = 0;
    co.lookup = std::move(lookup);
    cluster_ = std::make_unique<RedisClusterClient>(loop, std::move(co), std::move(name));
  } else {
    one_ = std::make_unique<RedisClient>(
        loop, OneConnectionOptions(servers, std::move(base), lookup, std::move(master)),
        std::move(name));
  }
}

RedisLink::~RedisLink() = default;

void RedisLink::Start() { one_ ? one_->Start() : cluster_->Start(); }

void RedisLink::Command(const std::vector<std::string_view>& args, Callback cb) {
  one_ ? one_->Command(args, std::move(cb)) : cluster_->Command(args, std::move(cb));
}

void RedisLink::Eval(const std::string& script, const std::string& sha1,
                     const std::vector<std::string_view>& keys,
                     const std::vector<std::string_view>& args, Callback cb) {
  one_ ? one_->Eval(script, sha1, keys, args, std::move(cb))
       : cluster_->Eval(script, sha1, keys, args, std::move(cb));
}

void RedisLink::SetOnReady(std::function<void()> fn) {
  one_ ? one_->SetOnReady(std::move(fn)) : cluster_->SetOnReady(std::move(fn));
}

std::vector<RedisClient*> RedisLink::Masters() const {
  return one_ ? std::vector<RedisClient*>{one_.get()} : cluster_->Masters();
}

uint64_t RedisLink::errors() const { return one_ ? one_->errors() : cluster_->errors(); }

// For a cluster: slot-map refreshes, one of which follows every lost node.
uint64_t RedisLink::reconnects() const { return one_ ? one_->reconnects() : cluster_->refreshes(); }

void RedisLink::Close() { one_ ? one_->Close() : cluster_->Close(); }

}  // namespace bulwark
