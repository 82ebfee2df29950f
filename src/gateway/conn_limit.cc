#include "gateway/conn_limit.h"

#include <algorithm>
#include <functional>

namespace bulwark::gateway {

const char* ConnResultName(ConnResult r) {
  switch (r) {
    case ConnResult::kPassed:
      return "passed";
    case ConnResult::kRejected:
      return "rejected";
    case ConnResult::kRejectedDryRun:
      return "rejected_dry_run";
  }
  return "passed";
}

ConnZone::ConnZone(std::string name, std::string key_text, int64_t size_bytes)
    : name_(std::move(name)),
      key_text_(std::move(key_text)),
      size_bytes_(size_bytes),
      per_shard_(std::max<size_t>(8, static_cast<size_t>(size_bytes / kBytesPerKey / kShards))),
      shards_(new Shard[kShards]) {}

ConnZone::Shard& ConnZone::ShardFor(std::string_view key) {
  return shards_[std::hash<std::string_view>()(key) % kShards];
}

bool ConnZone::Acquire(std::string_view key, int max) {
  Shard& s = ShardFor(key);
  MutexLock lock(&s.mu);
  auto it = s.counts.find(absl::string_view(key.data(), key.size()));
  if (it == s.counts.end()) {
    if (s.counts.size() >= per_shard_ || max < 1) return false;
    s.counts.emplace(std::string(key), 1);
    return true;
  }
  if (it->second >= max) return false;
  ++it->second;
  return true;
}

void ConnZone::Release(std::string_view key) {
  Shard& s = ShardFor(key);
  MutexLock lock(&s.mu);
  auto it = s.counts.find(absl::string_view(key.data(), key.size()));
  if (it == s.counts.end()) return;
  if (--it->second <= 0) s.counts.erase(it);
}

size_t ConnZone::Keys() const {
  size_t n = 0;
  for (int i = 0; i < kShards; ++i) {
    MutexLock lock(&shards_[i].mu);
    n += shards_[i].counts.size();
  }
  return n;
}

}  // namespace bulwark::gateway
