#include "cache/expiry.h"

#include <algorithm>
#include <cmath>

namespace bulwark::cache {

int64_t JitteredTtl(int64_t ttl_ms, double jitter, double u) {
  if (ttl_ms <= 0 || jitter <= 0) return ttl_ms;
  jitter = std::min(jitter, 1.0);
  auto cut = static_cast<int64_t>(static_cast<double>(ttl_ms) * jitter * u);
  return std::max<int64_t>(1, ttl_ms - cut);
}

bool XFetchShouldRefresh(int64_t now_ms, int64_t fresh_until_ms, int64_t load_ms, double beta,
                         double u) {
  if (now_ms >= fresh_until_ms) return true;
  if (load_ms <= 0 || beta <= 0) return false;
  u = std::max(u, 1e-12);
  double early = -static_cast<double>(load_ms) * beta * std::log(u);
  return static_cast<double>(now_ms) + early >= static_cast<double>(fresh_until_ms);
}

}  // namespace bulwark::cache
