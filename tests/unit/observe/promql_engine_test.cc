// The evaluator's edges that promtool's test format cannot express: errors, limits and
// Go-compatible formatting. (Everything else is checked against promtool in
// tests/rules/*.test.yml.)
#include <gtest/gtest.h>

#include "observe/promql/engine.h"
#include "observe/promql/parser.h"

namespace bulwark::observe::promql {
namespace {

class Engine : public ::testing::Test {
 protected:
  void SetUp() override {
    Add({{"__name__", "x"}, {"a", "1"}, {"b", "1"}}, 1);
    Add({{"__name__", "x"}, {"a", "1"}, {"b", "2"}}, 2);
    Add({{"__name__", "y"}, {"a", "1"}}, 10);
    Add({{"__name__", "z"}, {"a", "1"}}, 5);
  }
  void Add(Labels l, double v) {
    for (int64_t t = 0; t <= 600000; t += 60000) store_.Append(l, t, v);
  }
  absl::Status Eval(const std::string& q, QueryResult* r, EvalOptions o = {}) {
    auto e = Parse(q);
    if (!e.ok()) return e.status();
    return Evaluate(**e, 600000, store_, o, r);
  }
  tsdb::Store store_;
};

TEST_F(Engine, ReportsPrometheusErrors) {
  QueryResult r;
  absl::Status st = Eval("y / on (a) x", &r);
  EXPECT_NE(st.message().find("found duplicate series for the match group {a=\"1\"} on the right "
                              "hand-side of the operation"),
            std::string::npos)
      << st;
  st = Eval("x / on (a) group_left y", &r);
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(r.vector.size(), 2u);
  st = Eval("x + on (a) group_left z", &r);  // fine: grouping labels differ
  EXPECT_TRUE(st.ok()) << st;
  st = Eval("x * ignoring (b) y", &r);
  EXPECT_NE(st.message().find("many-to-one matching must be explicit"), std::string::npos) << st;
  st = Eval("abs({a=\"1\"})", &r);
  EXPECT_EQ(st.message(), "vector cannot contain metrics with the same labelset");
  st = Eval("x[5m]", &r);
  EXPECT_TRUE(st.ok());
  EXPECT_EQ(r.type, ValueType::kMatrix);
  EXPECT_EQ(r.matrix.size(), 2u);
  EXPECT_EQ(r.matrix[0].points.size(), 6u);  // 5m..10m, both ends
}

TEST_F(Engine, LimitsSamplesAndSubquerySteps) {
  QueryResult r;
  EvalOptions o;
  o.max_samples = 10;
  EXPECT_NE(Eval("x[10m]", &r, o).message().find("too many samples"), std::string::npos);
  o = {};
  o.max_subquery_steps = 100;
  EXPECT_NE(Eval("max_over_time(x[1h:1s])", &r, o).message().find("steps"), std::string::npos);
  EXPECT_TRUE(Eval("max_over_time(x[1h:1m])", &r, o).ok());
}

TEST_F(Engine, TopkKeepsNamesAndCountValuesFormatsLikeGo) {
  QueryResult r;
  ASSERT_TRUE(Eval("topk(1, x)", &r).ok());
  ASSERT_EQ(r.vector.size(), 1u);
  EXPECT_EQ(LabelsString(*r.vector[0].labels), "{__name__=\"x\", a=\"1\", b=\"2\"}");
  ASSERT_TRUE(Eval("count_values(\"v\", x / 4)", &r).ok());
  std::vector<std::string> got;
  for (const Sample& s : r.vector) got.push_back(LabelsString(*s.labels));
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::string>{"{v=\"0.25\"}", "{v=\"0.5\"}"}));
}

TEST(FormatGoFloat, MatchesGoPercentV) {
  EXPECT_EQ(FormatGoFloat(0.05), "0.05");
  EXPECT_EQ(FormatGoFloat(100), "100");
  EXPECT_EQ(FormatGoFloat(123456), "123456");
  EXPECT_EQ(FormatGoFloat(1234567), "1.234567e+06");
  EXPECT_EQ(FormatGoFloat(1e21), "1e+21");
  EXPECT_EQ(FormatGoFloat(0.000012345), "1.2345e-05");
  EXPECT_EQ(FormatGoFloat(0.0001), "0.0001");
  EXPECT_EQ(FormatGoFloat(-2.5), "-2.5");
  EXPECT_EQ(FormatGoFloat(0.30000000000000004), "0.30000000000000004");
  EXPECT_EQ(FormatGoFloat(1.0 / 0.0), "+Inf");
}

}  // namespace
}  // namespace bulwark::observe::promql
