#include "cache/trace.h"

#include <algorithm>
#include <cmath>

#include "cache/expiry.h"

namespace bulwark::cache {

ZipfGenerator::ZipfGenerator(uint64_t n, double s, uint64_t seed) : state_(seed | 1) {
  cdf_.resize(n);
  double sum = 0;
  for (uint64_t i = 0; i < n; ++i) {
    sum += 1.0 / std::pow(static_cast<double>(i + 1), s);
    cdf_[i] = sum;
  }
  for (double& c : cdf_) c /= sum;
}

uint64_t ZipfGenerator::Next() {
  state_ ^= state_ >> 12;
  state_ ^= state_ << 25;
  state_ ^= state_ >> 27;
  double u = static_cast<double>((state_ * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
  auto it = std::lower_bound(cdf_.begin(), cdf_.end(), u);
  if (it == cdf_.end()) --it;
  return static_cast<uint64_t>(it - cdf_.begin());
}

std::vector<uint64_t> ZipfTrace(uint64_t items, double s, uint64_t count, uint64_t seed) {
  ZipfGenerator zipf(items, s, seed);
  std::vector<uint64_t> trace(count);
  for (uint64_t& id : trace) id = zipf.Next();
  return trace;
}

std::vector<uint64_t> ZipfWithScansTrace(uint64_t items, double s, uint64_t count, uint64_t period,
                                         uint64_t scan_length, uint64_t seed) {
  ZipfGenerator zipf(items, s, seed);
  std::vector<uint64_t> trace;
  trace.reserve(count);
  uint64_t next_scan_id = items;  // scans walk ids outside the Zipf population
  while (trace.size() < count) {
    for (uint64_t i = 0; i < period && trace.size() < count; ++i) trace.push_back(zipf.Next());
    for (uint64_t i = 0; i < scan_length && trace.size() < count; ++i) {
      trace.push_back(next_scan_id++);
    }
  }
  return trace;
}

std::vector<uint64_t> LoopTrace(uint64_t items, uint64_t count) {
  std::vector<uint64_t> trace(count);
  for (uint64_t i = 0; i < count; ++i) trace[i] = i % items;
  return trace;
}

SimulationResult Simulate(EvictionPolicy policy, int64_t max_entries, int shards,
                          const std::vector<uint64_t>& trace) {
  L1Options o;
  o.policy = policy;
  o.max_entries = max_entries;
  o.shards = shards;
  L1Cache cache(o);
  auto value = std::make_shared<const std::string>("v");
  SimulationResult r;
  std::string key;
  PutOptions put;
  int64_t now = 0;
  for (uint64_t id : trace) {
    // Time advances one millisecond per access and every entry gets the same long TTL, so the
    // TTL policy evicts in insertion order (FIFO) as a fixed-TTL cache does.
    ++now;
    put.fresh_until_ms = now + (int64_t{1} << 40);
    key = "k";
    key += std::to_string(id);
    ++r.accesses;
    if (cache.Get(key, now).hit()) {
      ++r.hits;
    } else {
      cache.Put(key, value, put, now);
    }
  }
  return r;
}

}  // namespace bulwark::cache
