// The gateway's runtime snapshot: what a config turns into once its sockets and servers exist.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "core/mutex.h"
#include "core/names.h"
#include "gateway/balancer.h"
#include "gateway/config.h"
#include "gateway/health.h"
#include "gateway/rate_limit.h"
#include "gateway/router.h"
#include "observe/metrics.h"

namespace bulwark::gateway {

// Server ids index fixed per-worker counter arrays; this bounds servers across all upstreams.
constexpr uint32_t kMaxServers = 4096;

// A server's state for the admin API and metrics: "down" (configured so), "unresolved" (its name
// has no address yet), else ServerState::StateName.
std::string_view ServerStateName(const ServerConfig& sc, const ServerState& s, int64_t now_ms);
// Whether the server takes new requests: neither down nor unresolved, usable, and its breaker
// and outlier ejection let requests through.
bool ServerTakesRequests(const ServerConfig& sc, const ServerState& s, int64_t now_ms);
// The health score for the admin API and metrics: 0 when down or unresolved, else
// ServerState::Score.
int ServerScore(const ServerConfig& sc, const ServerState& s, int64_t now_ms);

// The ServerRegistry owns every ServerState, keyed by (upstream, label), so health, drain
// flags and failure counts survive a reload that keeps the server. Thread-safe.
class ServerRegistry {
 public:
  // Returns the existing state for the key or creates one; nullptr when kMaxServers are in use.
  std::shared_ptr<ServerState> Get(const std::string& upstream, const ServerConfig& server);
  // Forgets states no snapshot uses any more (their ids become free).
  void Prune();
  std::vector<std::shared_ptr<ServerState>> All() const;

 private:
  mutable Mutex mu_;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<ServerState>> states_
      ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> free_ids_ ABSL_GUARDED_BY(mu_);
  uint32_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
};

// One address's listening sockets, one per worker (SO_REUSEPORT). Shared by the snapshots that
// use the address, so a reload that keeps the address keeps the sockets and refuses nothing.
struct ListenSockets {
  std::string address_text;
  std::vector<int> fds;  // index = worker
  ~ListenSockets();
};

// Requests and retries in flight to one upstream, across workers (Envoy's retry budget).
struct UpstreamLive {
  std::atomic<int64_t> active_requests{0};
  std::atomic<int64_t> active_retries{0};
};

struct UpstreamRuntime {
  // The upstream as configured with its servers expanded (ExpandByName): every index into
  // `servers` is an index into cfg->servers.
  std::shared_ptr<const UpstreamConfig> cfg;
  std::shared_ptr<UpstreamLive> live = std::make_shared<UpstreamLive>();
  std::vector<std::shared_ptr<ServerState>> servers;
  std::shared_ptr<const HashTables> tables;
};

// An immutable snapshot of the gateway built from one config. Workers hold it while any request
// started under it is in flight.
struct Snapshot {
  uint64_t generation = 0;
  std::shared_ptr<const GatewayConfig> config;
  std::vector<UpstreamRuntime> upstreams;
  std::vector<std::unique_ptr<Router>> routers;             // per listener
  std::vector<std::shared_ptr<ListenSockets>> listen;       // per listener
  std::vector<int> routed_upstreams;                        // upstream indexes some route uses
  std::vector<std::shared_ptr<LimitZone>> zones;            // per config.limit_zones
  std::vector<std::shared_ptr<ConnZone>> conn_zones;        // per config.conn_zones
  std::vector<KeySpec> ban_keys;                            // the distinct keys ban rules use
  std::vector<std::shared_ptr<HttpCacheZone>> cache_zones;  // per config.cache_zones

  // Builds a snapshot, reusing sockets from `previous` where the address is unchanged. Host
  // names stand for what `names` says (nullptr: nothing yet).
  static absl::StatusOr<std::shared_ptr<const Snapshot>> Build(
      std::shared_ptr<const GatewayConfig> config, int workers, const Snapshot* previous,
      ServerRegistry* registry, ZoneRegistry* zones, observe::Interner* endpoints,
      uint64_t generation, CacheZoneRegistry* cache_zones = nullptr,
      const NameTable* names = nullptr);
};

}  // namespace bulwark::gateway
