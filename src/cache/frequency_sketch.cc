#include "cache/frequency_sketch.h"

#include <algorithm>

namespace bulwark::cache {
namespace {

// Four independent slots per key from one 64-bit hash (a multiply-shift per row).
constexpr uint64_t kSeeds[4] = {0x9E3779B97F4A7C15ull, 0xC2B2AE3D27D4EB4Full, 0x165667B19E3779F9ull,
                                0xD6E8FEB86659FD93ull};

uint64_t Mix(uint64_t h, int row) {
  uint64_t x = (h ^ (h >> 31)) * kSeeds[row];
  return x ^ (x >> 29);
}

}  // namespace

FrequencySketch::FrequencySketch(uint64_t capacity) {
  uint64_t width = 16;
  while (width < std::max<uint64_t>(capacity * 4, 16)) width <<= 1;
  mask_ = width - 1;
  words_ = width * 4 / 16;  // 4 rows of `width` 4-bit counters, 16 per word
  table_.reset(new uint64_t[words_]());
  sample_size_ = 10 * std::max<uint64_t>(capacity, 1);
}

int FrequencySketch::Counter(uint64_t slot, int row) const {
  uint64_t index = slot * 4 + static_cast<uint64_t>(row);  // rows interleaved per slot
  uint64_t word = index / 16;
  int shift = static_cast<int>(index % 16) * 4;
  return static_cast<int>((table_[word] >> shift) & 0xF);
}

void FrequencySketch::Increment(uint64_t key_hash) {
  uint64_t index[4];
  int value[4];
  int least = 15;
  for (int row = 0; row < 4; ++row) {
    index[row] = (Mix(key_hash, row) & mask_) * 4 + static_cast<uint64_t>(row);
    value[row] = static_cast<int>((table_[index[row] / 16] >> ((index[row] % 16) * 4)) & 0xF);
    least = std::min(least, value[row]);
  }
  if (least == 15) return;
  for (int row = 0; row < 4; ++row) {
    if (value[row] != least) continue;
    table_[index[row] / 16] += uint64_t{1} << ((index[row] % 16) * 4);
  }
  if (++additions_ >= sample_size_) Reset();
}

int FrequencySketch::Estimate(uint64_t key_hash) const {
  int m = 15;
  for (int row = 0; row < 4; ++row) m = std::min(m, Counter(Mix(key_hash, row) & mask_, row));
  return m;
}

void FrequencySketch::Reset() {
  // Halve every counter: shift each 4-bit field right by one, masking what crosses fields.
  for (uint64_t i = 0; i < words_; ++i) table_[i] = (table_[i] >> 1) & 0x7777777777777777ull;
  additions_ /= 2;
  ++resets_;
}

}  // namespace bulwark::cache
