// Metrics: a registry of collectors rendered in the Prometheus text format (version 0.0.4),
// plus the per-thread shards the request path writes without locks.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "core/mutex.h"

namespace bulwark::observe {

// Appends `v` escaped as a Prometheus label value (backslash, quote and newline).
void AppendLabelValue(std::string* out, std::string_view v);
// Appends `name{k="v",...} ` (values escaped), ready for the sample value and its newline.
void AppendSeries(std::string* out, std::string_view name,
                  std::initializer_list<std::pair<std::string_view, std::string_view>> labels);
// Appends a sample value the way Prometheus prints it (integers without a fraction, +Inf).
void AppendValue(std::string* out, double v);
// "# HELP name text\n# TYPE name type\n"
void AppendHeader(std::string* out, std::string_view name, std::string_view type,
                  std::string_view help);

// A counter or gauge not on the request path: one atomic, shared by every thread.
class AtomicValue {
 public:
  void Add(int64_t d) { v_.fetch_add(d, std::memory_order_relaxed); }
  void Set(int64_t v) { v_.store(v, std::memory_order_relaxed); }
  int64_t Get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

// A value written by exactly one thread and read by the scraper: a relaxed load and store, no
// locked instruction. The reader may see a value one update old, never a torn one.
class ShardValue {
 public:
  void Add(uint64_t d) {
    v_.store(v_.load(std::memory_order_relaxed) + d, std::memory_order_relaxed);
  }
  uint64_t Get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// The registry renders /metrics by asking every collector for its text. Collectors are added
// at start-up; rendering happens on the admin thread. Thread-safe.
class Registry {
 public:
  using Collector = std::function<void(std::string* out)>;
  // Returns an id for RemoveCollector.
  int AddCollector(Collector c);
  void RemoveCollector(int id);
  std::string Render() const;

 private:
  mutable Mutex mu_;
  std::vector<std::pair<int, Collector>> collectors_ ABSL_GUARDED_BY(mu_);
  int next_id_ ABSL_GUARDED_BY(mu_) = 0;
};

// Interns label values that the config defines (route names), so shards can store small ids.
// Interning happens at config load; lookups by id at scrape time. Thread-safe.
class Interner {
 public:
  uint32_t Intern(std::string_view s);
  std::string Name(uint32_t id) const;

 private:
  mutable Mutex mu_;
  std::vector<std::string> names_ ABSL_GUARDED_BY(mu_);
};

// The AlkaidSYS HTTP series, one shard per worker thread:
//   http_requests_total{method,endpoint,status_code}
//   http_request_duration_seconds{method,endpoint,status_code} (buckets 0.01 .. 10)
// A fixed-size open-addressing table keyed by (endpoint id, method, status); the owning thread
// inserts and increments, the scraper reads. Never allocates after construction.
class HttpShard {
 public:
  static constexpr int kBuckets = 8;
  static constexpr double kBucketBounds[kBuckets] = {0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10};
  static constexpr size_t kCapacity = 4096;

  struct Series {
    std::atomic<uint64_t> key{0};  // 0 = empty
    ShardValue count;
    ShardValue buckets[kBuckets];  // non-cumulative
    ShardValue sum_us;
  };

  HttpShard();
  // Records one request. `method` indexes http::Method; `status` is 100..999.
  void Record(uint32_t endpoint, int method, int status, int64_t duration_us);
  // Series that did not fit (counted, never silently lost).
  uint64_t dropped() const { return dropped_.Get(); }

  static uint64_t Key(uint32_t endpoint, int method, int status) {
    return (uint64_t{endpoint} << 16 | uint64_t(method) << 10 | uint64_t(status)) + 1;
  }
  static void Unkey(uint64_t key, uint32_t* endpoint, int* method, int* status) {
    key -= 1;
    *status = static_cast<int>(key & 1023);
    *method = static_cast<int>((key >> 10) & 63);
    *endpoint = static_cast<uint32_t>(key >> 16);
  }
  const Series* series() const { return series_.get(); }

 private:
  std::unique_ptr<Series[]> series_;
  ShardValue dropped_;
};

// Merges HttpShards and renders the two families.
// `method_names[i]` labels method index i (the caller's enum; the registry knows no HTTP).
void RenderHttpShards(const std::vector<const HttpShard*>& shards, const Interner& endpoints,
                      const std::vector<std::string_view>& method_names, std::string* out);

}  // namespace bulwark::observe
