// A gateway worker thread: its own event loop, listeners, connections and upstream pools.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/event_loop.h"
#include "core/redis_link.h"
#include "gateway/access_log.h"
#include "gateway/balancer.h"
#include "gateway/bans.h"
#include "gateway/snapshot.h"
#include "observe/metrics.h"

namespace bulwark::gateway {

class DownstreamConn;
class H2Stream;
class UpstreamConn;
class Worker;

// What every worker shares: the route-name interner and the access log. Owned by the Gateway.
// The descriptors every worker's client and upstream connections may hold together: the open
// files limit less what the rest of the process keeps in reserve (admin, the pg proxy, the
// vault, log files), so a flood on a listener cannot take descriptors from them. Thread-safe.
struct DescriptorBudget {
  int64_t limit = INT64_MAX;
  std::atomic<int64_t> used{0};
  // Room for `n` more descriptors.
  bool Has(int64_t n) const { return used.load(std::memory_order_relaxed) + n <= limit; }
};

struct WorkerShared {
  observe::Interner* endpoints = nullptr;
  AccessLog* access_log = nullptr;  // may be null (access log off)
  BanTable* bans = nullptr;
  std::string instance_id;    // tells this instance's shared bans from others'
  std::string sticky_secret;  // random per process; used when a sticky config sets no secret
  DescriptorBudget* descriptors = nullptr;  // null: unbounded (tests)
  int auto_max_connections = 1 << 20;       // http.max_connections when the config says 0
  // How the Redis links find their servers: names through the resolver (never blocking a
  // worker), and Sentinel's current master.
  RedisLookup redis_lookup = {};
  std::function<std::optional<SocketAddress>()> redis_master = {};
};

// The per-worker face of one snapshot: balancers with this worker's round-robin state.
// Lives while the snapshot is current or a request started under it is still in flight.
struct WorkerView {
  std::shared_ptr<const Snapshot> snap;
  std::vector<std::unique_ptr<Balancer>> balancers;  // per upstream
  int refs = 0;
};

// Per-server counters of one worker, indexed by ServerState::id (merged at scrape time).
struct ServerCounters {
  observe::ShardValue requests;
  observe::ShardValue failures;
  observe::ShardValue retries;
};

// Counters a worker keeps about itself, read by the metrics collector.
struct WorkerStats {
  observe::ShardValue accepted;
  observe::ShardValue requests;
  observe::ShardValue parse_errors;
  observe::ShardValue timeouts;
  observe::ShardValue no_upstream;
  observe::ShardValue client_aborts;
  observe::ShardValue accept_errors;
  observe::ShardValue access_denied;
  observe::ShardValue bad_paths;
  observe::ShardValue requests_rewritten;
  // Times accepting stopped because the worker held max_connections clients, or because the
  // descriptor budget was spent (connections then wait in the kernel's listen queue).
  observe::ShardValue limited_max_connections;
  observe::ShardValue limited_descriptors;
  observe::ShardValue retry_budget_exhausted;
  observe::ShardValue retry_backoffs;
  observe::ShardValue panic_selections;
  // HTTP/2: connections, streams, and connections ended by a defence.
  observe::ShardValue h2_connections;
  observe::ShardValue h2_streams;
  observe::ShardValue h2_rapid_resets;
  observe::ShardValue h2_floods;
  observe::ShardValue h2_protocol_errors;
  std::atomic<int64_t> open_clients{0};
  std::atomic<int64_t> open_upstreams{0};
};

// A Worker owns one thread. Everything it owns is touched only from that thread except through
// the Post* methods (which hand work to its loop) and the read-only stats/shards.
class Worker {
 public:
  Worker(int index, WorkerShared shared);
  ~Worker();

  absl::Status Start(std::shared_ptr<const Snapshot> snap);
  // Thread-safe: switch new requests to `snap` (old requests finish on their own snapshot).
  void PostSnapshot(std::shared_ptr<const Snapshot> snap);
  // Thread-safe: stop accepting; close idle connections; finish in-flight requests, then exit.
  void PostDrain();
  // Thread-safe: stop at once (after the drain timeout).
  void Stop();
  void Join();
  bool finished() const { return finished_.load(); }

  int index() const { return index_; }
  EventLoop& loop() { return loop_; }
  const observe::HttpShard& http_shard() const { return http_shard_; }
  observe::HttpShard& http_shard_mut() { return http_shard_; }
  const ServerCounters& server_counters(uint32_t id) const { return server_counters_[id]; }
  ServerCounters& server_counters_mut(uint32_t id) { return server_counters_[id]; }
  WorkerStats& stats() { return stats_; }
  const WorkerStats& stats() const { return stats_; }
  const WorkerShared& shared() const { return shared_; }

  // --- used by connections (worker thread only) ---
  WorkerView* AcquireView();
  void ReleaseView(WorkerView* v);
  bool draining() const { return draining_; }
  UpstreamConn* TakeIdle(uint32_t server_id);
  bool PutIdle(UpstreamConn* c, int keepalive_limit);
  void RemoveIdle(UpstreamConn* c);
  UpstreamConn* NewUpstream();
  void FreeUpstream(UpstreamConn* c);
  void FreeClient(DownstreamConn* c);
  // HTTP/2 streams, pooled like connections (a stream is returned after its event batch).
  H2Stream* TakeH2Stream();
  void ReturnH2Stream(H2Stream* s) { free_h2_streams_.push_back(s); }
  // Descriptor accounting for the budget: +1 when a connection opens, -1 when it closes.
  void CountDescriptor(int delta) {
    if (shared_.descriptors != nullptr)
      shared_.descriptors->used.fetch_add(delta, std::memory_order_relaxed);
  }
  // Before an upstream connect: when the budget is spent, closes one idle keep-alive connection
  // of this worker to make room (the connect goes ahead either way: the reserve absorbs it).
  void MakeRoomForUpstream();
  // The client connections this worker holds at most (http.max_connections, or the value
  // worked out at start). Worker thread only (it reads the worker's current view).
  int max_connections() const;
  // The buffer access-log lines are built in; flushed with one write per event batch.
  std::string& log_buffer() { return log_buf_; }
  void MaybeFlushLog() {
    if (log_buf_.size() >= 64 * 1024) FlushLog();
  }
  // Appends the current wall-clock time as RFC 3339 with milliseconds (cached per second).
  void AppendLogTime(std::string* out);
  uint32_t unrouted_endpoint() const { return unrouted_endpoint_; }
  const GatewayConfig& config() const { return *current_->snap->config; }
  void CloseIdleClients();
  // A request id: 32 lower-case hex characters from the worker's generator.
  void RandomHex(char* out, size_t n);
  uint64_t Random();
  // This worker's Redis connection (null when no `redis:` is configured).
  RedisLink* redis() { return redis_.get(); }
  const RedisLink* redis() const { return redis_.get(); }
  const std::string& http_date();

 private:
  class Listener;
  void ApplySnapshot(std::shared_ptr<const Snapshot> snap);
  void Accept(int fd, int listener_index);
  void BeginDrain();
  void PauseAccepting(int64_t ms);
  // Stops accepting at a limit: counted, logged at most every 10 s, resumed when a client
  // closes or after 100 ms.
  void LimitAccepting(observe::ShardValue& counter, std::string_view why);
  void ResumeAccepting();
  void RegisterListener(Listener* l);
  void CheckDrained();
  void FlushLog();

  const int index_;
  WorkerShared shared_;
  EventLoop loop_;
  std::unique_ptr<RedisLink> redis_;  // after loop_: destroyed first
  std::thread thread_;
  std::atomic<bool> finished_{false};
  bool draining_ = false;

  WorkerView* current_ = nullptr;
  std::vector<std::unique_ptr<WorkerView>> views_;
  std::vector<std::unique_ptr<Listener>> listeners_;

  std::vector<std::unique_ptr<DownstreamConn>> clients_;  // all client connections ever made
  std::vector<DownstreamConn*> free_clients_;
  std::vector<std::unique_ptr<H2Stream>> h2_streams_;  // all HTTP/2 streams ever made
  std::vector<H2Stream*> free_h2_streams_;
  std::vector<std::unique_ptr<UpstreamConn>> upstreams_;
  std::vector<UpstreamConn*> free_upstreams_;
  std::vector<std::vector<UpstreamConn*>> idle_;  // per server id
  // The ServerState that owns each id in the current snapshot (null: none). Ids are reused once
  // a server has left every snapshot, so a pooled connection is only kept while its server is
  // still the current owner of its id.
  std::vector<const ServerState*> current_servers_;
  // Each current server's configuration in the current view (its address: a pooled connection
  // is only kept while its server is still at the address it was made to).
  std::vector<const ServerConfig*> current_configs_;
  // Each current server's TLS client (null without TLS): a pooled connection made with other
  // TLS settings (or none) is not reused.
  std::vector<const TlsClient*> current_tls_;
  int live_clients_ = 0;
  int64_t last_accept_error_log_ms_ = 0;
  int64_t last_limit_log_ms_ = -100000;
  bool accept_paused_ = false;
  Timer accept_timer_;

  observe::HttpShard http_shard_;
  std::unique_ptr<ServerCounters[]> server_counters_;
  WorkerStats stats_;
  std::string log_buf_;
  uint64_t rng_;
  std::string date_;
  int64_t date_sec_ = 0;
  std::string log_time_prefix_;
  int64_t log_time_sec_ = -1;
  uint32_t unrouted_endpoint_ = 0;
};

}  // namespace bulwark::gateway
