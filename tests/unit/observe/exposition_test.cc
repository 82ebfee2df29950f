#include "observe/exposition.h"

#include <gtest/gtest.h>

#include <cmath>

#include "observe/system_metrics.h"

namespace bulwark::observe {
namespace {

TEST(Exposition, ParsesWhatPrometheusClientsServe) {
  std::vector<ExpositionSample> got;
  absl::Status st = ParseExposition(
      "# HELP x A help.\n# TYPE x counter\n"
      "x{a=\"1\",b=\"q\\\"\\\\\\n\"} 12.5\n"
      "x_bucket{le=\"+Inf\"} 3 1700000000000\n"
      "  y NaN\r\n"
      "z{a=\"\"} -Inf\n\n",
      100, [&](ExpositionSample& s) { got.push_back(s); });
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].labels, (observe::Labels{{"__name__", "x"}, {"a", "1"}, {"b", "q\"\\\n"}}));
  EXPECT_EQ(got[0].value, 12.5);
  EXPECT_EQ(got[1].timestamp_ms, 1700000000000);
  EXPECT_TRUE(std::isnan(got[2].value));
  EXPECT_EQ(got[3].labels.size(), 1u);  // the empty label is no label
  EXPECT_TRUE(std::isinf(got[3].value));
}

TEST(Exposition, RefusesBadInputWithTheLine) {
  auto err = [](const std::string& text, size_t limit = 100) {
    absl::Status st = ParseExposition(text, limit, [](ExpositionSample&) {});
    return std::string(st.message());
  };
  EXPECT_EQ(err("ok 1\n{a=\"b\"} 1\n"), "line 2: expected a metric name");
  EXPECT_EQ(err("x{a=\"b} 1\n"), "line 1: unterminated label value");
  EXPECT_EQ(err("x 1 2 3\n"), "line 1: expected a timestamp in milliseconds");
  EXPECT_EQ(err("x abc\n"), "line 1: expected a sample value");
  EXPECT_EQ(err("x{a=\"1\",a=\"2\"} 1\n"), "line 1: label a given twice");
  EXPECT_EQ(err("x 1\ny 2\nz 3\n", 2), "more than 2 samples");
  EXPECT_EQ(err(std::string(70000, 'x') + " 1\n"), "line 1: longer than 64 KiB");
}

TEST(SystemMetrics, RendersTheAlkaidSysNamesFromProc) {
  SystemMetrics m;
  std::string out;
  m.Collect(&out);
  std::vector<ExpositionSample> got;
  ASSERT_TRUE(ParseExposition(out, 10000, [&](ExpositionSample& s) { got.push_back(s); }).ok())
      << out;
  auto find = [&](const std::string& name, const std::string& label = "",
                  const std::string& value = "") {
    for (const auto& s : got) {
      if (s.labels[0].second != name &&
          !(s.labels.back().first == "__name__" && s.labels.back().second == name)) {
        bool named = false;
        for (const auto& [k, v] : s.labels) named |= k == "__name__" && v == name;
        if (!named) continue;
      }
      if (label.empty()) return s.value;
      for (const auto& [k, v] : s.labels) {
        if (k == label && (value.empty() || v == value)) return s.value;
      }
    }
    return -1.0;
  };
  double cpu = find("cpu_usage_percent");
  EXPECT_GE(cpu, 0);
  EXPECT_LE(cpu, 100);
  // heap is malloc's own count (0 under a sanitizer's allocator); the two add up to the RSS.
  double heap = find("memory_usage_bytes", "type", "heap");
  double non_heap = find("memory_usage_bytes", "type", "non_heap");
  EXPECT_GE(heap, 0);
  EXPECT_GE(non_heap, 0);
  EXPECT_GT(heap + non_heap, 0);
  EXPECT_GT(find("disk_usage_bytes", "mount_point"), 0) << out;
  EXPECT_GE(find("network_bytes_total", "direction", "received"), 0);
  EXPECT_GT(find("process_resident_memory_bytes"), 0);
  EXPECT_GT(find("process_open_fds"), 2);
  EXPECT_GT(find("process_start_time_seconds"), 1.6e9);
}

}  // namespace
}  // namespace bulwark::observe
