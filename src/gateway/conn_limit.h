// Concurrent-request limits with nginx limit_conn semantics.
//
// A zone counts, per key, the requests in progress: a request is counted from the moment its
// route is decided (after limit_req let it through) until its exchange ends, so idle keep-alive
// connections count for nothing, as in nginx ("only connections that have a request being
// processed ... are counted"). A request over a rule's maximum is refused and counts nowhere.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "core/mutex.h"

namespace bulwark::gateway {

enum class ConnResult : uint8_t { kPassed = 0, kRejected, kRejectedDryRun };
constexpr int kConnResults = 3;
const char* ConnResultName(ConnResult r);  // passed, rejected, rejected_dry_run

// One limit_conn zone: a bounded, lock-striped table of per-key counts shared by every worker.
// A key leaves the table when its count returns to zero. When the table is full a new key is
// refused (nginx answers with limit_conn_status when its zone has no room). Thread-safe.
class ConnZone {
 public:
  static constexpr int kShards = 16;
  // About what nginx stores per key: a 1m zone holds ~8k keys (32-byte keys).
  static constexpr int64_t kBytesPerKey = 128;

  ConnZone(std::string name, std::string key_text, int64_t size_bytes);

  const std::string& name() const { return name_; }
  const std::string& key_text() const { return key_text_; }
  int64_t size_bytes() const { return size_bytes_; }

  // Adds one request for `key` unless the key already has `max` (or the table is full).
  bool Acquire(std::string_view key, int max);
  // Ends one request Acquire admitted.
  void Release(std::string_view key);
  void Count(ConnResult r) { counts_[static_cast<int>(r)].fetch_add(1, std::memory_order_relaxed); }

  size_t Keys() const;
  uint64_t Counted(ConnResult r) const {
    return counts_[static_cast<int>(r)].load(std::memory_order_relaxed);
  }

 private:
  struct Shard {
    mutable Mutex mu;
    absl::flat_hash_map<std::string, int> counts ABSL_GUARDED_BY(mu);
  };
  Shard& ShardFor(std::string_view key);

  const std::string name_;
  const std::string key_text_;
  const int64_t size_bytes_;
  const size_t per_shard_;
  std::unique_ptr<Shard[]> shards_;
  std::array<std::atomic<uint64_t>, kConnResults> counts_{};
};

}  // namespace bulwark::gateway
