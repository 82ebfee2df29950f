#include "gateway/snapshot.h"

#include <unistd.h>

#include <algorithm>

#include "core/strings.h"

namespace bulwark::gateway {

std::string_view ServerStateName(const ServerConfig& sc, const ServerState& s, int64_t now_ms) {
  if (sc.down) return "down";
  if (!sc.resolved) return "unresolved";
  return s.StateName(now_ms, sc.max_fails, sc.fail_timeout_ms);
}

bool ServerTakesRequests(const ServerConfig& sc, const ServerState& s, int64_t now_ms) {
  return !sc.down && sc.resolved && s.Usable(now_ms, sc.max_fails, sc.fail_timeout_ms) &&
         s.ResilienceAllows(now_ms, INT32_MAX);
}

int ServerScore(const ServerConfig& sc, const ServerState& s, int64_t now_ms) {
  return sc.down || !sc.resolved ? 0 : s.Score(now_ms, sc.max_fails, sc.fail_timeout_ms);
}

std::shared_ptr<ServerState> ServerRegistry::Get(const std::string& upstream,
                                                 const ServerConfig& server) {
  MutexLock lock(&mu_);
  auto key = std::make_pair(upstream, server.address_text);
  auto it = states_.find(key);
  if (it != states_.end()) return it->second;
  uint32_t id;
  if (!free_ids_.empty()) {
    id = free_ids_.back();
    free_ids_.pop_back();
  } else if (next_id_ < kMaxServers) {
    id = next_id_++;
  } else {
    return nullptr;
  }
  auto s = std::make_shared<ServerState>(id, upstream, server.address_text);
  states_[key] = s;
  return s;
}

void ServerRegistry::Prune() {
  MutexLock lock(&mu_);
  for (auto it = states_.begin(); it != states_.end();) {
    if (it->second.use_count() == 1) {
      free_ids_.push_back(it->second->id());
      it = states_.erase(it);
    } else {
      ++it;
    }
  }
}

std::vector<std::shared_ptr<ServerState>> ServerRegistry::All() const {
  MutexLock lock(&mu_);
  std::vector<std::shared_ptr<ServerState>> out;
  for (const auto& [k, v] : states_) out.push_back(v);
  return out;
}

ListenSockets::~ListenSockets() {
  for (int fd : fds) {
    if (fd >= 0) close(fd);
  }
}

absl::StatusOr<std::shared_ptr<const Snapshot>> Snapshot::Build(
    std::shared_ptr<const GatewayConfig> config, int workers, const Snapshot* previous,
    ServerRegistry* registry, ZoneRegistry* zones, observe::Interner* endpoints,
    uint64_t generation, CacheZoneRegistry* cache_zones, const NameTable* names) {
  auto snap = std::make_shared<Snapshot>();
  snap->generation = generation;
  snap->config = config;
  std::vector<std::string> upstream_names;
  for (const auto& configured : config->upstreams) {
    UpstreamRuntime rt;
    auto expanded = std::make_shared<UpstreamConfig>(configured);
    expanded->servers.clear();
    for (const auto& s : configured.servers) {
      for (auto& e : ExpandByName(s, names)) expanded->servers.push_back(std::move(e));
    }
    rt.cfg = expanded;
    const UpstreamConfig& u = *expanded;
    if (u.servers.size() > kMaxServersPerUpstream) {
      return absl::InvalidArgumentError(
          StrCat("upstream ", u.name, ": at most ", kMaxServersPerUpstream, " servers"));
    }
    for (const auto& s : u.servers) {
      auto st = registry->Get(u.name, s);
      if (st == nullptr)
        return absl::ResourceExhaustedError(StrCat("more than ", kMaxServers, " servers in total"));
      st->SetActiveCheck(u.health_check.enabled, u.health_check.rise, u.health_check.fall);
      rt.servers.push_back(std::move(st));
    }
    if (u.balance == BalanceKind::kHash) rt.tables = HashTables::Build(u);
    snap->upstreams.push_back(std::move(rt));
    upstream_names.push_back(u.name);
  }
  for (const auto& z : config->limit_zones) snap->zones.push_back(zones->Get(z));
  for (const auto& z : config->conn_zones) snap->conn_zones.push_back(zones->GetConn(z));
  for (const auto& z : config->cache_zones) {
    snap->cache_zones.push_back(cache_zones != nullptr
                                    ? cache_zones->Get(z, workers)
                                    : std::make_shared<HttpCacheZone>(z, workers));
  }
  auto intern = [endpoints](std::string_view s) { return endpoints->Intern(s); };
  for (const auto& l : config->listeners) {
    for (const auto& r : l.routes) {
      if (r.ban.set && std::find(snap->ban_keys.begin(), snap->ban_keys.end(), r.ban.key) ==
                           snap->ban_keys.end()) {
        snap->ban_keys.push_back(r.ban.key);
      }
    }
    snap->routers.push_back(std::make_unique<Router>(l, upstream_names, intern));
    for (const auto& r : snap->routers.back()->routes()) {
      if (r.upstream_index >= 0 &&
          std::find(snap->routed_upstreams.begin(), snap->routed_upstreams.end(),
                    r.upstream_index) == snap->routed_upstreams.end()) {
        snap->routed_upstreams.push_back(r.upstream_index);
      }
    }
    std::shared_ptr<ListenSockets> sockets;
    if (previous != nullptr) {
      for (const auto& p : previous->listen) {
        if (p->address_text == l.listen_text && static_cast<int>(p->fds.size()) == workers)
          sockets = p;
      }
    }
    if (sockets == nullptr) {
      sockets = std::make_shared<ListenSockets>();
      sockets->address_text = l.listen_text;
      SocketAddress addr = l.address;
      for (int w = 0; w < workers; ++w) {
        auto fd = ListenTcp(addr, /*reuse_port=*/true);
        if (!fd.ok()) return fd.status();
        sockets->fds.push_back(*fd);
        // With port 0, every worker must share the port the first socket got.
        if (addr.port() == 0) {
          int port = LocalPort(*fd);
          if (addr.family() == AF_INET)
            reinterpret_cast<sockaddr_in*>(&addr.storage)->sin_port = htons(port);
          else
            reinterpret_cast<sockaddr_in6*>(&addr.storage)->sin6_port = htons(port);
        }
      }
    }
    snap->listen.push_back(std::move(sockets));
  }
  return std::shared_ptr<const Snapshot>(std::move(snap));
}

}  // namespace bulwark::gateway
