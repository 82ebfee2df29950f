// The PromQL evaluator's insides, shared by its files: engine.cc (selectors, subqueries,
// operators), function_calls.cc (the functions, as a table) and aggregate.cc (aggregations).
// Not for use outside them.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "core/clock.h"
#include "core/strings.h"
#include "observe/promql/engine.h"

namespace bulwark::observe::promql::internal {

inline constexpr std::string_view kMetricName = "__name__";

// Evaluation stops by throwing this; Evaluate() turns it into a Status. It never crosses the
// module boundary (the same pattern as the parser).
struct EvalError {
  std::string message;
  absl::StatusCode code = absl::StatusCode::kInvalidArgument;
};

[[noreturn]] inline void Fail(std::string message) { throw EvalError{std::move(message)}; }
[[noreturn]] inline void FailWith(absl::StatusCode code, std::string message) {
  throw EvalError{std::move(message), code};
}

using Point = tsdb::Point;

// A value while evaluating. Matrices are windows: into the store for range selectors, into
// `owned` for subqueries.
struct Value {
  ValueType type = ValueType::kNone;
  double scalar = 0;
  std::string str;
  Vector vector;
  struct Window {
    const Labels* labels;
    const Point* begin;
    const Point* end;
  };
  std::vector<Window> windows;
  std::vector<std::vector<Point>> owned;
  int64_t range_start = 0, range_end = 0, range_ms = 0;  // of a matrix: [start, end]
};

inline bool Contains(const std::vector<std::string>& names, std::string_view n) {
  for (const std::string& s : names) {
    if (s == n) return true;
  }
  return false;
}

inline uint64_t Mix(uint64_t h, std::string_view s) { return absl::HashOf(h, s); }

inline uint64_t HashAll(const Labels& l) {
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (const auto& [n, v] : l) h = Mix(Mix(h, n), v);
  return h;
}

// Prometheus's match signatures: on(...) hashes only the listed labels; ignoring(...) hashes
// all but the listed ones and the metric name (aggregations' by/without alike).
inline uint64_t Signature(const Labels& l, bool on, const std::vector<std::string>& names) {
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (const auto& [n, v] : l) {
    bool listed = Contains(names, n);
    if (on ? !listed : (listed || n == kMetricName)) continue;
    h = Mix(Mix(h, n), v);
  }
  return h;
}

// Removing a label is setting it empty (Prometheus's labels.Builder.Del).
inline void Del(Labels* l, std::string_view name) { SetLabel(l, name, ""); }

// Prometheus's quantile(): values sorted (NaN first), linear interpolation between ranks.
double Quantile(double q, std::vector<double> values);

// The expression inside any parentheses.
const Expr& Unparen(const Expr& e);

class Evaluator {
 public:
  Evaluator(const tsdb::Store& store, const EvalOptions& options, int64_t query_t,
            std::deque<Labels>* arena)
      : store_(store), options_(options), query_t_(query_t), arena_(arena) {}

  Value Eval(const Expr& e, int64_t t);

  // Helpers the function and aggregation files use too.
  const Labels* Own(Labels&& l) {
    arena_->push_back(std::move(l));
    return &arena_->back();
  }
  const Labels* DropName(const Labels* l) {
    if (l->empty() || GetLabel(*l, kMetricName) == nullptr) return l;
    auto [it, inserted] = dropped_.try_emplace(l, nullptr);
    if (inserted) {
      Labels copy = *l;
      Del(&copy, kMetricName);
      it->second = Own(std::move(copy));
    }
    return it->second;
  }
  void CheckSamples(size_t more) {
    samples_ += more;
    if (samples_ > options_.max_samples)
      FailWith(absl::StatusCode::kResourceExhausted, kTooManySamples);
    // The clock is read every 64 loads: cheap next to the work, often enough to stop in time.
    if ((++checks_ & 63) != 0) return;
    if (options_.deadline_ns != 0 &&
        MonotonicNs() > options_.deadline_ns) {
      FailWith(absl::StatusCode::kDeadlineExceeded, kQueryTimeout);
    }
    if (options_.cancel != nullptr && options_.cancel->load(std::memory_order_relaxed)) {
      FailWith(absl::StatusCode::kCancelled, "query was canceled");
    }
  }
  static void CheckUnique(const Vector& v) {
    if (v.size() < 2) return;
    absl::flat_hash_set<uint64_t> seen;
    seen.reserve(v.size());
    for (const Sample& s : v) {
      if (!seen.insert(HashAll(*s.labels)).second) {
        Fail("vector cannot contain metrics with the same labelset");
      }
    }
  }
  int64_t AtTime(const Expr& e, int64_t t) const {
    switch (e.at) {
      case Expr::At::kNone:
        return t;
      case Expr::At::kTime:
        return e.at_ms;
      case Expr::At::kStart:
      case Expr::At::kEnd:
        return query_t_;  // an instant query starts and ends at its time
    }
    return t;
  }
  const std::vector<const tsdb::Series*>& SeriesFor(const Expr& sel) {
    auto [it, inserted] = selected_.try_emplace(&sel);
    if (inserted) store_.Select(sel.matchers, &it->second);
    return it->second;
  }

 private:
  Value Selector(const Expr& e, int64_t t);
  Value MatrixOf(const Expr& e, int64_t t);
  Value Subquery(const Expr& e, int64_t t);
  Value Call(const Expr& e, int64_t t);
  Value Aggregate(const Expr& e, int64_t t);
  Value Binary(const Expr& e, int64_t t);
  Vector VectorBinop(const Expr& e, const Vector& lhs, const Vector& rhs);
  Vector SetOp(const Expr& e, const Vector& lhs, const Vector& rhs);
  Value MatrixCall(const Expr& e, int64_t t, size_t matrix_arg);

  const tsdb::Store& store_;
  const EvalOptions& options_;
  int64_t query_t_;
  std::deque<Labels>* arena_;
  size_t samples_ = 0;
  uint64_t steps_ = 0;
  uint64_t checks_ = 0;
  absl::flat_hash_map<const Labels*, const Labels*> dropped_;
  absl::flat_hash_map<const Expr*, std::vector<const tsdb::Series*>> selected_;
};

}  // namespace bulwark::observe::promql::internal
