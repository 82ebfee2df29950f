#include "observe/promql/engine.h"

#include <re2/re2.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "core/strings.h"
#include "observe/promql/functions.h"

namespace bulwark::observe::promql {
namespace {

constexpr std::string_view kMetricName = "__name__";

// Evaluation stops by throwing this; Evaluate() turns it into a Status. It never crosses the
// module boundary (the same pattern as the parser).
struct EvalError {
  std::string message;
  absl::StatusCode code = absl::StatusCode::kInvalidArgument;
};

[[noreturn]] void Fail(std::string message) { throw EvalError{std::move(message)}; }
[[noreturn]] void FailWith(absl::StatusCode code, std::string message) {
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

bool Contains(const std::vector<std::string>& names, std::string_view n) {
  for (const std::string& s : names) {
    if (s == n) return true;
  }
  return false;
}

uint64_t Mix(uint64_t h, std::string_view s) { return absl::HashOf(h, s); }

uint64_t HashAll(const Labels& l) {
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (const auto& [n, v] : l) h = Mix(Mix(h, n), v);
  return h;
}

// Prometheus's match signatures: on(...) hashes only the listed labels; ignoring(...) hashes
// all but the listed ones and the metric name (aggregations' by/without alike).
uint64_t Signature(const Labels& l, bool on, const std::vector<std::string>& names) {
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (const auto& [n, v] : l) {
    bool listed = Contains(names, n);
    if (on ? !listed : (listed || n == kMetricName)) continue;
    h = Mix(Mix(h, n), v);
  }
  return h;
}

// Removing a label is setting it empty (Prometheus's labels.Builder.Del).
void Del(Labels* l, std::string_view name) { SetLabel(l, name, ""); }

// Go's container/heap over samples, so topk/bottomk keep the same elements Prometheus keeps
// when values tie.
template <typename Less>
struct GoHeap {
  std::vector<Sample> h;
  Less less;
  void Up(size_t j) {
    while (j > 0) {
      size_t i = (j - 1) / 2;
      if (!less(h[j], h[i])) break;
      std::swap(h[i], h[j]);
      j = i;
    }
  }
  bool Down(size_t i0, size_t n) {
    size_t i = i0;
    for (;;) {
      size_t j1 = 2 * i + 1;
      if (j1 >= n) break;
      size_t j = j1;
      if (size_t j2 = j1 + 1; j2 < n && less(h[j2], h[j1])) j = j2;
      if (!less(h[j], h[i])) break;
      std::swap(h[i], h[j]);
      i = j;
    }
    return i > i0;
  }
  void Push(const Sample& s) {
    h.push_back(s);
    Up(h.size() - 1);
  }
  void Fix0() {
    if (!Down(0, h.size())) Up(0);
  }
};
struct ByValue {  // NaN sorts first, as Prometheus's vectorByValueHeap
  bool operator()(const Sample& a, const Sample& b) const {
    if (std::isnan(a.v) && !std::isnan(b.v)) return true;
    return a.v < b.v;
  }
};
struct ByValueReverse {
  bool operator()(const Sample& a, const Sample& b) const {
    if (std::isnan(a.v) && !std::isnan(b.v)) return true;
    return a.v > b.v;
  }
};

// Prometheus's quantile(): values sorted (NaN first), linear interpolation between ranks.
double Quantile(double q, std::vector<double> values) {
  if (values.empty()) return NAN;
  if (q < 0) return -INFINITY;
  if (q > 1) return INFINITY;
  std::sort(values.begin(), values.end(), [](double a, double b) {
    if (std::isnan(a) && !std::isnan(b)) return true;
    return a < b;
  });
  double n = static_cast<double>(values.size());
  double rank = q * (n - 1);
  double lower = std::max(0.0, std::floor(rank));
  double upper = std::min(n - 1, lower + 1);
  double weight = rank - std::floor(rank);
  return values[static_cast<size_t>(lower)] * (1 - weight) +
         values[static_cast<size_t>(upper)] * weight;
}

struct Bucket {
  double upper;
  double count;
};

// Prometheus's bucketQuantile (classic histograms).
double BucketQuantile(double q, std::vector<Bucket> buckets) {
  if (std::isnan(q)) return NAN;
  if (q < 0) return -INFINITY;
  if (q > 1) return INFINITY;
  std::stable_sort(buckets.begin(), buckets.end(),
                   [](const Bucket& a, const Bucket& b) { return a.upper < b.upper; });
  if (!std::isinf(buckets.back().upper) || buckets.back().upper < 0) return NAN;
  // Coalesce buckets with the same bound (series that differ only by a dropped label).
  size_t w = 0;
  Bucket last = buckets[0];
  for (size_t i = 1; i < buckets.size(); ++i) {
    if (buckets[i].upper == last.upper) {
      last.count += buckets[i].count;
    } else {
      buckets[w++] = last;
      last = buckets[i];
    }
  }
  buckets[w++] = last;
  buckets.resize(w);
  // Counts must not decrease (a scrape racing the histogram's updates).
  double max = -INFINITY;
  for (Bucket& b : buckets) {
    if (b.count > max) {
      max = b.count;
    } else if (b.count < max) {
      b.count = max;
    }
  }
  if (buckets.size() < 2) return NAN;
  double observations = buckets.back().count;
  if (observations == 0) return NAN;
  double rank = q * observations;
  size_t b = 0;
  {
    // sort.Search over all but the +Inf bucket.
    size_t lo = 0, hi = buckets.size() - 1;
    while (lo < hi) {
      size_t mid = lo + (hi - lo) / 2;
      if (!(buckets[mid].count >= rank)) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    b = lo;
  }
  if (b == buckets.size() - 1) return buckets[buckets.size() - 2].upper;
  if (b == 0 && buckets[0].upper <= 0) return buckets[0].upper;
  double start = 0;
  double end = buckets[b].upper;
  double count = buckets[b].count;
  if (b > 0) {
    start = buckets[b - 1].upper;
    count -= buckets[b - 1].count;
    rank -= buckets[b - 1].count;
  }
  return start + (end - start) * (rank / count);
}

class Evaluator {
 public:
  Evaluator(const tsdb::Store& store, const EvalOptions& options, int64_t query_t,
            std::deque<Labels>* arena)
      : store_(store), options_(options), query_t_(query_t), arena_(arena) {}

  Value Eval(const Expr& e, int64_t t);

 private:
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
    if (samples_ > options_.max_samples) FailWith(absl::StatusCode::kResourceExhausted, kTooManySamples);
    // The clock is read every 64 loads: cheap next to the work, often enough to stop in time.
    if ((++checks_ & 63) != 0) return;
    if (options_.deadline_ns != 0 &&
        std::chrono::steady_clock::now().time_since_epoch().count() > options_.deadline_ns) {
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

const Expr& Unparen(const Expr& e) {
  const Expr* p = &e;
  while (p->kind == Expr::Kind::kParen) p = p->child.get();
  return *p;
}

Value Evaluator::Eval(const Expr& e, int64_t t) {
  switch (e.kind) {
    case Expr::Kind::kNumber: {
      Value v;
      v.type = ValueType::kScalar;
      v.scalar = e.number;
      return v;
    }
    case Expr::Kind::kString: {
      Value v;
      v.type = ValueType::kString;
      v.str = e.str;
      return v;
    }
    case Expr::Kind::kParen:
      return Eval(*e.child, t);
    case Expr::Kind::kUnary: {
      Value v = Eval(*e.child, t);
      if (v.type == ValueType::kScalar) {
        v.scalar = -v.scalar;
        return v;
      }
      for (Sample& s : v.vector) {
        s.v = -s.v;
        s.labels = DropName(s.labels);
      }
      CheckUnique(v.vector);
      return v;
    }
    case Expr::Kind::kSelector:
      return Selector(e, t);
    case Expr::Kind::kMatrix:
      return MatrixOf(e, t);
    case Expr::Kind::kSubquery:
      return Subquery(e, t);
    case Expr::Kind::kCall:
      return Call(e, t);
    case Expr::Kind::kAggregate:
      return Aggregate(e, t);
    case Expr::Kind::kBinary:
      return Binary(e, t);
  }
  Fail("unknown expression");
}

Value Evaluator::Selector(const Expr& e, int64_t t) {
  Value v;
  v.type = ValueType::kVector;
  int64_t ref = AtTime(e, t) - e.offset_ms;
  int64_t newest = std::min(ref, options_.max_visible_ms);
  const auto& series = SeriesFor(e);
  v.vector.reserve(series.size());
  for (const tsdb::Series* s : series) {
    Point p;
    if (s->ValueAt(ref - options_.lookback_ms, newest, &p)) {
      v.vector.push_back({&s->labels, p.v, p.t});
    }
  }
  CheckSamples(v.vector.size());
  return v;
}

Value Evaluator::MatrixOf(const Expr& e, int64_t t) {
  const Expr& sel = *e.child;
  Value v;
  v.type = ValueType::kMatrix;
  int64_t ref = AtTime(sel, t) - sel.offset_ms;
  v.range_end = ref;
  v.range_start = ref - e.range_ms;
  v.range_ms = e.range_ms;
  int64_t newest = std::min(ref, options_.max_visible_ms);
  for (const tsdb::Series* s : SeriesFor(sel)) {
    auto [b, end] = s->Range(v.range_start, newest);
    if (b == end) continue;
    CheckSamples(static_cast<size_t>(end - b));
    v.windows.push_back({&s->labels, b, end});
  }
  return v;
}

Value Evaluator::Subquery(const Expr& e, int64_t t) {
  int64_t step = e.step_ms > 0 ? e.step_ms : options_.default_subquery_step_ms;
  int64_t base = AtTime(e, t) - e.offset_ms;
  int64_t lower = base - e.range_ms;
  // The first step at or after the window's start that is a multiple of the step.
  int64_t start = step * (lower / step);
  if (start < lower) start += step;
  Value v;
  v.type = ValueType::kMatrix;
  v.range_end = base;
  v.range_start = lower;
  v.range_ms = e.range_ms;
  // Series keyed by their labels' content (the inner expression may build new label sets at
  // every step).
  absl::flat_hash_map<uint64_t, size_t> index;
  std::vector<const Labels*> labels;
  if (base >= start) {
    uint64_t steps = static_cast<uint64_t>((base - start) / step) + 1;
    steps_ += steps;
    if (steps_ > options_.max_subquery_steps) {
      Fail(StrCat("subqueries would evaluate ", steps_, " steps, more than the limit of ",
                  options_.max_subquery_steps));
    }
  }
  for (int64_t ts = start; ts <= base; ts += step) {
    Value inner = Eval(*e.child, ts);
    for (const Sample& s : inner.vector) {
      uint64_t h = HashAll(*s.labels);
      auto [it, inserted] = index.try_emplace(h, labels.size());
      if (inserted) {
        labels.push_back(s.labels);
        v.owned.emplace_back();
      }
      v.owned[it->second].push_back({ts, s.v});
    }
    CheckSamples(inner.vector.size());
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    const std::vector<Point>& pts = v.owned[i];
    v.windows.push_back({labels[i], pts.data(), pts.data() + pts.size()});
  }
  // Windows ordered by labels, like selected series.
  std::sort(v.windows.begin(), v.windows.end(),
            [](const Value::Window& a, const Value::Window& b) { return *a.labels < *b.labels; });
  return v;
}

// Kahan-Babuska (Neumaier) compensated addition, as Prometheus 2.42 sums in the _over_time
// functions (aggregations over series use plain sums).
void KahanInc(double inc, double* sum, double* c) {
  double t = *sum + inc;
  if (std::fabs(*sum) >= std::fabs(inc)) {
    *c += (*sum - t) + inc;
  } else {
    *c += (inc - t) + *sum;
  }
  *sum = t;
}

// rate/increase/delta: Prometheus's extrapolatedRate.
bool ExtrapolatedRate(const Value& m, const Value::Window& w, bool counter, bool rate,
                      double* out) {
  size_t n = static_cast<size_t>(w.end - w.begin);
  if (n < 2) return false;
  const Point& first = w.begin[0];
  const Point& last = w.end[-1];
  double result = last.v - first.v;
  if (counter) {
    double prev = first.v;
    for (const Point* p = w.begin + 1; p != w.end; ++p) {
      if (p->v < prev) result += prev;
      prev = p->v;
    }
  }
  double to_start = static_cast<double>(first.t - m.range_start) / 1000;
  double to_end = static_cast<double>(m.range_end - last.t) / 1000;
  double sampled = static_cast<double>(last.t - first.t) / 1000;
  double average = sampled / static_cast<double>(n - 1);
  if (counter && result > 0 && first.v >= 0) {
    // A counter starts at zero: do not extrapolate below it.
    double to_zero = sampled * (first.v / result);
    if (to_zero < to_start) to_start = to_zero;
  }
  double threshold = average * 1.1;
  double interval = sampled;
  interval += to_start < threshold ? to_start : average / 2;
  interval += to_end < threshold ? to_end : average / 2;
  double factor = interval / sampled;
  if (rate) factor /= static_cast<double>(m.range_ms) / 1000;
  *out = result * factor;
  return true;
}

bool InstantValue(const Value::Window& w, bool rate, double* out) {
  size_t n = static_cast<size_t>(w.end - w.begin);
  if (n < 2) return false;
  const Point& last = w.end[-1];
  const Point& prev = w.end[-2];
  double result = rate && last.v < prev.v ? last.v : last.v - prev.v;
  int64_t interval = last.t - prev.t;
  if (interval == 0) return false;
  if (rate) result /= static_cast<double>(interval) / 1000;
  *out = result;
  return true;
}

// Prometheus's linearRegression (least squares, x in seconds from `intercept_t`).
void LinearRegression(const Value::Window& w, int64_t intercept_t, double* slope,
                      double* intercept) {
  double n = 0, sum_x = 0, sum_y = 0, sum_xy = 0, sum_x2 = 0;
  double init_y = w.begin[0].v;
  bool const_y = true;
  for (const Point* p = w.begin; p != w.end; ++p) {
    if (const_y && p != w.begin && p->v != init_y) const_y = false;
    n += 1.0;
    double x = static_cast<double>(p->t - intercept_t) / 1e3;
    sum_x += x;
    sum_y += p->v;
    sum_xy += x * p->v;
    sum_x2 += x * x;
  }
  if (const_y) {
    if (std::isinf(init_y)) {
      *slope = NAN;
      *intercept = NAN;
    } else {
      *slope = 0;
      *intercept = init_y;
    }
    return;
  }
  double cov_xy = sum_xy - sum_x * sum_y / n;
  double var_x = sum_x2 - sum_x * sum_x / n;
  *slope = cov_xy / var_x;
  *intercept = sum_y / n - *slope * sum_x / n;
}

// Labels for absent()/absent_over_time(): the selector's equality matchers, except the name
// and any label matched twice.
Labels AbsentLabels(const Expr& arg) {
  const Expr& a = Unparen(arg);
  const Expr* sel = nullptr;
  if (a.kind == Expr::Kind::kSelector) sel = &a;
  if (a.kind == Expr::Kind::kMatrix) sel = a.child.get();
  Labels out;
  if (sel == nullptr) return out;
  std::vector<std::string> seen;
  for (const Matcher& m : sel->matchers) {
    if (m.name == kMetricName) continue;
    if (m.op == Matcher::Op::kEqual && !Contains(seen, m.name)) {
      SetLabel(&out, m.name, m.value);
      seen.push_back(m.name);
    } else {
      Del(&out, m.name);
    }
  }
  return out;
}

Value Evaluator::MatrixCall(const Expr& e, int64_t t, size_t matrix_arg) {
  std::string_view name = e.func->name;
  std::vector<Value> args(e.args.size());
  for (size_t i = 0; i < e.args.size(); ++i) args[i] = Eval(*e.args[i], t);
  const Value& m = args[matrix_arg];
  Value out;
  out.type = ValueType::kVector;
  if (name == "absent_over_time") {
    if (m.windows.empty()) out.vector.push_back({Own(AbsentLabels(*e.args[0])), 1, t});
    return out;
  }
  bool keep_name = name == "last_over_time";
  double param = 0, param2 = 0;
  if (name == "quantile_over_time") param = args[0].scalar;
  if (name == "predict_linear") param = args[1].scalar;
  if (name == "holt_winters") {
    param = args[1].scalar;
    param2 = args[2].scalar;
    if (param <= 0 || param >= 1) {
      char buf[96];
      std::snprintf(buf, sizeof(buf), "invalid smoothing factor. Expected: 0 < sf < 1, got: %f",
                    param);
      Fail(buf);
    }
    if (param2 <= 0 || param2 >= 1) {
      char buf[96];
      std::snprintf(buf, sizeof(buf), "invalid trend factor. Expected: 0 < tf < 1, got: %f",
                    param2);
      Fail(buf);
    }
  }
  for (const Value::Window& w : m.windows) {
    size_t n = static_cast<size_t>(w.end - w.begin);
    double r = 0;
    bool ok = true;
    if (name == "rate") {
      ok = ExtrapolatedRate(m, w, true, true, &r);
    } else if (name == "increase") {
      ok = ExtrapolatedRate(m, w, true, false, &r);
    } else if (name == "delta") {
      ok = ExtrapolatedRate(m, w, false, false, &r);
    } else if (name == "irate") {
      ok = InstantValue(w, true, &r);
    } else if (name == "idelta") {
      ok = InstantValue(w, false, &r);
    } else if (name == "avg_over_time") {
      double mean = 0, count = 0, c = 0;
      for (const Point* p = w.begin; p != w.end; ++p) {
        count++;
        if (std::isinf(mean)) {
          if (std::isinf(p->v) && (mean > 0) == (p->v > 0)) continue;
          if (!std::isinf(p->v) && !std::isnan(p->v)) continue;
        }
        KahanInc(p->v / count - mean / count, &mean, &c);
      }
      r = std::isinf(mean) ? mean : mean + c;
    } else if (name == "sum_over_time") {
      double c = 0;
      for (const Point* p = w.begin; p != w.end; ++p) KahanInc(p->v, &r, &c);
      if (!std::isinf(r)) r += c;
    } else if (name == "count_over_time") {
      r = static_cast<double>(n);
    } else if (name == "min_over_time" || name == "max_over_time") {
      bool is_min = name == "min_over_time";
      r = w.begin[0].v;
      for (const Point* p = w.begin; p != w.end; ++p) {
        if ((is_min ? p->v < r : p->v > r) || std::isnan(r)) r = p->v;
      }
    } else if (name == "last_over_time") {
      r = w.end[-1].v;
    } else if (name == "present_over_time") {
      r = 1;
    } else if (name == "quantile_over_time") {
      std::vector<double> values;
      values.reserve(n);
      for (const Point* p = w.begin; p != w.end; ++p) values.push_back(p->v);
      r = Quantile(param, std::move(values));
    } else if (name == "stddev_over_time" || name == "stdvar_over_time") {
      double count = 0, mean = 0, c_mean = 0, aux = 0, c_aux = 0;
      for (const Point* p = w.begin; p != w.end; ++p) {
        count++;
        double delta = p->v - (mean + c_mean);
        KahanInc(delta / count, &mean, &c_mean);
        KahanInc(delta * (p->v - (mean + c_mean)), &aux, &c_aux);
      }
      r = (aux + c_aux) / count;
      if (name == "stddev_over_time") r = std::sqrt(r);
    } else if (name == "changes" || name == "resets") {
      bool changes = name == "changes";
      double prev = w.begin[0].v;
      for (const Point* p = w.begin + 1; p != w.end; ++p) {
        double cur = p->v;
        if (changes ? (cur != prev && !(std::isnan(cur) && std::isnan(prev))) : cur < prev) r++;
        prev = cur;
      }
    } else if (name == "deriv") {
      if (n < 2) {
        ok = false;
      } else {
        double slope, intercept;
        LinearRegression(w, w.begin[0].t, &slope, &intercept);
        r = slope;
      }
    } else if (name == "predict_linear") {
      if (n < 2) {
        ok = false;
      } else {
        double slope, intercept;
        LinearRegression(w, t, &slope, &intercept);
        r = slope * param + intercept;
      }
    } else if (name == "holt_winters") {
      if (n < 2) {
        ok = false;
      } else {
        double s0 = 0, s1 = w.begin[0].v, b = w.begin[1].v - w.begin[0].v;
        for (size_t i = 1; i < n; ++i) {
          double x = param * w.begin[i].v;
          if (i - 1 != 0) b = param2 * (s1 - s0) + (1 - param2) * b;
          double y = (1 - param) * (s1 + b);
          s0 = s1;
          s1 = x + y;
        }
        r = s1;
      }
    } else {
      Fail(StrCat("function ", name, " is not supported"));
    }
    if (!ok) continue;
    out.vector.push_back({keep_name ? w.labels : DropName(w.labels), r, t});
  }
  CheckUnique(out.vector);
  return out;
}

struct Civil {
  int year, month, day, hour, minute, yday, wday;
};
Civil ToCivil(double seconds) {
  time_t s = static_cast<time_t>(static_cast<int64_t>(seconds));
  struct tm tm;
  gmtime_r(&s, &tm);
  return {tm.tm_year + 1900, tm.tm_mon + 1,  tm.tm_mday, tm.tm_hour,
          tm.tm_min,         tm.tm_yday + 1, tm.tm_wday};
}
int DaysInMonth(int year, int month) {
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && leap ? 29 : kDays[month - 1];
}

Value Evaluator::Call(const Expr& e, int64_t t) {
  std::string_view name = e.func->name;
  for (size_t i = 0; i < e.args.size(); ++i) {
    const Expr& a = Unparen(*e.args[i]);
    if (a.kind == Expr::Kind::kMatrix || a.kind == Expr::Kind::kSubquery) {
      return MatrixCall(e, t, i);
    }
  }
  Value out;
  out.type = e.func->return_type;
  if (name == "time") {
    out.scalar = static_cast<double>(t) / 1000;
    return out;
  }
  if (name == "pi") {
    out.scalar = M_PI;
    return out;
  }
  if (name == "timestamp") {
    // Of a plain selector, the samples' own times; of anything else, the evaluation time.
    const Expr& a = Unparen(*e.args[0]);
    Value v = Eval(a, t);
    for (Sample& s : v.vector) {
      out.vector.push_back({DropName(s.labels),
                            static_cast<double>(a.kind == Expr::Kind::kSelector ? s.t : t) / 1000,
                            t});
    }
    CheckUnique(out.vector);
    return out;
  }
  std::vector<Value> args(e.args.size());
  for (size_t i = 0; i < e.args.size(); ++i) args[i] = Eval(*e.args[i], t);
  if (name == "scalar") {
    out.scalar = args[0].vector.size() == 1 ? args[0].vector[0].v : NAN;
    return out;
  }
  if (name == "vector") {
    out.vector.push_back({Own({}), args[0].scalar, t});
    return out;
  }
  if (name == "absent") {
    if (args[0].vector.empty()) out.vector.push_back({Own(AbsentLabels(*e.args[0])), 1, t});
    return out;
  }
  if (name == "sort" || name == "sort_desc") {
    out.vector = std::move(args[0].vector);
    bool desc = name == "sort_desc";
    std::stable_sort(out.vector.begin(), out.vector.end(),
                     [desc](const Sample& a, const Sample& b) {
                       if (std::isnan(a.v) != std::isnan(b.v))
                         return desc ? std::isnan(a.v) == false : std::isnan(a.v);
                       return desc ? a.v > b.v : a.v < b.v;
                     });
    return out;
  }
  if (name == "histogram_quantile") {
    double q = args[0].scalar;
    // Groups: all labels but `le` (the name included); results: without `le` and the name.
    absl::flat_hash_map<uint64_t, size_t> groups;
    std::vector<std::pair<const Labels*, std::vector<Bucket>>> buckets;
    for (const Sample& s : args[0 + 1].vector) {
      const std::string* bound = GetLabel(*s.labels, "le");
      double upper;
      if (bound == nullptr || !ParseGoFloat(*bound, &upper)) continue;
      uint64_t h = 0x51ed27ull;
      for (const auto& [n, v] : *s.labels) {
        if (n != "le") h = Mix(Mix(h, n), v);
      }
      auto [it, inserted] = groups.try_emplace(h, buckets.size());
      if (inserted) {
        Labels l = *s.labels;
        Del(&l, "le");
        Del(&l, kMetricName);
        buckets.push_back({Own(std::move(l)), {}});
      }
      buckets[it->second].second.push_back({upper, s.v});
    }
    for (auto& [labels, bs] : buckets) {
      out.vector.push_back({labels, BucketQuantile(q, std::move(bs)), t});
    }
    CheckUnique(out.vector);
    return out;
  }
  if (name == "label_replace") {
    const std::string& dst = args[1].str;
    const std::string& repl = args[2].str;
    const std::string& src = args[3].str;
    re2::RE2 re("^(?:" + args[4].str + ")$");
    if (!re.ok()) Fail(StrCat("invalid regular expression in label_replace(): ", args[4].str));
    if (!IsValidLabelName(dst))
      Fail(StrCat("invalid destination label name in label_replace(): ", dst));
    std::vector<re2::StringPiece> groups(1 + re.NumberOfCapturingGroups());
    for (const Sample& s : args[0].vector) {
      const std::string* v = GetLabel(*s.labels, src);
      std::string value = v ? *v : "";
      if (!re.Match(value, 0, value.size(), re2::RE2::UNANCHORED, groups.data(),
                    static_cast<int>(groups.size()))) {
        out.vector.push_back(s);
        continue;
      }
      std::string res = ExpandGoTemplate(re, repl, groups);
      Labels l = *s.labels;
      SetLabel(&l, dst, res);
      out.vector.push_back({Own(std::move(l)), s.v, t});
    }
    CheckUnique(out.vector);
    return out;
  }
  if (name == "label_join") {
    const std::string& dst = args[1].str;
    const std::string& sep = args[2].str;
    if (!IsValidLabelName(dst))
      Fail(StrCat("invalid destination label name in label_join(): ", dst));
    for (size_t i = 3; i < args.size(); ++i) {
      if (!IsValidLabelName(args[i].str)) {
        Fail(StrCat("invalid source label name in label_join(): ", args[i].str));
      }
    }
    for (const Sample& s : args[0].vector) {
      std::string joined;
      for (size_t i = 3; i < args.size(); ++i) {
        if (i > 3) joined += sep;
        if (const std::string* v = GetLabel(*s.labels, args[i].str)) joined += *v;
      }
      Labels l = *s.labels;
      SetLabel(&l, dst, joined);
      out.vector.push_back({Own(std::move(l)), s.v, t});
    }
    CheckUnique(out.vector);
    return out;
  }
  // Element-wise functions of one vector (and scalar parameters).
  Vector in;
  if (args.empty()) {
    // day_of_month() and friends default to vector(time()).
    in.push_back({Own({}), static_cast<double>(t) / 1000, t});
  } else {
    in = std::move(args[0].vector);
  }
  double p1 = args.size() > 1 ? args[1].scalar : 0;
  double p2 = args.size() > 2 ? args[2].scalar : 0;
  if (name == "clamp" && p2 < p1) return out;
  double to_nearest_inverse = 1.0 / (name == "round" && args.size() > 1 ? p1 : 1.0);
  for (const Sample& s : in) {
    double x = s.v, r;
    if (name == "abs")
      r = std::fabs(x);
    else if (name == "ceil")
      r = std::ceil(x);
    else if (name == "floor")
      r = std::floor(x);
    else if (name == "exp")
      r = std::exp(x);
    else if (name == "sqrt")
      r = std::sqrt(x);
    else if (name == "ln")
      r = std::log(x);
    else if (name == "log2")
      r = std::log2(x);
    else if (name == "log10")
      r = std::log10(x);
    else if (name == "sin")
      r = std::sin(x);
    else if (name == "cos")
      r = std::cos(x);
    else if (name == "tan")
      r = std::tan(x);
    else if (name == "asin")
      r = std::asin(x);
    else if (name == "acos")
      r = std::acos(x);
    else if (name == "atan")
      r = std::atan(x);
    else if (name == "sinh")
      r = std::sinh(x);
    else if (name == "cosh")
      r = std::cosh(x);
    else if (name == "tanh")
      r = std::tanh(x);
    else if (name == "asinh")
      r = std::asinh(x);
    else if (name == "acosh")
      r = std::acosh(x);
    else if (name == "atanh")
      r = std::atanh(x);
    else if (name == "deg")
      r = x * 180 / M_PI;
    else if (name == "rad")
      r = x * M_PI / 180;
    else if (name == "sgn")
      r = x < 0 ? -1 : (x > 0 ? 1 : x);
    else if (name == "clamp")
      r = std::fmax(p1, std::fmin(p2, x));
    else if (name == "clamp_max")
      r = std::fmin(p1, x);
    else if (name == "clamp_min")
      r = std::fmax(p1, x);
    else if (name == "round")
      r = std::floor(x * to_nearest_inverse + 0.5) / to_nearest_inverse;
    else if (name == "day_of_month")
      r = ToCivil(x).day;
    else if (name == "day_of_week")
      r = ToCivil(x).wday;
    else if (name == "day_of_year")
      r = ToCivil(x).yday;
    else if (name == "days_in_month") {
      Civil c = ToCivil(x);
      r = DaysInMonth(c.year, c.month);
    } else if (name == "hour")
      r = ToCivil(x).hour;
    else if (name == "minute")
      r = ToCivil(x).minute;
    else if (name == "month")
      r = ToCivil(x).month;
    else if (name == "year")
      r = ToCivil(x).year;
    else
      Fail(StrCat("function ", name, " is not supported"));
    out.vector.push_back({DropName(s.labels), r, t});
  }
  CheckUnique(out.vector);
  return out;
}

Value Evaluator::Aggregate(const Expr& e, int64_t t) {
  Value param;
  if (e.param) param = Eval(*e.param, t);
  Value in = Eval(*e.child, t);
  Value out;
  out.type = ValueType::kVector;
  AggOp op = e.agg;
  int64_t k = 0;
  if (op == AggOp::kTopk || op == AggOp::kBottomk) {
    double f = param.scalar;
    if (!(f >= -9.223372036854775e18 && f <= 9.223372036854775e18)) {
      Fail(StrCat("Scalar value ", FormatGoFloat(f), " overflows int64"));
    }
    k = static_cast<int64_t>(f);
    if (k < 1) return out;
  }
  std::string value_label;
  std::vector<std::string> grouping = e.grouping;
  if (op == AggOp::kCountValues) {
    value_label = param.str;
    if (!IsValidLabelName(value_label)) Fail(StrCat("invalid label name ", GoQuote(value_label)));
    if (!e.without) grouping.push_back(value_label);
  }
  struct Group {
    const Labels* labels;
    double value = 0;
    double mean = 0;
    double count = 0;
    std::vector<double> values;  // quantile
    GoHeap<ByValue> top;
    GoHeap<ByValueReverse> bottom;
  };
  absl::flat_hash_map<uint64_t, size_t> index;
  std::vector<Group> groups;
  for (const Sample& in_s : in.vector) {
    Sample s = in_s;
    if (op == AggOp::kCountValues) {
      Labels l = *s.labels;
      char buf[64];
      auto r = std::to_chars(buf, buf + sizeof(buf), s.v, std::chars_format::fixed);
      std::string text(buf, r.ptr);
      if (std::isnan(s.v)) text = "NaN";
      if (std::isinf(s.v)) text = s.v > 0 ? "+Inf" : "-Inf";
      SetLabel(&l, value_label, text);
      s.labels = Own(std::move(l));
    }
    uint64_t key =
        e.without ? Signature(*s.labels, false, grouping) : Signature(*s.labels, true, grouping);
    auto [it, inserted] = index.try_emplace(key, groups.size());
    if (inserted) {
      Labels l;
      if (e.without) {
        l = *s.labels;
        for (const std::string& g : grouping) Del(&l, g);
        Del(&l, kMetricName);
      } else {
        for (const auto& [n, v] : *s.labels) {
          if (Contains(grouping, n)) l.emplace_back(n, v);
        }
      }
      Group g;
      g.labels = Own(std::move(l));
      g.value = s.v;
      g.mean = s.v;
      g.count = 1;
      switch (op) {
        case AggOp::kStddev:
        case AggOp::kStdvar:
          g.value = 0;
          break;
        case AggOp::kTopk:
          g.top.h.push_back(s);
          break;
        case AggOp::kBottomk:
          g.bottom.h.push_back(s);
          break;
        case AggOp::kQuantile:
          g.values.push_back(s.v);
          break;
        case AggOp::kGroup:
          g.value = 1;
          break;
        default:
          break;
      }
      groups.push_back(std::move(g));
      continue;
    }
    Group& g = groups[it->second];
    switch (op) {
      case AggOp::kSum:
        g.value += s.v;
        break;
      case AggOp::kAvg:
        g.count++;
        if (std::isinf(g.mean)) {
          if (std::isinf(s.v) && (g.mean > 0) == (s.v > 0)) break;
          if (!std::isinf(s.v) && !std::isnan(s.v)) break;
        }
        g.mean += s.v / g.count - g.mean / g.count;
        break;
      case AggOp::kGroup:
        break;
      case AggOp::kCount:
      case AggOp::kCountValues:
        g.count++;
        break;
      case AggOp::kMax:
        if (g.value < s.v || std::isnan(g.value)) g.value = s.v;
        break;
      case AggOp::kMin:
        if (g.value > s.v || std::isnan(g.value)) g.value = s.v;
        break;
      case AggOp::kStddev:
      case AggOp::kStdvar: {
        g.count++;
        double delta = s.v - g.mean;
        g.mean += delta / g.count;
        g.value += delta * (s.v - g.mean);
        break;
      }
      case AggOp::kTopk:
        if (static_cast<int64_t>(g.top.h.size()) < k) {
          g.top.Push(s);
        } else if (g.top.h[0].v < s.v || (std::isnan(g.top.h[0].v) && !std::isnan(s.v))) {
          g.top.h[0] = s;
          if (k > 1) g.top.Fix0();
        }
        break;
      case AggOp::kBottomk:
        if (static_cast<int64_t>(g.bottom.h.size()) < k) {
          g.bottom.Push(s);
        } else if (g.bottom.h[0].v > s.v || (std::isnan(g.bottom.h[0].v) && !std::isnan(s.v))) {
          g.bottom.h[0] = s;
          if (k > 1) g.bottom.Fix0();
        }
        break;
      case AggOp::kQuantile:
        g.values.push_back(s.v);
        break;
    }
  }
  for (Group& g : groups) {
    double v = g.value;
    switch (op) {
      case AggOp::kAvg:
        v = g.mean;
        break;
      case AggOp::kCount:
      case AggOp::kCountValues:
        v = g.count;
        break;
      case AggOp::kStdvar:
        v = g.value / g.count;
        break;
      case AggOp::kStddev:
        v = std::sqrt(g.value / g.count);
        break;
      case AggOp::kTopk:
        std::sort(g.top.h.begin(), g.top.h.end(), ByValueReverse());
        for (Sample& s : g.top.h) out.vector.push_back({s.labels, s.v, t});
        continue;
      case AggOp::kBottomk:
        std::sort(g.bottom.h.begin(), g.bottom.h.end(), ByValue());
        for (Sample& s : g.bottom.h) out.vector.push_back({s.labels, s.v, t});
        continue;
      case AggOp::kQuantile:
        v = Quantile(param.scalar, std::move(g.values));
        break;
      default:
        break;
    }
    out.vector.push_back({g.labels, v, t});
  }
  return out;
}

// Arithmetic and comparison of two floats: the result and whether a comparison holds.
double Apply(BinOp op, double l, double r, bool* keep) {
  *keep = true;
  switch (op) {
    case BinOp::kAdd:
      return l + r;
    case BinOp::kSub:
      return l - r;
    case BinOp::kMul:
      return l * r;
    case BinOp::kDiv:
      return l / r;
    case BinOp::kPow:
      return std::pow(l, r);
    case BinOp::kMod:
      return std::fmod(l, r);
    case BinOp::kAtan2:
      return std::atan2(l, r);
    case BinOp::kEql:
      *keep = l == r;
      return l;
    case BinOp::kNeq:
      *keep = l != r;
      return l;
    case BinOp::kGtr:
      *keep = l > r;
      return l;
    case BinOp::kLss:
      *keep = l < r;
      return l;
    case BinOp::kGte:
      *keep = l >= r;
      return l;
    case BinOp::kLte:
      *keep = l <= r;
      return l;
    default:
      Fail("set operator between scalars");
  }
}

// Arithmetic drops the metric name; comparisons and atan2 keep it (Prometheus 2.42).
bool DropsName(BinOp op) {
  switch (op) {
    case BinOp::kAdd:
    case BinOp::kSub:
    case BinOp::kMul:
    case BinOp::kDiv:
    case BinOp::kPow:
    case BinOp::kMod:
      return true;
    default:
      return false;
  }
}

Vector Evaluator::SetOp(const Expr& e, const Vector& lhs, const Vector& rhs) {
  const VectorMatching& m = *e.matching;
  auto sig = [&](const Sample& s) { return Signature(*s.labels, m.on, m.labels); };
  Vector out;
  switch (e.op) {
    case BinOp::kAnd: {
      absl::flat_hash_set<uint64_t> right;
      for (const Sample& s : rhs) right.insert(sig(s));
      for (const Sample& s : lhs) {
        if (right.contains(sig(s))) out.push_back(s);
      }
      break;
    }
    case BinOp::kOr: {
      absl::flat_hash_set<uint64_t> left;
      for (const Sample& s : lhs) {
        left.insert(sig(s));
        out.push_back(s);
      }
      for (const Sample& s : rhs) {
        if (!left.contains(sig(s))) out.push_back(s);
      }
      break;
    }
    case BinOp::kUnless: {
      absl::flat_hash_set<uint64_t> right;
      for (const Sample& s : rhs) right.insert(sig(s));
      for (const Sample& s : lhs) {
        if (!right.contains(sig(s))) out.push_back(s);
      }
      break;
    }
    default:
      break;
  }
  return out;
}

Labels MatchedLabels(const Labels& l, const VectorMatching& m) {
  Labels out;
  for (const auto& [n, v] : l) {
    bool listed = Contains(m.labels, n);
    if (m.on ? listed : (!listed && n != kMetricName)) out.emplace_back(n, v);
  }
  return out;
}

Vector Evaluator::VectorBinop(const Expr& e, const Vector& lhs_in, const Vector& rhs_in) {
  const VectorMatching& m = *e.matching;
  bool one_to_many = m.card == VectorMatching::Card::kOneToMany;
  const Vector& lhs = one_to_many ? rhs_in : lhs_in;
  const Vector& rhs = one_to_many ? lhs_in : rhs_in;
  auto sig = [&](const Sample& s) { return Signature(*s.labels, m.on, m.labels); };
  absl::flat_hash_map<uint64_t, const Sample*> right;
  right.reserve(rhs.size());
  for (const Sample& s : rhs) {
    auto [it, inserted] = right.try_emplace(sig(s), &s);
    if (!inserted) {
      Fail(StrCat(
          "found duplicate series for the match group ", LabelsString(MatchedLabels(*s.labels, m)),
          " on the ", one_to_many ? "left" : "right", " hand-side of the operation: [",
          LabelsString(*s.labels), ", ", LabelsString(*it->second->labels),
          "];many-to-many matching not allowed: matching labels must be unique on one side"));
    }
  }
  // Per matched signature: for one-to-one, seen; for many-to-one, the result label sets.
  absl::flat_hash_map<uint64_t, absl::flat_hash_set<uint64_t>> matched;
  Vector out;
  bool drop = DropsName(e.op);
  for (const Sample& ls : lhs) {
    uint64_t s = sig(ls);
    auto r = right.find(s);
    if (r == right.end()) continue;
    const Sample& rs = *r->second;
    double vl = ls.v, vr = rs.v;
    if (one_to_many) std::swap(vl, vr);
    bool keep;
    double value = Apply(e.op, vl, vr, &keep);
    if (e.return_bool) {
      value = keep ? 1.0 : 0.0;
    } else if (!keep) {
      continue;
    }
    // The result's labels: the "many" side's, reduced for one-to-one matching, plus the
    // group_x labels taken from the "one" side.
    Labels l;
    bool changed = false;
    const Labels& base = *ls.labels;
    if (drop || e.return_bool || m.card == VectorMatching::Card::kOneToOne || !m.include.empty()) {
      l = base;
      if (drop || e.return_bool) Del(&l, kMetricName);
      if (m.card == VectorMatching::Card::kOneToOne) {
        if (m.on) {
          Labels kept;
          for (auto& p : l) {
            if (Contains(m.labels, p.first)) kept.push_back(std::move(p));
          }
          l = std::move(kept);
        } else {
          for (const std::string& n : m.labels) Del(&l, n);
        }
      }
      for (const std::string& n : m.include) {
        const std::string* v = GetLabel(*rs.labels, n);
        SetLabel(&l, n, v ? *v : "");
      }
      changed = l != base;
    }
    const Labels* result = changed ? Own(std::move(l)) : ls.labels;
    auto [mi, first] = matched.try_emplace(s);
    if (m.card == VectorMatching::Card::kOneToOne) {
      if (!first) {
        Fail(
            "multiple matches for labels: many-to-one matching must be explicit "
            "(group_left/group_right)");
      }
    } else if (!mi->second.insert(HashAll(*result)).second) {
      Fail("multiple matches for labels: grouping labels must ensure unique matches");
    }
    out.push_back({result, value, ls.t});
  }
  return out;
}

Value Evaluator::Binary(const Expr& e, int64_t t) {
  Value l = Eval(*e.lhs, t);
  Value r = Eval(*e.rhs, t);
  Value out;
  if (l.type == ValueType::kScalar && r.type == ValueType::kScalar) {
    out.type = ValueType::kScalar;
    bool keep;
    out.scalar = Apply(e.op, l.scalar, r.scalar, &keep);
    if (e.return_bool) out.scalar = keep ? 1 : 0;
    return out;
  }
  out.type = ValueType::kVector;
  if (l.type == ValueType::kVector && r.type == ValueType::kVector) {
    out.vector =
        IsSetOperator(e.op) ? SetOp(e, l.vector, r.vector) : VectorBinop(e, l.vector, r.vector);
    return out;
  }
  // A vector and a scalar: the vector's samples, in their order.
  bool swap = l.type == ValueType::kScalar;
  const Vector& v = swap ? r.vector : l.vector;
  double scalar = swap ? l.scalar : r.scalar;
  bool drop = DropsName(e.op) || e.return_bool;
  out.vector.reserve(v.size());
  for (const Sample& s : v) {
    double lv = s.v, rv = scalar;
    if (swap) std::swap(lv, rv);
    bool keep;
    double value = Apply(e.op, lv, rv, &keep);
    // A comparison keeps the vector's value, on whichever side it is.
    if (IsComparison(e.op) && swap) value = rv;
    if (e.return_bool) {
      value = keep ? 1 : 0;
      keep = true;
    }
    if (!keep) continue;
    out.vector.push_back({drop ? DropName(s.labels) : s.labels, value, s.t});
  }
  if (drop) CheckUnique(out.vector);
  return out;
}

}  // namespace

// Go's regexp.Expand for label_replace: $1, ${1}, $name, ${name}, $$.
std::string ExpandGoTemplate(const re2::RE2& re, std::string_view tmpl,
                             const std::vector<re2::StringPiece>& groups) {
  std::string out;
  const auto& named = re.NamedCapturingGroups();
  auto lookup = [&](std::string_view name) -> std::string_view {
    int idx = -1;
    bool numeric = !name.empty() && std::all_of(name.begin(), name.end(),
                                                [](char c) { return c >= '0' && c <= '9'; });
    if (numeric) {
      if (name.size() > 9) return {};
      idx = std::atoi(std::string(name).c_str());
    } else if (auto it = named.find(std::string(name)); it != named.end()) {
      idx = it->second;
    }
    if (idx < 0 || static_cast<size_t>(idx) >= groups.size() || groups[idx].data() == nullptr) {
      return {};
    }
    return std::string_view(groups[idx].data(), groups[idx].size());
  };
  auto word = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  };
  for (size_t i = 0; i < tmpl.size();) {
    char c = tmpl[i];
    if (c != '$' || i + 1 >= tmpl.size()) {
      out.push_back(c);
      ++i;
      continue;
    }
    if (tmpl[i + 1] == '$') {
      out.push_back('$');
      i += 2;
      continue;
    }
    if (tmpl[i + 1] == '{') {
      size_t close = tmpl.find('}', i + 2);
      std::string_view name =
          close == std::string_view::npos ? std::string_view() : tmpl.substr(i + 2, close - i - 2);
      if (close == std::string_view::npos || name.empty() ||
          !std::all_of(name.begin(), name.end(), word)) {
        out.push_back('$');  // malformed: the $ is kept literally
        ++i;
        continue;
      }
      out += lookup(name);
      i = close + 1;
      continue;
    }
    size_t j = i + 1;
    while (j < tmpl.size() && word(tmpl[j])) ++j;
    if (j == i + 1) {
      out.push_back('$');
      ++i;
      continue;
    }
    out += lookup(tmpl.substr(i + 1, j - i - 1));
    i = j;
  }
  return out;
}

std::string LabelsString(const Labels& labels) {
  std::string out = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i > 0) out += ", ";
    StrAppend(&out, labels[i].first, "=", GoQuote(labels[i].second));
  }
  out += "}";
  return out;
}

std::string FormatGoFloat(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Shortest digits that read back, then Go's layout for %v (strconv 'g' with the shortest
  // precision): %e when the exponent is < -4 or >= 6 ("1.234567e+06"), else %f ("123456").
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  std::string sci(buf, r.ptr);  // d.ddde±XX
  size_t e = sci.find('e');
  int exp = std::atoi(sci.c_str() + e + 1);
  if (exp < -4 || exp >= 6) {
    std::string mant = sci.substr(0, e);
    char sign = exp < 0 ? '-' : '+';
    int a = exp < 0 ? -exp : exp;
    char tail[16];
    std::snprintf(tail, sizeof(tail), "e%c%02d", sign, a);
    return mant + tail;
  }
  r = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed);
  return std::string(buf, r.ptr);
}

absl::Status Evaluate(const Expr& expr, int64_t t_ms, const tsdb::Store& store,
                      const EvalOptions& options, QueryResult* out) {
  out->arena->clear();
  out->vector.clear();
  out->matrix.clear();
  Evaluator ev(store, options, t_ms, out->arena.get());
  try {
    Value v = ev.Eval(expr, t_ms);
    out->type = v.type;
    out->scalar = v.scalar;
    out->str = std::move(v.str);
    out->vector = std::move(v.vector);
    for (const Value::Window& w : v.windows) {
      out->matrix.push_back({w.labels, std::vector<Point>(w.begin, w.end)});
    }
  } catch (const EvalError& err) {
    return absl::Status(err.code, err.message);
  }
  return absl::OkStatus();
}

}  // namespace bulwark::observe::promql
