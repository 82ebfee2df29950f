#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "observe/promql/functions.h"
#include "observe/promql/parser.h"
#include "observe/model/duration.h"

namespace bulwark::observe::promql {
namespace {

std::unique_ptr<Expr> MustParse(const std::string& q) {
  auto e = Parse(q);
  EXPECT_TRUE(e.ok()) << q << ": " << e.status();
  return e.ok() ? std::move(*e) : nullptr;
}

std::string Error(const std::string& q) {
  auto e = Parse(q);
  EXPECT_FALSE(e.ok()) << q << " parsed as " << (e.ok() ? (*e)->String() : "");
  return e.ok() ? "" : std::string(e.status().message());
}

TEST(PromqlParser, EveryDesignDocumentRuleExpressionParses) {
  for (const char* q : {
           "(\n  rate(http_requests_total{status_code=~\"5..\"}[5m])\n  /\n"
           "  rate(http_requests_total[5m])\n) > 0.05",
           "histogram_quantile(0.95,\n  rate(http_request_duration_seconds_bucket[5m])\n) > 1",
           "cpu_usage_percent > 80",
           "memory_usage_bytes / (1024 * 1024 * 1024) > 8",
           "db_connections{state=\"active\"} > 100",
           "up == 0",
           "http_request_duration_seconds{quantile=\"0.99\"} > 1",
           "sum(device_status{status=\"running\"}) / sum(device_status) < 0.8",
           "rate(redis_keyspace_hits_total[5m]) / (rate(redis_keyspace_hits_total[5m]) + "
           "rate(redis_keyspace_misses_total[5m])) < 0.8",
           "increase(redis_evicted_keys_total[5m]) > 0",
       }) {
    auto e = MustParse(q);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->type(), ValueType::kVector) << q;
  }
}

TEST(PromqlParser, PrecedenceAndAssociativity) {
  // ^ is right-associative and binds tighter than unary minus; * before +; comparisons before
  // and; and before or.
  EXPECT_EQ(MustParse("2 ^ 3 ^ 2")->rhs->kind, Expr::Kind::kBinary);
  auto neg = MustParse("-a ^ 2");
  EXPECT_EQ(neg->kind, Expr::Kind::kUnary);
  EXPECT_EQ(neg->child->op, BinOp::kPow);
  auto mul = MustParse("-a * 2");
  EXPECT_EQ(mul->kind, Expr::Kind::kBinary);
  EXPECT_EQ(mul->op, BinOp::kMul);
  EXPECT_EQ(mul->lhs->kind, Expr::Kind::kUnary);
  auto sum = MustParse("a + b * c");
  EXPECT_EQ(sum->op, BinOp::kAdd);
  EXPECT_EQ(sum->rhs->op, BinOp::kMul);
  auto left = MustParse("a - b - c");
  EXPECT_EQ(left->lhs->op, BinOp::kSub);  // (a - b) - c
  auto set = MustParse("a > 1 and b or c unless d");
  EXPECT_EQ(set->op, BinOp::kOr);
  EXPECT_EQ(set->lhs->op, BinOp::kAnd);
  EXPECT_EQ(set->rhs->op, BinOp::kUnless);
  EXPECT_EQ(MustParse("a atan2 b + c")->op, BinOp::kAdd);
  // A negative literal is a number, not an operation.
  auto n = MustParse("-1.5");
  EXPECT_EQ(n->kind, Expr::Kind::kNumber);
  EXPECT_EQ(n->number, -1.5);
  EXPECT_EQ(MustParse("- - 2")->number, 2);
}

TEST(PromqlParser, NumbersDurationsAndStrings) {
  EXPECT_EQ(MustParse("0x1F")->number, 31);
  EXPECT_EQ(MustParse("1e3")->number, 1000);
  EXPECT_EQ(MustParse(".5")->number, 0.5);
  EXPECT_TRUE(std::isinf(MustParse("Inf")->number));
  EXPECT_TRUE(std::isnan(MustParse("nan")->number));
  EXPECT_EQ(MustParse("foo[1h30m]")->range_ms, 5400000);
  EXPECT_EQ(MustParse("foo[250ms]")->range_ms, 250);
  EXPECT_EQ(MustParse("foo[1y]")->range_ms, 365LL * 86400 * 1000);
  EXPECT_EQ(MustParse(R"("a\"b\n\x41\u00e9")")->str, "a\"b\nA\xc3\xa9");
  EXPECT_EQ(MustParse(R"('it\'s')")->str, "it's");
  EXPECT_EQ(MustParse("`raw\\n`")->str, "raw\\n");
  EXPECT_EQ(*ParseDurationMs("1d2h"), 93600000);
  EXPECT_FALSE(ParseDurationMs("2h1d").ok());  // units in decreasing order
  EXPECT_FALSE(ParseDurationMs("1h1h").ok());
  EXPECT_EQ(FormatDurationMs(5400000), "1h30m");
  EXPECT_EQ(FormatDurationMs(90500), "1m30s500ms");
}

TEST(PromqlParser, SelectorsMatchersAndModifiers) {
  auto e = MustParse(R"(http_requests_total{job="api", code!~"2..", path=~"/v1/.*",})");
  ASSERT_EQ(e->kind, Expr::Kind::kSelector);
  ASSERT_EQ(e->matchers.size(), 4u);
  EXPECT_EQ(e->matchers[0].name, "__name__");
  EXPECT_TRUE(e->matchers[2].Matches("500"));
  EXPECT_FALSE(e->matchers[2].Matches("200"));
  // Regexes are anchored at both ends.
  EXPECT_TRUE(e->matchers[3].Matches("/v1/users"));
  EXPECT_FALSE(e->matchers[3].Matches("/api/v1/users"));
  // Keywords are fine as label names inside braces.
  EXPECT_EQ(MustParse(R"({__name__="up", on="x", by="y"})")->matchers.size(), 3u);
  auto m = MustParse("rate(foo[5m] offset 1h @ 1700000000)");
  const Expr& sel = *m->args[0]->child;
  EXPECT_EQ(sel.offset_ms, 3600000);
  EXPECT_EQ(sel.at, Expr::At::kTime);
  EXPECT_EQ(sel.at_ms, 1700000000000);
  EXPECT_EQ(MustParse("foo offset -5m")->offset_ms, -300000);
  EXPECT_EQ(MustParse("foo @ end()")->at, Expr::At::kEnd);
  auto sq = MustParse("max_over_time(rate(foo[1m])[10m:30s] offset 1m)");
  const Expr& sub = *sq->args[0];
  EXPECT_EQ(sub.kind, Expr::Kind::kSubquery);
  EXPECT_EQ(sub.range_ms, 600000);
  EXPECT_EQ(sub.step_ms, 30000);
  EXPECT_EQ(sub.offset_ms, 60000);
  EXPECT_EQ(MustParse("foo[5m:]")->step_ms, 0);
}

TEST(PromqlParser, AggregationsAndVectorMatching) {
  auto a = MustParse("sum by (job, le) (rate(x[5m]))");
  EXPECT_EQ(a->agg, AggOp::kSum);
  EXPECT_EQ(a->grouping, (std::vector<std::string>{"job", "le"}));
  auto b = MustParse("sum(rate(x[5m])) without (instance)");
  EXPECT_TRUE(b->without);
  auto t = MustParse("topk(3, x)");
  EXPECT_EQ(t->param->number, 3);
  EXPECT_EQ(MustParse("count_values(\"v\", x)")->param->str, "v");
  auto g = MustParse("a * on(job) group_left(team) b");
  ASSERT_TRUE(g->matching.has_value());
  EXPECT_TRUE(g->matching->on);
  EXPECT_EQ(g->matching->card, VectorMatching::Card::kManyToOne);
  EXPECT_EQ(g->matching->include, std::vector<std::string>{"team"});
  auto s = MustParse("a and ignoring(x) b");
  EXPECT_EQ(s->matching->card, VectorMatching::Card::kManyToMany);
  EXPECT_TRUE(MustParse("a > bool 1")->return_bool);
  EXPECT_EQ(MustParse("1 > bool 2")->type(), ValueType::kScalar);
  EXPECT_EQ(MustParse("time() - 1")->type(), ValueType::kScalar);
  EXPECT_EQ(MustParse("label_join(x, \"d\", \",\", \"a\", \"b\", \"c\")")->args.size(), 6u);
  EXPECT_EQ(MustParse("round(x)")->args.size(), 1u);
  EXPECT_EQ(MustParse("hour()")->args.size(), 0u);
}

// Messages and positions as Prometheus 2.42 gives them (integration test PromqlOracle checks
// a larger set against promtool itself).
TEST(PromqlParser, ErrorsSayWhereAndWhat) {
  EXPECT_EQ(
      Error("foo{"),
      "1:5: parse error: unexpected end of input in label matching, expected identifier or \"}\"");
  EXPECT_EQ(Error("rate(foo)"),
            "1:6: parse error: expected type range vector in call to function \"rate\", got "
            "instant vector");
  EXPECT_EQ(Error("nope(foo)"), "1:1: parse error: unknown function with name \"nope\"");
  EXPECT_EQ(Error("1 > 2"), "1:3: parse error: comparisons between scalars must use BOOL modifier");
  EXPECT_EQ(Error("1 and foo"),
            "1:1: parse error: set operator \"and\" not allowed in binary scalar expression");
  EXPECT_EQ(Error("{}"),
            "1:1: parse error: vector selector must contain at least one non-empty matcher");
  EXPECT_EQ(Error("{a=~\".*\"}"),
            "1:1: parse error: vector selector must contain at least one non-empty matcher");
  EXPECT_EQ(Error("foo{__name__=\"bar\"}"),
            "1:1: parse error: metric name must not be set twice: \"foo\" or \"bar\"");
  EXPECT_EQ(Error("rate(foo[5m])[1m]"),
            "1:14: parse error: ranges only allowed for vector selectors");
  EXPECT_EQ(Error("foo offset 1m offset 2m"),
            "1:1: parse error: offset may not be set multiple times");
  EXPECT_EQ(Error("sum(x) offset 1m"),
            "1:1: parse error: offset modifier must be preceded by an instant vector selector or "
            "range vector selector or a subquery");
  EXPECT_EQ(Error("foo + bool bar"),
            "1:5: parse error: bool modifier can only be used on comparison operators");
  EXPECT_EQ(Error("a + on(x) group_left(x) b"),
            "1:3: parse error: label \"x\" must not occur in ON and GROUP clause at once");
  EXPECT_EQ(Error("a and on(x) group_left b"),
            "1:1: parse error: no grouping allowed for \"and\" operation");
  EXPECT_EQ(Error("1 + on(x) 2"),
            "1:1: parse error: vector matching only allowed between instant vectors");
  EXPECT_EQ(Error("foo{a=~\"(\"}"),
            "1:5: parse error: error parsing regexp: missing closing ): `^(?:()$`");
  EXPECT_EQ(Error("clamp(x, 1)"),
            "1:1: parse error: expected 3 argument(s) in call to \"clamp\", got 2");
  EXPECT_EQ(Error("round(x, 1, 2)"),
            "1:1: parse error: expected at most 2 argument(s) in call to \"round\", got 3");
  EXPECT_EQ(Error("topk(x)"),
            "1:1: parse error: wrong number of arguments for aggregate expression provided, "
            "expected 2, got 1");
  EXPECT_EQ(Error("sum(foo[5m])"),
            "1:5: parse error: expected type instant vector in aggregation expression, got range "
            "vector");
  EXPECT_EQ(Error("foo\n  bar"), "2:3: parse error: unexpected identifier \"bar\"");
  EXPECT_EQ(Error("\"unterminated"), "1:1: parse error: unterminated quoted string");
  EXPECT_EQ(Error("(foo"), "1:5: parse error: unclosed left parenthesis");
  EXPECT_EQ(Error("foo[0s]"), "1:5: parse error: duration must be greater than 0");
  EXPECT_EQ(Error("sum by (a) (foo) by (b)"), "1:18: parse error: unexpected <by>");
  EXPECT_EQ(Error(""), "1:1: parse error: no expression found in input");
  // Keywords Prometheus also takes as metric names.
  EXPECT_EQ(MustParse("sum")->kind, Expr::Kind::kSelector);
  EXPECT_EQ(MustParse("by")->name, "by");
  EXPECT_EQ(MustParse(":foo")->name, ":foo");
  EXPECT_EQ(Error("-foo[5m]"),
            "1:1: parse error: unary expression only allowed on expressions of type scalar or "
            "instant vector, got \"range vector\"");
  EXPECT_EQ(Error("foo[5m][5m:1m]"),
            "1:1: parse error: subquery is only allowed on instant vector, got matrix instead");
  EXPECT_NE(Error(std::string(200, '(') + "1" + std::string(200, ')')).find("nests more than"),
            std::string::npos);
}

TEST(PromqlParser, StringRoundTrips) {
  for (const char* q : {
           "sum by (job) (rate(http_requests_total{code=~\"5..\"}[5m] offset 1m))",
           "a * on(job) group_left(team) b",
           "a > bool 1",
           "-(a + b) ^ 2",
           "topk(3, x @ 100)",
           "max_over_time(rate(foo[1m])[10m:30s])",
           "histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m])))",
           "label_replace(up, \"foo\", \"$1\", \"job\", \"(.*)\")",
       }) {
    auto e = MustParse(q);
    ASSERT_NE(e, nullptr);
    std::string once = e->String();
    auto again = MustParse(once);
    ASSERT_NE(again, nullptr) << once;
    EXPECT_EQ(again->String(), once) << q;
  }
  EXPECT_EQ(MustParse("sum(rate(x[5m])) by (job)")->String(), "sum by (job) (rate(x[5m]))");
}

}  // namespace
}  // namespace bulwark::observe::promql
