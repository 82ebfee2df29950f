// A Bloom filter of known keys, the AlkaidSYS cache design's defence against cache penetration: a
// lookup for a key the filter has never seen is answered "does not exist" without touching L2 or
// the origin.
//
// Sized from the expected number of keys and the false-positive rate (m = -n·ln p / ln²2 bits,
// k = m/n·ln 2 hash functions, at least 1), with k probes derived from one 64-bit hash
// (Kirsch–Mitzenmacher double hashing). Bits are set with atomic OR, so any thread may Add and
// MayContain at once without a lock. A filter only grows: deleting keys needs a rebuild
// (Rebuild swaps in a fresh set, e.g. on the warm-up schedule).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>

namespace bulwark::cache {

class BloomFilter {
 public:
  // `capacity` ≥ 1 keys at `false_positive_rate` in (0, 1).
  BloomFilter(uint64_t capacity, double false_positive_rate);

  void Add(std::string_view key);
  void AddHash(uint64_t key_hash);
  bool MayContain(std::string_view key) const;
  bool MayContainHash(uint64_t key_hash) const;
  void Clear();

  uint64_t bits() const { return bits_; }
  int hashes() const { return k_; }
  uint64_t capacity() const { return capacity_; }
  double false_positive_rate() const { return fp_; }
  uint64_t added() const { return added_.load(std::memory_order_relaxed); }
  // Added keys beyond the capacity make the real false-positive rate worse than configured.
  bool saturated() const { return added() > capacity_; }
  // The rate the current fill gives: (1 - e^(-k·n/m))^k.
  double EstimatedFalsePositiveRate() const;

 private:
  uint64_t capacity_;
  double fp_;
  uint64_t bits_;
  int k_;
  std::unique_ptr<std::atomic<uint64_t>[]> words_;
  std::atomic<uint64_t> added_{0};
};

}  // namespace bulwark::cache
