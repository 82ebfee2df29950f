#include <gtest/gtest.h>

#include <cmath>

#include "observe/tsdb/store.h"

namespace bulwark::observe::tsdb {
namespace {

using observe::Labels;
using observe::Matcher;

Matcher Eq(std::string name, std::string value) {
  Matcher m;
  m.name = std::move(name);
  m.value = std::move(value);
  return m;
}

TEST(TsdbStore, AppendsSelectsAndRefusesOutOfOrder) {
  Store s;
  Labels a = {{"__name__", "up"}, {"job", "a"}};
  Labels b = {{"__name__", "up"}, {"job", "b"}};
  EXPECT_TRUE(s.Append(b, 1000, 1));
  EXPECT_TRUE(s.Append(a, 1000, 0));
  EXPECT_TRUE(s.Append(a, 2000, 1));
  EXPECT_FALSE(s.Append(a, 2000, 5));  // same time
  EXPECT_FALSE(s.Append(a, 1500, 5));  // older
  EXPECT_EQ(s.stats().out_of_order, 2u);
  std::vector<const Series*> out;
  s.Select({Eq("__name__", "up")}, &out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0]->labels, a);  // ordered by labels
  EXPECT_EQ(out[1]->labels, b);
  s.Select({Eq("__name__", "up"), Eq("job", "b")}, &out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0]->labels, b);
  // A matcher that accepts the empty value also accepts series without the label.
  Matcher none = Eq("zone", "");
  s.Select({Eq("__name__", "up"), none}, &out);
  EXPECT_EQ(out.size(), 2u);
  s.Select({Eq("__name__", "down")}, &out);
  EXPECT_TRUE(out.empty());
}

TEST(TsdbStore, StalenessAndLookback) {
  Store s;
  Labels a = {{"__name__", "x"}};
  s.Append(a, 0, 1);
  s.Append(a, 60000, 2);
  s.Append(a, 120000, StaleNaN());
  s.Append(a, 180000, 4);
  const Series* x = s.Find(a);
  ASSERT_NE(x, nullptr);
  Point p;
  ASSERT_TRUE(x->ValueAt(60000 - 300000, 60000, &p));
  EXPECT_EQ(p.v, 2);
  EXPECT_FALSE(x->ValueAt(120000 - 300000, 120000, &p));  // the marker ends it
  EXPECT_FALSE(x->ValueAt(170000 - 300000, 170000, &p));
  ASSERT_TRUE(x->ValueAt(480000 - 300000, 480000, &p));  // lookback includes its start
  EXPECT_EQ(p.v, 4);
  EXPECT_FALSE(x->ValueAt(480001 - 300000, 480001, &p));
  // An ordinary NaN is a value, not a marker.
  EXPECT_FALSE(IsStaleNaN(NAN));
  EXPECT_TRUE(IsStaleNaN(StaleNaN()));
  auto [b, e] = x->Range(0, 180000);
  EXPECT_EQ(e - b, 3);  // both ends, markers left out
}

TEST(TsdbStore, TrimDropsOldPointsAndSeriesAndCapsSeries) {
  Store::Options o;
  o.retention_ms = 10000;
  o.max_series = 2;
  Store s(o);
  Labels a = {{"__name__", "a"}}, b = {{"__name__", "b"}}, c = {{"__name__", "c"}};
  for (int t = 0; t <= 20000; t += 1000) s.Append(a, t, t);
  s.Append(b, 1000, 1);
  EXPECT_EQ(s.Ref(c), -1);
  EXPECT_EQ(s.stats().series_refused, 1u);
  s.Trim(20000);
  EXPECT_EQ(s.Find(b), nullptr);  // nothing newer than the retention
  ASSERT_NE(s.Find(a), nullptr);
  EXPECT_EQ(s.Find(a)->points.front().t, 10000);
  EXPECT_EQ(s.stats().series, 1u);
  EXPECT_EQ(s.stats().samples, 11u);
  EXPECT_GE(s.Ref(c), 0);  // room again, the freed id reused
  std::vector<const Series*> out;
  s.Select({Eq("__name__", "b")}, &out);
  EXPECT_TRUE(out.empty());
}

TEST(TsdbStore, SampleCapShortensRetention) {
  Store::Options o;
  o.retention_ms = 1000000;
  o.max_samples = 100;
  Store s(o);
  Labels a = {{"__name__", "a"}};
  for (int t = 0; t < 1000; ++t) s.Append(a, t * 1000, t);
  s.Trim(999000);
  EXPECT_LE(s.stats().samples, 100u);
  EXPECT_GT(s.stats().samples_trimmed, 800u);
  EXPECT_EQ(s.Find(a)->points.back().t, 999000);
}

}  // namespace
}  // namespace bulwark::observe::tsdb
