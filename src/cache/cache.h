// The multi-level cache: per-namespace L1 (in process) in front of Redis (L2) in front of the
// application's loader, with the AlkaidSYS cache design's defences and invalidations.
//
//   auto cache = Cache::Create(config);          // once per process
//   cache->SetLoader("user", load_user);        // read-through for keys "user:..."
//   cache->Start(&control_loop);                // subscriber, warm-up, write-behind flusher
//   auto client = cache->Attach(&worker_loop);  // one per event loop that uses the cache
//   client->Get("user:42", [](const GetResult& r) { ... });
//
// A key belongs to the namespace named by its text before the first ':' ("user:42" → "user"),
// or to the "default" namespace. Lookups go L1 → L2 → loader. Loads are single-flight: one
// load per key at a time in the process, the other callers wait (up to `lock_timeout`), and at
// most `max_concurrent` loads run at once. A loader's NotFound is cached as a negative entry;
// with `cache_penetration` a Bloom filter of known keys answers for keys never seen.
//
// Redis is optional and never required for correctness: when it is down every call degrades to
// L1 and the loader without an error, is counted, and L2 resumes by itself. Every write and
// invalidation is published on a Redis channel so other instances drop their L1 copies; when
// the subscription is lost, L1 is flushed (it may have missed invalidations).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cache/config.h"
#include "cache/l1_cache.h"
#include "core/event_loop.h"

namespace bulwark::cache {

// What a loader hands back. NotFound means "the key does not exist" (cached as negative);
// any other error means "could not load now" (stale data may be served instead).
struct Loaded {
  absl::StatusOr<std::string> value;
  std::vector<std::string> tags;
  int64_t ttl_ms = 0;  // 0: the namespace's ttl
};
using LoadDone = std::function<void(Loaded)>;
// Called on the loop of the caller that missed; `done` must be called once, on that loop.
using Loader = std::function<void(const std::string& key, LoadDone done)>;

// A write for write-through and write-behind namespaces: a value, or a deletion.
struct WriteOp {
  std::string key;
  std::optional<std::string> value;
  int attempts = 0;
};
// Called on the cache's control loop (write-behind) or the caller's loop (write-through) with
// one or more writes; `done` must be called once, on that loop.
using Writer =
    std::function<void(const std::vector<WriteOp>& batch, std::function<void(absl::Status)> done)>;
// Produces the entries to warm a namespace with (the AlkaidSYS warmupUsers and friends).
using WarmupSource = std::function<void(
    std::function<void(absl::StatusOr<std::vector<std::pair<std::string, std::string>>>)> done)>;

enum class Source : uint8_t { kNone, kL1, kL2, kLoader, kBloom };

struct GetResult {
  // OK with a value; NotFound when the key does not exist (negative entry, loader, or Bloom
  // filter) or, without a loader, is not cached; Unavailable when loading failed and nothing
  // stale was left; DeadlineExceeded when waiting for another caller's load timed out.
  absl::Status status;
  std::shared_ptr<const std::string> value;
  Source source = Source::kNone;
  bool stale = false;
};
using GetCallback = std::function<void(const GetResult&)>;
using DoneCallback = std::function<void(absl::Status)>;

struct SetOptions {
  std::vector<std::string> tags;
  int64_t ttl_ms = 0;  // 0: the namespace's ttl
};

// Counters, read from any thread.
struct CacheCounters {
  std::atomic<uint64_t> l1_hits{0}, l1_misses{0}, l1_stale_served{0};
  std::atomic<uint64_t> l2_hits{0}, l2_misses{0}, l2_errors{0}, l2_skipped{0};
  std::atomic<uint64_t> loads{0}, load_errors{0}, load_not_found{0};
  std::atomic<uint64_t> coalesced{0}, lock_timeouts{0}, early_refreshes{0};
  std::atomic<uint64_t> bloom_rejections{0}, negative_hits{0};
  std::atomic<uint64_t> sets{0}, deletes{0}, invalidations_sent{0}, invalidations_received{0};
  std::atomic<uint64_t> l1_flushes{0};
  std::atomic<uint64_t> write_behind_queued{0}, write_behind_written{0}, write_behind_failures{0};
  std::atomic<uint64_t> write_behind_rejected{0};
  std::atomic<uint64_t> warmups{0}, warmup_entries{0}, warmup_errors{0};
};

class CacheClient;

class Cache {
 public:
  static absl::StatusOr<std::unique_ptr<Cache>> Create(CacheConfig config);
  ~Cache();

  // Registration happens before Start().
  void SetLoader(const std::string& ns, Loader loader);
  void SetWriter(const std::string& ns, Writer writer);
  void SetWarmupSource(const std::string& ns, WarmupSource source);
  // The wall clock (ms since the epoch) the warm-up schedule is read against; tests move it.
  void SetWallClock(std::function<int64_t()> wall_ms) { wall_ms_ = std::move(wall_ms); }

  // Starts the control work on `loop` (its thread): the invalidation subscriber, the Sentinel
  // lookups, the write-behind flusher and warm-up (at once if `on_start`, then on schedule).
  void Start(EventLoop* loop);
  // Stops the control work and reports write-behind writes not yet written. Stop() and the
  // destructor run on the control loop's thread, or after that loop has stopped.
  void Stop();

  // One client per event loop; the client must be destroyed on its loop's thread.
  std::unique_ptr<CacheClient> Attach(EventLoop* loop);

  // Bloom filter of known keys (cache_penetration). The filter is consulted only once it is
  // ready: after the first warm-up, or after MarkKnownKeysLoaded() when the application fills
  // it itself with AddKnownKey.
  void AddKnownKey(std::string_view key);
  void MarkKnownKeysLoaded();
  bool bloom_ready() const { return bloom_ready_.load(std::memory_order_acquire); }

  const CacheConfig& config() const { return config_; }
  const CacheCounters& counters() const { return counters_; }
  // The L1 entry for `key` without counting an access (tools and tests).
  Lookup PeekL1(std::string_view key, int64_t now_ms);
  // L1 statistics per namespace.
  std::map<std::string, L1Stats> L1StatsByNamespace() const;
  // Write-behind writes waiting (queued or being retried).
  size_t write_behind_pending() const;
  bool l2_configured() const { return config_.redis.enabled; }
  bool subscriber_up() const { return subscriber_up_.load(std::memory_order_relaxed); }

 private:
  friend class CacheClient;
  struct Namespace;
  struct Flight;
  struct Control;
  explicit Cache(CacheConfig config);

  Namespace& NamespaceOf(std::string_view key);
  void ApplyInvalidation(std::string_view message);  // from the channel or locally
  void FlushL1(const char* why);
  void RunWarmup();
  void ScheduleWarmup();
  void FlushWriteBehind();

  CacheConfig config_;
  std::map<std::string, std::unique_ptr<Namespace>, std::less<>> namespaces_;
  std::unique_ptr<class BloomFilter> bloom_;
  std::atomic<bool> bloom_ready_{false};
  std::unique_ptr<class FlightTable> flights_;
  std::unique_ptr<Control> control_;
  std::atomic<bool> subscriber_up_{false};
  // Bumped by every invalidation: an L2 read that started before a bump may carry the value
  // the invalidation was about, so it is served but not copied into L1.
  std::atomic<uint64_t> invalidation_epoch_{0};
  std::string instance_id_;
  std::function<int64_t()> wall_ms_;
  CacheCounters counters_;
};

// A Cache's handle for one event loop: its own Redis connection, its timers. Methods and
// callbacks run on that loop's thread.
class CacheClient {
 public:
  ~CacheClient();

  void Get(const std::string& key, GetCallback cb);
  // Several keys at once, answered together in the same order: L1 first, then one pipelined
  // MGET for everything L1 lacked, then the loader (single flight) for what Redis lacked.
  void GetMany(const std::vector<std::string>& keys,
               std::function<void(std::vector<GetResult>)> cb);
  // Stores a value as the namespace's write strategy says: cache-aside stores it; write-through
  // writes it through the Writer first and stores it only if that succeeded; write-behind
  // stores it and queues the write (ResourceExhausted when the queue is full: nothing is lost
  // silently).
  void Set(const std::string& key, std::string value, SetOptions options, DoneCallback done);
  // Removes a key here, in L2 and in every other instance's L1.
  void Delete(const std::string& key, DoneCallback done);
  void InvalidateTag(const std::string& tag, DoneCallback done);
  void InvalidatePrefix(const std::string& prefix, DoneCallback done);
  void InvalidatePattern(const std::string& glob, DoneCallback done);
  // A business event: runs the invalidation rules configured for `event` with its parameters
  // (immediate now, lazy after the rule's delay, time-based as a TTL on matching keys).
  void Emit(const std::string& event, const std::map<std::string, std::string>& params,
            DoneCallback done);

  bool l2_up() const;

 private:
  friend class Cache;
  struct Impl;
  explicit CacheClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulwark::cache
