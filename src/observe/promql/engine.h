// The PromQL evaluator: instant queries over a tsdb::Store with the semantics of Prometheus
// 2.42 (the version Debian ships and whose `promtool` is the oracle in tests):
//  - an instant selector takes the newest sample in [t - lookback, t] (both ends included),
//    unless a staleness marker followed it; a range selector takes [t - range, t];
//  - rate/increase/delta extrapolate to the window's edges as Prometheus does, irate/idelta
//    use the last two samples, histogram_quantile interpolates linearly inside a bucket;
//  - float arithmetic happens in the same order as in Prometheus (running means, plain sums),
//    so results match promtool bit for bit;
//  - subqueries are evaluated at steps aligned to multiples of the step, as Prometheus aligns
//    them.
// Errors are those Prometheus reports at evaluation time ("vector cannot contain metrics with
// the same labelset", many-to-many matching, ...).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "observe/promql/ast.h"
#include "observe/tsdb/store.h"

namespace re2 {
class RE2;
class StringPiece;
}  // namespace re2

namespace bulwark::observe::promql {

struct Sample {
  const Labels* labels;
  double v;
  int64_t t;  // the sample's own time for a plain selector, else the evaluation time
};
using Vector = std::vector<Sample>;

struct EvalOptions {
  int64_t lookback_ms = 5 * 60 * 1000;
  // The step of a subquery written without one (`x[10m:]`): Prometheus uses the global
  // evaluation interval; promtool uses one minute.
  int64_t default_subquery_step_ms = 60 * 1000;
  // Samples after this time are not visible (promtool's unit tests load input up to the
  // evaluation time).
  int64_t max_visible_ms = std::numeric_limits<int64_t>::max();
  // Points a single query may hold at once (Prometheus's --query.max-samples).
  size_t max_samples = 50000000;
  // Steps all subqueries of one query may evaluate: `x[1y:1ms]` is refused, not run for
  // hours (Prometheus only stops it at its query timeout).
  size_t max_subquery_steps = 1000000;
  // A deadline on core/clock.h's MonotonicNs() (0: none).
  // Checked as samples are loaded; past it the query fails with DeadlineExceeded.
  int64_t deadline_ns = 0;
  // Set by another thread to stop the query (shutdown); checked with the deadline.
  const std::atomic<bool>* cancel = nullptr;
};

// Prometheus's messages for a query stopped by a limit (the API answers 422 and 503 with them):
// Evaluate returns ResourceExhausted with the first, DeadlineExceeded with the second.
inline constexpr char kTooManySamples[] =
    "query processing would load too many samples into memory in query execution";
inline constexpr char kQueryTimeout[] = "query timed out in query execution";

// The value of one query. Label sets made by the query (results of operators and functions)
// are owned here; the others point into the store and stay valid until its next Trim().
struct QueryResult {
  ValueType type = ValueType::kNone;
  double scalar = 0;
  std::string str;
  Vector vector;
  struct Series {
    const Labels* labels;
    std::vector<tsdb::Point> points;
  };
  std::vector<Series> matrix;
  std::unique_ptr<std::deque<Labels>> arena = std::make_unique<std::deque<Labels>>();
};

// Evaluates `expr` at `t_ms`.
absl::Status Evaluate(const Expr& expr, int64_t t_ms, const tsdb::Store& store,
                      const EvalOptions& options, QueryResult* out);

// Go's regexp.Expand: `tmpl` with $1, ${1}, $name, ${name} replaced by the match's groups
// ($$ is a dollar). label_replace() and the templates' reReplaceAll use it.
std::string ExpandGoTemplate(const re2::RE2& re, std::string_view tmpl,
                             const std::vector<re2::StringPiece>& groups);

// Prometheus's rendering of a label set: {__name__="up", job="x"}.
std::string LabelsString(const Labels& labels);
// Go's %v for a float64 (shortest digits; exponent form below 1e-4 and from 1e6 on): "0.05",
// "123456", "1.234567e+06".
std::string FormatGoFloat(double v);

}  // namespace bulwark::observe::promql
