// Synthetic access traces for sizing caches and comparing eviction policies: the workloads the
// cache literature (and Caffeine's simulator) uses to show where each policy wins.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cache/l1_cache.h"

namespace bulwark::cache {

// Draws ids 0..n-1 with P(i) ∝ 1/(i+1)^s (Zipf), by inverse transform on the cumulative table.
class ZipfGenerator {
 public:
  ZipfGenerator(uint64_t n, double s, uint64_t seed);
  uint64_t Next();

 private:
  std::vector<double> cdf_;
  uint64_t state_;
};

// `count` Zipf(s) accesses over `items` ids.
std::vector<uint64_t> ZipfTrace(uint64_t items, double s, uint64_t count, uint64_t seed);
// A Zipf trace where every `period` accesses a scan of `scan_length` ids never seen before is
// inserted (a crawler or a batch job walking the key space).
std::vector<uint64_t> ZipfWithScansTrace(uint64_t items, double s, uint64_t count, uint64_t period,
                                         uint64_t scan_length, uint64_t seed);
// A loop over `items` ids, repeated until `count` accesses (LRU's worst case once the loop is
// larger than the cache).
std::vector<uint64_t> LoopTrace(uint64_t items, uint64_t count);

struct SimulationResult {
  uint64_t accesses = 0;
  uint64_t hits = 0;
  double hit_ratio() const { return accesses ? static_cast<double>(hits) / accesses : 0; }
};

// Replays a trace as cache-aside: Get, and on a miss Put a small value. Keys are "k<id>".
SimulationResult Simulate(EvictionPolicy policy, int64_t max_entries, int shards,
                          const std::vector<uint64_t>& trace);

}  // namespace bulwark::cache
