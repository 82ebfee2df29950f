#include "cache/expiry.h"

#include <gtest/gtest.h>

namespace bulwark::cache {
namespace {

TEST(JitteredTtl, StaysWithinTheConfiguredSpreadBelowTheTtl) {
  EXPECT_EQ(JitteredTtl(1000, 0.1, 0.0), 1000);
  EXPECT_EQ(JitteredTtl(1000, 0.1, 0.999999), 901);
  EXPECT_EQ(JitteredTtl(1000, 0.0, 0.5), 1000);
  EXPECT_EQ(JitteredTtl(0, 0.1, 0.5), 0);
  FastRandom r(1);
  int64_t lo = INT64_MAX, hi = 0;
  double sum = 0;
  for (int i = 0; i < 100000; ++i) {
    int64_t t = JitteredTtl(3600000, 0.2, r.Uniform());
    lo = std::min(lo, t);
    hi = std::max(hi, t);
    sum += static_cast<double>(t);
  }
  EXPECT_GE(lo, 2880000);
  EXPECT_LE(hi, 3600000);
  EXPECT_LT(hi - lo, 720001);
  EXPECT_GT(hi - lo, 700000);  // really spread, not clumped
  EXPECT_NEAR(sum / 100000, 3240000, 5000);
}

TEST(XFetch, RefreshGetsLikelierAsExpiryNears) {
  FastRandom r(2);
  auto share = [&r](int64_t now) {
    int yes = 0;
    for (int i = 0; i < 100000; ++i) {
      yes += XFetchShouldRefresh(now, 10000, 100, 1.0, 1.0 - r.Uniform());
    }
    return yes / 100000.0;
  };
  // P(refresh) = P(-100·ln u ≥ 10000 - now) = e^{-(10000-now)/100}
  EXPECT_NEAR(share(9000), 0.0, 0.0005);
  EXPECT_NEAR(share(9900), 0.368, 0.01);
  EXPECT_NEAR(share(9990), 0.905, 0.01);
  EXPECT_TRUE(XFetchShouldRefresh(10000, 10000, 100, 1.0, 0.5));
  EXPECT_FALSE(XFetchShouldRefresh(9999, 10000, 0, 1.0, 1e-9));  // free loads never go early
}

}  // namespace
}  // namespace bulwark::cache
