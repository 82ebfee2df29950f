// The in-process cache (L1): a sharded table of byte values bounded by entry count and by bytes,
// with a choice of eviction policy.
//
// Policies:
//   - W-TinyLFU (the default), as Caffeine does it: new entries enter a small LRU admission window
//     (1% of the capacity); an entry leaving the window competes with the main space's eviction
//     victim and is kept only if the frequency sketch has seen it more often. The main space is a
//     segmented LRU: a probation segment (20%) for entries seen once there, a protected segment
//     (80%) for entries hit again. It resists scans and one-hit wonders that flush an LRU.
//   - LRU: least recently used first.
//   - LFU: least frequently used first, ties by least recently used (the O(1) frequency-bucket
//     algorithm of Shah, Mitra and Matani).
//   - TTL: the entry that expires soonest goes first; reads do not reorder.
//
// Every entry has two deadlines (RFC 5861): until `fresh_until` it is served as is; until
// `stale_until` it may still be served stale (while it is refreshed, or while the origin is
// down); after that it is gone. Expired entries are dropped as they are met and by a bounded
// sweep on every write, in deadline order.
//
// Thread-safety: an L1Cache may be shared by threads; each shard has its own lock, and a key
// touches exactly one shard. Values are immutable and shared: a Get hands out a reference that
// stays valid after the entry is evicted.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace bulwark::cache {

enum class EvictionPolicy : uint8_t { kWTinyLfu, kLru, kLfu, kTtl };

// Accepts the names the AlkaidSYS cache.yml and Caffeine/Redis users write: "W-TinyLFU" (also
// "tinylfu", "wtinylfu"), "LRU", "LFU", "TTL"; case-insensitive.
absl::StatusOr<EvictionPolicy> ParseEvictionPolicy(std::string_view name);
const char* EvictionPolicyName(EvictionPolicy policy);  // "w-tinylfu", "lru", "lfu", "ttl"

// The 64-bit hash every part of the cache uses for a key (shard, sketch, bloom filter).
uint64_t HashKey(std::string_view key);

struct L1Options {
  EvictionPolicy policy = EvictionPolicy::kWTinyLfu;
  int64_t max_entries = 10000;    // 0: not bounded by count
  int64_t max_bytes = 0;          // 0: not bounded by size; a value is charged key + value + ~100 B
  int shards = 16;                // rounded up to a power of two; 1 for an exact global policy
  double window_fraction = 0.01;  // W-TinyLFU admission window share of the capacity
  double protected_fraction = 0.8;  // W-TinyLFU protected share of the main space
};

enum class Freshness : uint8_t { kMiss, kFresh, kStale };

struct Lookup {
  Freshness state = Freshness::kMiss;
  // Null for a miss and for a negative entry (a key known not to exist).
  std::shared_ptr<const std::string> value;
  bool negative = false;
  int64_t fresh_until_ms = 0;
  int64_t stale_until_ms = 0;
  int64_t load_ms = 0;  // what loading the value cost, for early refresh (XFetch)

  bool hit() const { return state != Freshness::kMiss; }
};

struct PutOptions {
  int64_t fresh_until_ms = INT64_MAX;
  int64_t stale_until_ms = 0;  // < fresh_until_ms means "no stale period"
  bool negative = false;       // remember that the key does not exist (value is ignored)
  int64_t load_ms = 0;
  std::vector<std::string> tags;
};

enum class PutResult : uint8_t {
  kStored,
  kRejected,  // the admission policy kept the entries it had (W-TinyLFU) or the value is too big
};

struct L1Stats {
  uint64_t entries = 0;
  uint64_t bytes = 0;
  uint64_t hits = 0;
  uint64_t stale_hits = 0;
  uint64_t misses = 0;
  uint64_t puts = 0;
  // Not admitted (W-TinyLFU), first to go (TTL), or larger than a shard's byte budget.
  uint64_t rejected = 0;
  uint64_t evictions = 0;      // dropped to make room
  uint64_t expirations = 0;    // dropped because stale_until passed
  uint64_t invalidations = 0;  // removed by Erase/EraseTag/ErasePrefix/ErasePattern/Clear

  // Field-wise sum, for totals over shards and over per-worker caches.
  L1Stats& operator+=(const L1Stats& o);
};

class L1Cache {
 public:
  explicit L1Cache(L1Options options);
  ~L1Cache();
  L1Cache(const L1Cache&) = delete;
  L1Cache& operator=(const L1Cache&) = delete;

  const L1Options& options() const { return options_; }

  // A fresh or stale entry, or a miss. A hit counts as an access for the eviction policy.
  Lookup Get(std::string_view key, int64_t now_ms);
  // Like Get, but neither counted nor an access (for tools and tests).
  Lookup Peek(std::string_view key, int64_t now_ms) const;
  bool Contains(std::string_view key, int64_t now_ms) const { return Peek(key, now_ms).hit(); }

  // Inserts or replaces `key`. Replacing keeps the entry's place as an access would.
  PutResult Put(std::string_view key, std::shared_ptr<const std::string> value,
                const PutOptions& options, int64_t now_ms);
  PutResult Put(std::string_view key, std::string value, const PutOptions& options,
                int64_t now_ms) {
    return Put(key, std::make_shared<const std::string>(std::move(value)), options, now_ms);
  }

  // Invalidation. Each returns how many entries it removed.
  bool Erase(std::string_view key);
  size_t EraseTag(std::string_view tag);
  size_t ErasePrefix(std::string_view prefix);
  size_t ErasePattern(std::string_view glob);  // Redis KEYS/SCAN MATCH syntax
  size_t Clear();
  // Shortens the life of every entry matching `glob` to at most `ttl_ms` from now (the AlkaidSYS
  // "time-based" invalidation: EXPIRE on each matching key).
  size_t ExpirePattern(std::string_view glob, int64_t ttl_ms, int64_t now_ms);
  // Drops entries past stale_until in every shard (at most `budget` per shard).
  size_t ExpireNow(int64_t now_ms, size_t budget = SIZE_MAX);

  // The keys currently held (any freshness), for tools and tests.
  std::vector<std::string> Keys() const;
  L1Stats Stats() const;

 private:
  struct Shard;
  Shard& ShardFor(uint64_t hash) const;

  L1Options options_;
  int shard_bits_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace bulwark::cache
