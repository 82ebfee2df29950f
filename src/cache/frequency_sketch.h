// A count-min sketch of access frequencies with 4-bit counters and periodic halving: the
// "TinyLFU" filter W-TinyLFU admits by (Einziger, Friedman, Manes: "TinyLFU: A Highly Efficient
// Cache Admission Policy", and Caffeine's FrequencySketch).
#pragma once

#include <cstdint>
#include <memory>

namespace bulwark::cache {

// Estimates how often a key was seen recently. Four rows of 4-bit counters (saturating at 15);
// after `10 × capacity` increments every counter is halved, so old popularity fades. Memory is
// 8 bytes per cached entry. Not thread-safe (one per cache shard).
class FrequencySketch {
 public:
  explicit FrequencySketch(uint64_t capacity);

  void Increment(uint64_t key_hash);
  int Estimate(uint64_t key_hash) const;  // 0..15
  uint64_t resets() const { return resets_; }

 private:
  int Counter(uint64_t slot, int row) const;
  void Reset();

  uint64_t mask_;                      // counters per row - 1
  std::unique_ptr<uint64_t[]> table_;  // 16 counters per word, rows interleaved
  uint64_t words_;
  uint64_t sample_size_;
  uint64_t additions_ = 0;
  uint64_t resets_ = 0;
};

}  // namespace bulwark::cache
