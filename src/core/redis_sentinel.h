// Finds the current Redis master through Redis Sentinel, as Sentinel-aware clients do: ask any
// reachable sentinel `SENTINEL get-master-addr-by-name NAME`, trying the sentinels in turn,
// and ask again every second so a failover is noticed within about a second (clients on the
// old master also notice at once when it answers READONLY or goes away).
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "core/event_loop.h"
#include "core/mutex.h"
#include "core/net.h"
#include "core/redis_client.h"

namespace bulwark {

// Lives on one loop (its queries run there); master() and the MasterSource may be read from any
// thread, the source even after the resolver is gone (it then answers its last master).
class SentinelResolver {
 public:
  // `sentinels` are looked up by `lookup` at each connection attempt, the next one each time.
  // `sentinel` carries the credentials and TLS a Sentinel asks for (Sentinel's own
  // `requirepass`); its address is ignored.
  SentinelResolver(EventLoop* loop, std::vector<RedisEndpoint> sentinels, std::string master_name,
                   RedisLookup lookup = SystemRedisLookup(), RedisOptions sentinel = {},
                   int64_t interval_ms = 1000);
  ~SentinelResolver();
  void Start();
  std::optional<SocketAddress> master() const;
  // A function answering master(), for the clients that connect to it.
  std::function<std::optional<SocketAddress>()> MasterSource() const;
  uint64_t changes() const { return changes_.load(std::memory_order_relaxed); }

 private:
  struct Shared {
    mutable Mutex mu;
    std::optional<SocketAddress> master ABSL_GUARDED_BY(mu);
  };
  void Query();

  EventLoop* loop_;
  std::string master_name_;
  RedisLookup lookup_;
  int64_t interval_ms_;
  std::unique_ptr<RedisClient> client_;
  Timer timer_;
  std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
  std::atomic<uint64_t> changes_{0};
};

}  // namespace bulwark
