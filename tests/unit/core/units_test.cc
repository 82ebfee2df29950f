#include "core/units.h"

#include "gtest/gtest.h"

namespace bulwark {
namespace {

TEST(Units, Durations) {
  EXPECT_EQ(*ParseDurationMs("500ms"), 500);
  EXPECT_EQ(*ParseDurationMs("30s"), 30000);
  EXPECT_EQ(*ParseDurationMs("5m"), 300000);
  EXPECT_EQ(*ParseDurationMs("1h 30m"), 5400000);
  EXPECT_EQ(*ParseDurationMs("2"), 2000);  // nginx: a bare number is seconds
  EXPECT_FALSE(ParseDurationMs("5x").ok());
  EXPECT_FALSE(ParseDurationMs("").ok());
  EXPECT_FALSE(ParseDurationMs("ms").ok());
  EXPECT_FALSE(ParseDurationMs("99999999999999999999s").ok());
}

TEST(Units, Sizes) {
  EXPECT_EQ(*ParseSizeBytes("10M"), 10 * 1024 * 1024);
  EXPECT_EQ(*ParseSizeBytes("512k"), 512 * 1024);
  EXPECT_EQ(*ParseSizeBytes("1g"), 1024LL * 1024 * 1024);
  EXPECT_EQ(*ParseSizeBytes("100"), 100);
  EXPECT_EQ(*ParseSizeBytes("10MB"), 10 * 1024 * 1024);
  EXPECT_FALSE(ParseSizeBytes("10T").ok());
  EXPECT_FALSE(ParseSizeBytes("abc").ok());
}

TEST(Units, RatesLikeNginx) {
  EXPECT_EQ(*ParseRateMilli("10r/s"), 10000);
  EXPECT_EQ(*ParseRateMilli("600r/m"), 10000);
  EXPECT_EQ(*ParseRateMilli("1r/m"), 16);  // nginx keeps 1000/60 truncated
  EXPECT_FALSE(ParseRateMilli("10/s").ok());
  EXPECT_FALSE(ParseRateMilli("0r/s").ok());
  EXPECT_FALSE(ParseRateMilli("5r/h").ok());
}

}  // namespace
}  // namespace bulwark
