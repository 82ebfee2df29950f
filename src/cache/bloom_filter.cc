#include "cache/bloom_filter.h"

#include <algorithm>
#include <cmath>

#include "cache/l1_cache.h"

namespace bulwark::cache {

BloomFilter::BloomFilter(uint64_t capacity, double false_positive_rate)
    : capacity_(std::max<uint64_t>(capacity, 1)), fp_(std::clamp(false_positive_rate, 1e-9, 0.5)) {
  const double ln2 = std::log(2.0);
  double m = -static_cast<double>(capacity_) * std::log(fp_) / (ln2 * ln2);
  bits_ = std::max<uint64_t>(64, static_cast<uint64_t>(std::ceil(m)));
  bits_ = (bits_ + 63) / 64 * 64;
  k_ = std::max(1, static_cast<int>(std::lround(static_cast<double>(bits_) /
                                                static_cast<double>(capacity_) * ln2)));
  words_.reset(new std::atomic<uint64_t>[bits_ / 64]);
  Clear();
}

void BloomFilter::Clear() {
  for (uint64_t i = 0; i < bits_ / 64; ++i) words_[i].store(0, std::memory_order_relaxed);
  added_.store(0, std::memory_order_relaxed);
}

void BloomFilter::Add(std::string_view key) { AddHash(HashKey(key)); }

void BloomFilter::AddHash(uint64_t h) {
  uint64_t h1 = h;
  uint64_t h2 = (h >> 33) | (h << 31) | 1;  // odd, so the probes cycle through every bit
  bool fresh = false;
  for (int i = 0; i < k_; ++i) {
    uint64_t bit = (h1 + static_cast<uint64_t>(i) * h2) % bits_;
    uint64_t mask = uint64_t{1} << (bit % 64);
    uint64_t old = words_[bit / 64].fetch_or(mask, std::memory_order_relaxed);
    if (!(old & mask)) fresh = true;
  }
  if (fresh) added_.fetch_add(1, std::memory_order_relaxed);
}

bool BloomFilter::MayContain(std::string_view key) const { return MayContainHash(HashKey(key)); }

bool BloomFilter::MayContainHash(uint64_t h) const {
  uint64_t h1 = h;
  uint64_t h2 = (h >> 33) | (h << 31) | 1;
  for (int i = 0; i < k_; ++i) {
    uint64_t bit = (h1 + static_cast<uint64_t>(i) * h2) % bits_;
    if (!(words_[bit / 64].load(std::memory_order_relaxed) & (uint64_t{1} << (bit % 64)))) {
      return false;
    }
  }
  return true;
}

double BloomFilter::EstimatedFalsePositiveRate() const {
  double n = static_cast<double>(added());
  double k = k_;
  return std::pow(1.0 - std::exp(-k * n / static_cast<double>(bits_)), k);
}

}  // namespace bulwark::cache
