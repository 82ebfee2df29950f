#include "pg/scatter.h"

#include <gtest/gtest.h>

namespace bulwark::pg {
namespace {

TEST(Scatter, PlansAggregatesAndWidensTheLimit) {
  auto p = PlanScatter("SELECT count(*), sum(amount), avg(amount) AS mean, min(x) FROM orders");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->columns, (std::vector<Aggregate>{Aggregate::kCount, Aggregate::kSum, Aggregate::kAvg,
                                                Aggregate::kMin}));
  EXPECT_TRUE(p->aggregates);
  EXPECT_EQ(p->sql,
            "SELECT count(*), sum(amount), concat(sum(amount), ',', count(amount), ',', "
            "pg_typeof(avg(amount))) AS mean, min(x) FROM orders");
  auto q = PlanScatter("SELECT id, name FROM t ORDER BY 2 DESC, id LIMIT 5 OFFSET 10");
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->sql, "SELECT id, name FROM t ORDER BY 2 DESC, id LIMIT 15 OFFSET 0");
  EXPECT_EQ(q->limit, 5);
  EXPECT_EQ(q->offset, 10);
  ASSERT_EQ(q->order_by.size(), 2u);
  EXPECT_EQ(q->order_by[0].column, 1);
  EXPECT_TRUE(q->order_by[0].desc);
  EXPECT_TRUE(q->order_by[0].nulls_first);  // PostgreSQL: NULLS FIRST is the DESC default
  EXPECT_EQ(q->order_by[1].column, 0);
  auto g = PlanScatter("SELECT region, count(*) AS n FROM t GROUP BY region ORDER BY n DESC");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->group_by, std::vector<int>{0});
  EXPECT_EQ(g->order_by[0].column, 1);
  EXPECT_EQ(PlanScatter("SELECT avg(x) FROM t")->sql,
            "SELECT concat(sum(x), ',', count(x), ',', pg_typeof(avg(x))) AS avg FROM t");
}

TEST(Scatter, RefusesWhatCannotBeMergedExactly) {
  for (const char* sql :
       {"SELECT DISTINCT a FROM t", "SELECT a, count(*) FROM t GROUP BY a HAVING count(*) > 1",
        "SELECT count(*) + 1 FROM t", "SELECT count(DISTINCT a) FROM t",
        "SELECT a FROM t ORDER BY lower(a)", "SELECT a FROM t UNION SELECT a FROM u",
        "UPDATE t SET a = 1", "SELECT a FROM t FOR UPDATE", "SELECT 1; SELECT 2",
        "SELECT sum(a) OVER () FROM t"}) {
    auto p = PlanScatter(sql);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kFailedPrecondition) << sql;
    EXPECT_NE(p.status().message().find("cannot scatter to every shard"), std::string::npos);
  }
  EXPECT_EQ(PlanScatter("SELEC").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Scatter, DecimalsAsPostgreSqlPrintsThem) {
  EXPECT_EQ(DecimalAdd("1.50", "-2.5"), "-1.00");
  EXPECT_EQ(DecimalAdd("99999999999999999999", "1"), "100000000000000000000");
  EXPECT_EQ(DecimalAdd("0.001", "-0.001"), "0.000");
  // numeric division scale (select_div_scale): 16 significant digits at least.
  EXPECT_EQ(NumericDivide("3", "2"), "1.5000000000000000");
  EXPECT_EQ(NumericDivide("60", "3"), "20.0000000000000000");
  EXPECT_EQ(NumericDivide("100000", "3"), "33333.333333333333");
  EXPECT_EQ(NumericDivide("-1", "3"), "-0.33333333333333333333");
  EXPECT_EQ(NumericDivide("2", "3"), "0.66666666666666666667");  // rounded half away from 0
  EXPECT_EQ(NumericDivide("10.50", "4"), "2.6250000000000000");
  EXPECT_LT(CompareValues(23, "9", "10"), 0);  // int4: numerically
  EXPECT_GT(CompareValues(25, "9", "10"), 0);  // text: bytewise
  EXPECT_LT(CompareValues(1700, "-2.5", "-2.25"), 0);
}

FieldDescription Field(std::string_view name, uint32_t type) {
  FieldDescription f;
  f.name = name;
  f.type_oid = type;
  return f;
}

TEST(Scatter, MergesShardsLikeOneDatabase) {
  auto plan = PlanScatter(
      "SELECT region, count(*), sum(amount), avg(amount), max(amount) FROM t GROUP BY region "
      "ORDER BY region LIMIT 2");
  ASSERT_TRUE(plan.ok()) << plan.status();
  ScatterMerger m(*plan);
  std::vector<FieldDescription> f = {Field("region", 25), Field("count", 20), Field("sum", 20),
                                     Field("avg", 25), Field("max", 23)};
  ASSERT_TRUE(
      m.Add(f, {{"b", "2", "30", "30,2,numeric", "20"}, {"a", "1", "5", "5,1,numeric", "5"}}).ok());
  ASSERT_TRUE(
      m.Add(f, {{"a", "2", "7", "7,2,numeric", "4"}, {"c", "1", "1", "1,1,numeric", "1"}}).ok());
  auto r = m.Finish();
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->rows.size(), 2u);
  EXPECT_EQ(r->rows[0], (Row{"a", "3", "12", "4.0000000000000000", "5"}));
  EXPECT_EQ(r->rows[1], (Row{"b", "2", "30", "15.0000000000000000", "20"}));
  EXPECT_EQ(r->types[3], 1700u);  // avg() is numeric again
}

}  // namespace
}  // namespace bulwark::pg
