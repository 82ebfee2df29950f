// Expiry helpers shared by the library and the HTTP cache: TTL jitter against avalanches and
// probabilistic early refresh against stampedes.
#pragma once

#include <cstdint>

namespace bulwark::cache {

// `random_expiry`: spreads a TTL uniformly over [ttl·(1−jitter), ttl] so keys written together
// do not all expire in the same instant (the "cache avalanche" of the AlkaidSYS cache design). The
// configured TTL stays the upper bound on staleness. `u` is uniform in [0, 1).
int64_t JitteredTtl(int64_t ttl_ms, double jitter, double u);

// XFetch (Vattani, Chierichetti, Lowenstein: "Optimal Probabilistic Cache Stampede Prevention"):
// a reader refreshes early when now − load_ms·beta·ln(u) ≥ fresh_until, so the chance grows as
// expiry nears and as loading gets slower, and in expectation one reader refreshes before the
// entry expires. beta = 1 is the paper's optimum; > 1 refreshes earlier. `u` is uniform in (0, 1].
bool XFetchShouldRefresh(int64_t now_ms, int64_t fresh_until_ms, int64_t load_ms, double beta,
                         double u);

// A small, fast generator for the random numbers above (xorshift64*); not for cryptography.
class FastRandom {
 public:
  explicit FastRandom(uint64_t seed) : state_(seed ? seed : 0x9E3779B97F4A7C15ull) {}
  uint64_t Next() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545F4914F6CDD1Dull;
  }
  // Uniform in [0, 1).
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

}  // namespace bulwark::cache
