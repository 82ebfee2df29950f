// L1 get/put throughput per eviction policy on one and two threads sharing one cache.
//
//   cmake -S . -B build/bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DBULWARK_BENCH=ON
//   ninja -C build/bench cache_micro && build/bench/bench/cache_micro
//
// Keys follow a Zipf(0.9) popularity over 100k keys; the cache holds 10k entries (16 shards).
// The last line is a one-line summary of get and put Mops/s per policy at 2 threads.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cache/l1_cache.h"
#include "cache/trace.h"

namespace bulwark::cache {
namespace {

constexpr uint64_t kItems = 100000;
constexpr int64_t kCapacity = 10000;
constexpr size_t kTraceLength = 1 << 20;

const std::vector<std::string>& Keys() {
  static const auto* keys = [] {
    auto* k = new std::vector<std::string>();
    auto ids = ZipfTrace(kItems, 0.9, kTraceLength, 7);
    k->reserve(ids.size());
    for (uint64_t id : ids) k->push_back("object:" + std::to_string(id));
    return k;
  }();
  return *keys;
}

std::unique_ptr<L1Cache> g_cache;
std::shared_ptr<const std::string> g_value = std::make_shared<const std::string>(100, 'v');

void Setup(EvictionPolicy policy) {
  L1Options o;
  o.policy = policy;
  o.max_entries = kCapacity;
  o.shards = 16;
  g_cache = std::make_unique<L1Cache>(o);
  PutOptions put;
  // Each entry gets its own value, as real entries do (a shared one would make every hit
  // contend on one reference count).
  for (const std::string& k : Keys()) {
    if (!g_cache->Get(k, 0).hit()) g_cache->Put(k, std::string(100, 'v'), put, 0);
  }
}

void BM_Get(benchmark::State& state, EvictionPolicy policy) {
  if (state.thread_index() == 0) Setup(policy);
  const auto& keys = Keys();
  size_t i = static_cast<size_t>(state.thread_index()) * 7919;
  uint64_t hits = 0;
  for (auto _ : state) {
    hits += g_cache->Get(keys[i++ & (kTraceLength - 1)], 0).hit();
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["hit_ratio"] =
      benchmark::Counter(static_cast<double>(hits), benchmark::Counter::kAvgIterations);
  if (state.thread_index() == 0) g_cache.reset();
}

void BM_Put(benchmark::State& state, EvictionPolicy policy) {
  if (state.thread_index() == 0) Setup(policy);
  const auto& keys = Keys();
  size_t i = static_cast<size_t>(state.thread_index()) * 7919;
  PutOptions put;
  for (auto _ : state) {
    g_cache->Put(keys[i++ & (kTraceLength - 1)], g_value, put, 0);
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) g_cache.reset();
}

// Cache-aside: get, and put on a miss.
void BM_GetOrPut(benchmark::State& state, EvictionPolicy policy) {
  if (state.thread_index() == 0) Setup(policy);
  const auto& keys = Keys();
  size_t i = static_cast<size_t>(state.thread_index()) * 7919;
  PutOptions put;
  for (auto _ : state) {
    const std::string& k = keys[i++ & (kTraceLength - 1)];
    if (!g_cache->Get(k, 0).hit()) g_cache->Put(k, g_value, put, 0);
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) g_cache.reset();
}

#define POLICY_BENCH(fn, policy, name) \
  BENCHMARK_CAPTURE(fn, name, EvictionPolicy::policy)->Threads(1)->Threads(2)->UseRealTime()

POLICY_BENCH(BM_Get, kWTinyLfu, wtinylfu);
POLICY_BENCH(BM_Get, kLru, lru);
POLICY_BENCH(BM_Get, kLfu, lfu);
POLICY_BENCH(BM_Get, kTtl, ttl);
POLICY_BENCH(BM_Put, kWTinyLfu, wtinylfu);
POLICY_BENCH(BM_Put, kLru, lru);
POLICY_BENCH(BM_Put, kLfu, lfu);
POLICY_BENCH(BM_Put, kTtl, ttl);
POLICY_BENCH(BM_GetOrPut, kWTinyLfu, wtinylfu);
POLICY_BENCH(BM_GetOrPut, kLru, lru);
POLICY_BENCH(BM_GetOrPut, kLfu, lfu);
POLICY_BENCH(BM_GetOrPut, kTtl, ttl);

// Collects items/s of the 2-thread runs for the summary line.
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      std::string name = r.benchmark_name();
      if (name.find("threads:2") == std::string::npos) continue;
      auto it = r.counters.find("items_per_second");
      if (it == r.counters.end()) continue;
      std::string op = name.substr(3, name.find('/') - 3);  // Get, Put, GetOrPut
      std::string policy = name.substr(name.find('/') + 1);
      policy = policy.substr(0, policy.find('/'));
      summary_[policy + "_" + op] = it->second.value / 1e6;
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    std::printf("cache_micro (Mops/s, 2 threads):");
    for (const auto& [k, v] : summary_) std::printf(" %s=%.1f", k.c_str(), v);
    std::printf("\n");
  }

 private:
  std::map<std::string, double> summary_;
};

}  // namespace
}  // namespace bulwark::cache

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  bulwark::cache::SummaryReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
