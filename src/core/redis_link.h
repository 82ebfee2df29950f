// Where a Redis is, as a configuration says it, and one loop's link to it: a single server, a
// Redis Cluster, or the master Redis Sentinel names. The cache library's L2 and the gateway's
// shared state (limits, bans, sticky sessions, the HTTP cache's Redis level) both read the same
// keys with ParseRedisServers and talk through a RedisLink, so a failover is followed the same
// way by both.
//
//   redis:
//     address: redis-1:6379              # one server (or host: + port:)
//     cluster: {enabled: true, nodes: [{host: r1, port: 6379}, "r2:6379"]}
//     sentinel: {master_name: mymaster, nodes: [{host: s1, port: 26379}, ...]}
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config_reader.h"
#include "core/event_loop.h"
#include "core/redis_client.h"
#include "core/redis_cluster.h"

namespace bulwark {

struct RedisServers {
  enum class Mode : uint8_t { kSingle, kCluster, kSentinel };
  Mode mode = Mode::kSingle;
  std::vector<RedisEndpoint> nodes;  // single: one; cluster: seeds; sentinel: the sentinels
  std::string sentinel_master;       // the master's name in Sentinel (`master_name`)
  bool operator==(const RedisServers&) const = default;
};

// Reads `address` (HOST:PORT or {host, port}), `host` + `port`, `cluster` ({enabled, nodes,
// password, database}: the AlkaidSYS cache.yml keeps the credentials there, so they are written
// to *password and *database) and `sentinel` ({master_name, nodes}) from `r`, each error at its
// line. Hosts are literal addresses or host names. Says nothing when none is given: the caller
// decides whether that is an error.
void ParseRedisServers(ConfigContext& ctx, MapReader& r, RedisServers* out, std::string* password,
                       int* database);

// Options for one connection to "the" server: the single server, Sentinel's current master
// (`master`, asked before every attempt), or, for a cluster, any node (the next one at each
// attempt: pub/sub reaches every node of a cluster). `base` carries credentials, TLS, database
// and timeouts.
RedisOptions OneConnectionOptions(const RedisServers& servers, RedisOptions base,
                                  const RedisLookup& lookup,
                                  std::function<std::optional<SocketAddress>()> master);

// One loop's link: a RedisClient (single server or Sentinel's master) or a RedisClusterClient.
// Both answer the same calls; SCAN, which walks one node at a time, asks for Masters().
class RedisLink {
 public:
  using Callback = RedisClient::Callback;
  RedisLink(EventLoop* loop, const RedisServers& servers, RedisOptions base, RedisLookup lookup,
            std::function<std::optional<SocketAddress>()> master, std::string name);
  ~RedisLink();
  RedisLink(const RedisLink&) = delete;
  RedisLink& operator=(const RedisLink&) = delete;

  void Start();
  bool connected() const { return one_ ? one_->connected() : cluster_->connected(); }
  void Command(const std::vector<std::string_view>& args, Callback cb);
  void Eval(const std::string& script, const std::string& sha1,
            const std::vector<std::string_view>& keys, const std::vector<std::string_view>& args,
            Callback cb);
  // After every (re)connection (for a cluster: when the slot map is whole again).
  void SetOnReady(std::function<void()> fn);
  // The connections SCAN must walk: the one server, or every master of the cluster.
  std::vector<RedisClient*> Masters() const;
  bool cluster() const { return cluster_ != nullptr; }
  // Counters for metrics (single writer, read from any thread).
  uint64_t errors() const;
  uint64_t reconnects() const;
  bool up() const { return one_ ? one_->up() : cluster_->up(); }
  void Close();

 private:
  std::unique_ptr<RedisClient> one_;
  std::unique_ptr<RedisClusterClient> cluster_;
};

}  // namespace bulwark
