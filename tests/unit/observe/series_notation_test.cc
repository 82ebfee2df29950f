#include "observe/promql/series_notation.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

namespace bulwark::observe::promql {
namespace {

std::string Render(const std::string& text) {
  auto v = ParseSeriesValues(text);
  if (!v.ok()) return "error: " + std::string(v.status().message());
  std::string out;
  for (const SeriesValue& s : *v) {
    if (!out.empty()) out += " ";
    switch (s.kind) {
      case SeriesValue::Kind::kMissing:
        out += "_";
        break;
      case SeriesValue::Kind::kStale:
        out += "stale";
        break;
      case SeriesValue::Kind::kValue: {
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%g", s.value);
        out += buf;
      }
    }
  }
  return out;
}

// The sample counts match what promtool 2.42 makes of the same strings
// (count_over_time over the whole series).
TEST(SeriesNotation, ExpandsLikePromtool) {
  EXPECT_EQ(Render("1x3"), "1 1 1 1");
  EXPECT_EQ(Render("_x3"), "_ _ _");
  EXPECT_EQ(Render("1 _x3 2"), "1 _ _ _ 2");
  EXPECT_EQ(Render("1+2x3"), "1 3 5 7");
  EXPECT_EQ(Render("1-2x2"), "1 -1 -3");
  EXPECT_EQ(Render("-2+4x3"), "-2 2 6 10");
  EXPECT_EQ(Render(" 1-2x4"), "1 -1 -3 -5 -7");
  EXPECT_EQ(Render("1 stale 2"), "1 stale 2");
  EXPECT_EQ(Render("-Inf +Inf NaN"), "-inf inf nan");
  EXPECT_EQ(Render("1e2x1"), "100 100");
  EXPECT_EQ(Render("1e-3+1e-3x1"), "0.001 0.002");
  // Each step adds to the previous sample, so float error accumulates as in promtool.
  auto steps = ParseSeriesValues("0.1+0.1x7");
  ASSERT_TRUE(steps.ok());
  EXPECT_EQ(steps->back().value, 0.7999999999999999);
  EXPECT_EQ(Render("0+0x2 1+0x2"), "0 0 0 1 1 1");
}

TEST(SeriesNotation, RefusesWhatPromtoolRefuses) {
  for (const char* bad : {"0x1f", "3+-1x2", "stalex2", "abc", "1+x2", "1x-1"}) {
    EXPECT_EQ(Render(bad).rfind("error: ", 0), 0u) << bad << " -> " << Render(bad);
  }
  EXPECT_NE(Render("1+1x100000000").find("more than"), std::string::npos);
}

TEST(SeriesNotation, SeriesDescriptions) {
  auto l = ParseSeriesDesc("up{job=\"node\", instance=\"a:9100\"}");
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(*l, (Labels{{"__name__", "up"}, {"instance", "a:9100"}, {"job", "node"}}));
  EXPECT_EQ(ParseSeriesDesc("{__name__=\"x\"}")->size(), 1u);
  EXPECT_FALSE(ParseSeriesDesc("up{job=~\"n.*\"}").ok());
  EXPECT_FALSE(ParseSeriesDesc("rate(up[5m])").ok());
  EXPECT_FALSE(ParseSeriesDesc("up{a=\"1\", a=\"2\"}").ok());
}

}  // namespace
}  // namespace bulwark::observe::promql
