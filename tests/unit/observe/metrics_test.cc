#include "observe/metrics.h"

#include "gtest/gtest.h"

namespace bulwark::observe {
namespace {

TEST(HttpShard, MergesShardsIntoPrometheusText) {
  Interner names;
  uint32_t api = names.Intern("api");
  EXPECT_EQ(names.Intern("api"), api);
  HttpShard a, b;
  a.Record(api, 0, 200, 5000);      // 5ms
  a.Record(api, 0, 200, 300000);    // 300ms
  b.Record(api, 0, 200, 20000000);  // 20s
  b.Record(api, 1, 503, 1000);
  std::string out;
  RenderHttpShards({&a, &b}, names, {"GET", "POST"}, &out);
  EXPECT_NE(
      out.find("http_requests_total{method=\"GET\",endpoint=\"api\",status_code=\"200\"} 3\n"),
      std::string::npos)
      << out;
  EXPECT_NE(
      out.find("http_requests_total{method=\"POST\",endpoint=\"api\",status_code=\"503\"} 1\n"),
      std::string::npos);
  EXPECT_NE(out.find("http_request_duration_seconds_bucket{method=\"GET\",endpoint=\"api\",status_"
                     "code=\"200\",le=\"0.01\"} 1\n"),
            std::string::npos);
  EXPECT_NE(out.find("http_request_duration_seconds_bucket{method=\"GET\",endpoint=\"api\",status_"
                     "code=\"200\",le=\"0.5\"} 2\n"),
            std::string::npos);
  EXPECT_NE(out.find("http_request_duration_seconds_bucket{method=\"GET\",endpoint=\"api\",status_"
                     "code=\"200\",le=\"10\"} 2\n"),
            std::string::npos);
  EXPECT_NE(out.find("http_request_duration_seconds_bucket{method=\"GET\",endpoint=\"api\",status_"
                     "code=\"200\",le=\"+Inf\"} 3\n"),
            std::string::npos);
  EXPECT_NE(out.find("http_request_duration_seconds_sum{method=\"GET\",endpoint=\"api\",status_"
                     "code=\"200\"} 20.305\n"),
            std::string::npos);
  EXPECT_NE(out.find("# TYPE http_request_duration_seconds histogram"), std::string::npos);
}

TEST(HttpShard, FullTableCountsDrops) {
  Interner names;
  HttpShard s;
  for (uint32_t e = 0; e < 5000; ++e) s.Record(e, 0, 200, 1);
  EXPECT_GT(s.dropped(), 0u);
}

TEST(Exposition, EscapesLabelValues) {
  std::string out;
  AppendLabelValue(&out, "a\"b\\c\nd");
  EXPECT_EQ(out, "a\\\"b\\\\c\\nd");
  out.clear();
  AppendValue(&out, 0.25);
  AppendValue(&out, 3);
  EXPECT_EQ(out, "0.253");
}

}  // namespace
}  // namespace bulwark::observe
