// A count-min sketch of access frequencies with 4-bit counters and periodic halving: the
// "TinyLFU" filter W-TinyLFU admits by (Einziger, Friedman, Manes: "TinyLFU: A Highly Efficient
// Cache Admission Policy", and Caffeine's FrequencySketch).
#pragma once

#include <cstdint>
#include <memory>

namespace bulwark::cache {

// Estimates how often a key was seen recently. Four rows of 4-bit counters (saturating at 15),
// each row 4 × capacity wide (rounded up to a power of two): 16 counters, 8 bytes, per cached
// entry, as Caffeine sizes its sketch — a narrower one lets the many rare keys of a long tail
// collide into estimates that beat the cache's real residents. Increments are conservative
// ("minimal increment", from the TinyLFU paper): only the rows at the key's current minimum
// go up, which keeps the other rows' collisions from inflating anyone's estimate. After
// `10 × capacity` increments every counter is halved, so old popularity fades. Not thread-safe
// (one per cache shard).
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
