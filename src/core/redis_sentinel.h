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

// Lives on one loop (its queries run there); master() may be read from any thread.
class SentinelResolver {
 public:
  SentinelResolver(EventLoop* loop, std::vector<SocketAddress> sentinels, std::string master_name,
                   int64_t interval_ms = 1000);
  ~SentinelResolver();

  void Start();
  std::optional<SocketAddress> master() const;
  uint64_t changes() const { return changes_.load(std::memory_order_relaxed); }

 private:
  void Query();

  EventLoop* loop_;
  std::vector<SocketAddress> sentinels_;
  std::string master_name_;
  int64_t interval_ms_;
  size_t next_sentinel_ = 0;
  std::unique_ptr<RedisClient> client_;
  Timer timer_;
  mutable Mutex mu_;
  std::optional<SocketAddress> master_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> changes_{0};
};

}  // namespace bulwark
