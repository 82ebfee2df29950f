// Hit ratio of every eviction policy on synthetic traces, per cache size, as a Markdown table.
//
//   ninja -C build/bench cache_hit_ratio && build/bench/bench/cache_hit_ratio
//
// Traces: Zipf 0.7 / 0.9 / 1.1 over 100k items, Zipf 0.9 with a 5k-key scan every 20k accesses,
// and a loop over 12k items. Sizes are shares of the item count. One shard, so each policy is
// measured exactly. The last line is a one-line summary (W-TinyLFU's gain over LRU at 1%).
#include <cstdio>
#include <string>
#include <vector>

#include "cache/trace.h"

using namespace bulwark::cache;

int main() {
  constexpr uint64_t kItems = 100000;
  constexpr uint64_t kAccesses = 2000000;
  struct Trace {
    std::string name;
    std::vector<uint64_t> ids;
    uint64_t items;
  };
  std::vector<Trace> traces;
  traces.push_back({"zipf-0.7", ZipfTrace(kItems, 0.7, kAccesses, 1), kItems});
  traces.push_back({"zipf-0.9", ZipfTrace(kItems, 0.9, kAccesses, 2), kItems});
  traces.push_back({"zipf-1.1", ZipfTrace(kItems, 1.1, kAccesses, 3), kItems});
  traces.push_back(
      {"zipf-0.9+scans", ZipfWithScansTrace(kItems, 0.9, kAccesses, 20000, 5000, 4), kItems});
  traces.push_back({"loop-12k", LoopTrace(12000, kAccesses), 12000});
  const EvictionPolicy policies[] = {EvictionPolicy::kWTinyLfu, EvictionPolicy::kLru,
                                     EvictionPolicy::kLfu, EvictionPolicy::kTtl};
  const double shares[] = {0.005, 0.01, 0.05, 0.10};

  std::printf("| trace | cache size | w-tinylfu | lru | lfu | ttl (fifo) |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  double gain_sum = 0;
  int gain_n = 0;
  for (const Trace& t : traces) {
    for (double share : shares) {
      // The loop trace is sized against 100k as well, so 10% (10k) is still smaller than it.
      auto size = static_cast<int64_t>(static_cast<double>(kItems) * share);
      std::printf("| %s | %lld |", t.name.c_str(), static_cast<long long>(size));
      double w = 0, l = 0;
      for (EvictionPolicy p : policies) {
        double r = Simulate(p, size, 1, t.ids).hit_ratio();
        if (p == EvictionPolicy::kWTinyLfu) w = r;
        if (p == EvictionPolicy::kLru) l = r;
        std::printf(" %.2f%% |", r * 100);
      }
      std::printf("\n");
      std::fflush(stdout);
      if (share == 0.01) {
        gain_sum += w - l;
        ++gain_n;
      }
    }
  }
  std::printf("cache_hit_ratio: wtinylfu_minus_lru_at_1pct_avg=%.2fpp traces=%d\n",
              gain_sum / gain_n * 100, gain_n);
  return 0;
}
