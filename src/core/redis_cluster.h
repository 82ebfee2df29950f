// A Redis Cluster client on one EventLoop, doing what cluster-aware clients (redis-cli -c,
// hiredis-cluster, Lettuce) do: learn the slot map with CLUSTER SLOTS from any reachable node,
// send each command to the master that owns its key's slot (CRC16 of the key or of its {hash
// tag}, modulo 16384), follow MOVED (and update the map) and ASK (one command, preceded by
// ASKING) redirections, and split multi-key commands whose keys live in different slots.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/event_loop.h"
#include "core/net.h"
#include "core/redis_client.h"

namespace bulwark {

struct RedisClusterOptions {
  std::vector<RedisEndpoint> seeds;  // looked up at each connection attempt, tried in turn
  // Credentials (AUTH on every node), TLS and timeouts of every node's connection; its address
  // is the node's.
  RedisOptions node;
  RedisLookup lookup;  // names (seeds, and nodes CLUSTER SLOTS names); empty: the system's
  // CLUSTER SLOTS is asked again this often, and soon after a MOVED or a lost node.
  int64_t refresh_interval_ms = 10000;
  int max_redirects = 5;  // MOVED/ASK hops for one command, as redis-cli -c
};

// Which commands the client knows how to route: the key is the first argument, except for
// EVAL/EVALSHA (the first of `numkeys` keys); MGET, DEL, UNLINK and EXISTS may name keys in
// different slots and are split per slot, their answers merged (MGET in order, the others
// summed). Commands without a key (PUBLISH, PING, SCAN...) go to any connected master. Anything
// else multi-key must keep its keys in one slot (use a {hash tag}), as on a real cluster.
class RedisClusterClient {
 public:
  using Callback = RedisClient::Callback;
  static constexpr int kSlots = 16384;

  RedisClusterClient(EventLoop* loop, RedisClusterOptions options,
                     std::string name = "redis cluster");
  ~RedisClusterClient();
  RedisClusterClient(const RedisClusterClient&) = delete;
  RedisClusterClient& operator=(const RedisClusterClient&) = delete;

  void Start();
  // True once every slot has a master and at least one master is connected.
  bool connected() const;
  void Command(const std::vector<std::string_view>& args, Callback cb);
  // EVALSHA routed by keys[0]; EVAL when the node answers NOSCRIPT.
  void Eval(const std::string& script, const std::string& sha1,
            const std::vector<std::string_view>& keys, const std::vector<std::string_view>& args,
            Callback cb);
  // Runs when the slot map is complete and every master is connected: at the first discovery and
  // again after the map was incomplete (a cluster that recovered).
  void SetOnReady(std::function<void()> fn) { on_ready_ = std::move(fn); }
  // The masters' connections, for commands that walk one node at a time (SCAN).
  std::vector<RedisClient*> Masters() const;
  void Close();

  // The slot of a key: CRC16 (XMODEM) of the key, or of the part between the first '{' and the
  // next '}' when that part is not empty, modulo 16384.
  static uint16_t KeySlot(std::string_view key);

  // What CLUSTER SLOTS says: slot ranges and their master's "ip:port". Malformed ranges are
  // skipped; an empty ip means the node that was asked (Redis 7), "?" an unknown endpoint.
  struct SlotRange {
    uint16_t from = 0, to = 0;
    std::string master;
  };
  static std::vector<SlotRange> ParseSlots(const RedisReply& r, std::string_view asked_ip);
  // "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381"; false for any other error.
  static bool ParseRedirect(std::string_view error, bool* ask, uint16_t* slot,
                            std::string_view* address);

  // Counters for metrics (single writer, read from any thread).
  uint64_t redirects() const { return redirects_.load(std::memory_order_relaxed); }
  uint64_t refreshes() const { return refreshes_.load(std::memory_order_relaxed); }
  // Commands answered with an error (by a node, or here: no node, no master for the slot).
  uint64_t errors() const { return errors_.load(std::memory_order_relaxed); }
  bool up() const { return up_.load(std::memory_order_relaxed); }

 private:
  struct Node {
    std::string address;  // "ip:port", as CLUSTER SLOTS names it
    std::unique_ptr<RedisClient> client;
  };
  using Args = std::vector<std::string>;

  void Refresh();
  void RequestRefresh();
  void OnSlots(const RedisReply& r, const std::string& asked_ip);
  int NodeFor(std::string_view address);
  RedisClient* AnyConnected() const;
  void Send(int node, std::shared_ptr<const Args> args, int hops, bool asking, Callback cb);
  void SendToSlot(uint16_t slot, std::shared_ptr<const Args> args, Callback cb);
  void SplitByKey(std::shared_ptr<const Args> args, Callback cb);
  void UpdateUp();  // also reports readiness

  EventLoop* loop_;
  RedisClusterOptions opt_;
  std::string name_;
  std::unique_ptr<RedisClient> seed_;  // asks CLUSTER SLOTS while no node is connected
  std::vector<Node> nodes_;
  std::array<int16_t, kSlots> slots_;  // node index, or -1
  bool complete_ = false;
  std::function<void()> on_ready_;
  bool ready_reported_ = false;
  bool closed_ = false;
  bool refreshing_ = false;
  int64_t last_refresh_ms_ = -1000000;
  Timer timer_;
  // Callbacks may outlive the client (a deferred "not connected" reply): they hold this weakly.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::atomic<uint64_t> redirects_{0};
  std::atomic<uint64_t> refreshes_{0};
  std::atomic<uint64_t> errors_{0};
  std::atomic<bool> up_{false};
};

}  // namespace bulwark
