// The PromQL functions' implementations, as a table from name to implementation (Prometheus's
// FunctionCalls in promql/functions.go); their signatures are in functions.cc (the parser's
// table). Three shapes: calls that work on their evaluated arguments, element-wise functions of
// one vector, and functions over each series' window of a range vector.
#include <re2/re2.h>

#include <ctime>

#include "observe/promql/engine_internal.h"
#include "observe/promql/functions.h"

namespace bulwark::observe::promql::internal {

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

namespace {

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

using Args = std::vector<Value>;

// The scalar parameters of an element-wise function (round's to_nearest, clamp's bounds).
struct ElementParams {
  double p1 = 0, p2 = 0;
  size_t args = 0;  // arguments given, the vector included
};

// The parameters of a function over windows, and the window's matrix (for its range).
struct WindowParams {
  const Value* m;
  int64_t t;
  double p1 = 0, p2 = 0;  // its scalar arguments, in order
};

struct Impl {
  // Before its arguments are evaluated (time(), pi(), timestamp() of a selector).
  Value (*raw)(Evaluator& ev, const Expr& e, int64_t t) = nullptr;
  // On the evaluated arguments.
  Value (*call)(Evaluator& ev, const Expr& e, Args& args, int64_t t) = nullptr;
  // One sample's value of an element-wise function.
  double (*element)(double x, const ElementParams& p) = nullptr;
  // One series' window of a range-vector function; false: no sample for it.
  bool (*window)(const Value::Window& w, const WindowParams& p, double* r) = nullptr;
  // Refuses the parameters of a function over windows before any window (Fail).
  void (*check)(const WindowParams& p) = nullptr;
  bool keep_name = false;  // last_over_time keeps the metric name
};

Value Empty(const Expr& e) {
  Value out;
  out.type = e.func->return_type;
  return out;
}

// Applies an element-wise function to args[0] (day_of_month() and friends default to
// vector(time())).
Value MapElements(Evaluator& ev, const Expr& e, Args& args, int64_t t,
                  double (*fn)(double, const ElementParams&)) {
  Value out = Empty(e);
  Vector in;
  if (args.empty()) {
    in.push_back({ev.Own({}), static_cast<double>(t) / 1000, t});
  } else {
    in = std::move(args[0].vector);
  }
  ElementParams p{args.size() > 1 ? args[1].scalar : 0, args.size() > 2 ? args[2].scalar : 0,
                  args.size()};
  for (const Sample& s : in) out.vector.push_back({ev.DropName(s.labels), fn(s.v, p), t});
  ev.CheckUnique(out.vector);
  return out;
}

Value Timestamp(Evaluator& ev, const Expr& e, int64_t t) {
  // Of a plain selector, the samples' own times; of anything else, the evaluation time.
  Value out = Empty(e);
  const Expr& a = Unparen(*e.args[0]);
  Value v = ev.Eval(a, t);
  for (Sample& s : v.vector) {
    out.vector.push_back({ev.DropName(s.labels),
                          static_cast<double>(a.kind == Expr::Kind::kSelector ? s.t : t) / 1000,
                          t});
  }
  ev.CheckUnique(out.vector);
  return out;
}

Value Sort(Args& args, const Expr& e, bool desc) {
  Value out = Empty(e);
  out.vector = std::move(args[0].vector);
  std::stable_sort(out.vector.begin(), out.vector.end(), [desc](const Sample& a, const Sample& b) {
    if (std::isnan(a.v) != std::isnan(b.v))
      return desc ? std::isnan(a.v) == false : std::isnan(a.v);
    return desc ? a.v > b.v : a.v < b.v;
  });
  return out;
}

Value HistogramQuantile(Evaluator& ev, const Expr& e, Args& args, int64_t t) {
  Value out = Empty(e);
  double q = args[0].scalar;
  // Groups: all labels but `le` (the name included); results: without `le` and the name.
  absl::flat_hash_map<uint64_t, size_t> groups;
  std::vector<std::pair<const Labels*, std::vector<Bucket>>> buckets;
  for (const Sample& s : args[1].vector) {
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
      buckets.push_back({ev.Own(std::move(l)), {}});
    }
    buckets[it->second].second.push_back({upper, s.v});
  }
  for (auto& [labels, bs] : buckets) {
    out.vector.push_back({labels, BucketQuantile(q, std::move(bs)), t});
  }
  ev.CheckUnique(out.vector);
  return out;
}

Value LabelReplace(Evaluator& ev, const Expr& e, Args& args, int64_t t) {
  Value out = Empty(e);
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
    out.vector.push_back({ev.Own(std::move(l)), s.v, t});
  }
  ev.CheckUnique(out.vector);
  return out;
}

Value LabelJoin(Evaluator& ev, const Expr& e, Args& args, int64_t t) {
  Value out = Empty(e);
  const std::string& dst = args[1].str;
  const std::string& sep = args[2].str;
  if (!IsValidLabelName(dst)) Fail(StrCat("invalid destination label name in label_join(): ", dst));
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
    out.vector.push_back({ev.Own(std::move(l)), s.v, t});
  }
  ev.CheckUnique(out.vector);
  return out;
}

double AvgOverTime(const Value::Window& w) {
  double mean = 0, count = 0, c = 0;
  for (const Point* p = w.begin; p != w.end; ++p) {
    count++;
    if (std::isinf(mean)) {
      if (std::isinf(p->v) && (mean > 0) == (p->v > 0)) continue;
      if (!std::isinf(p->v) && !std::isnan(p->v)) continue;
    }
    KahanInc(p->v / count - mean / count, &mean, &c);
  }
  return std::isinf(mean) ? mean : mean + c;
}

double VarianceOverTime(const Value::Window& w) {
  double count = 0, mean = 0, c_mean = 0, aux = 0, c_aux = 0;
  for (const Point* p = w.begin; p != w.end; ++p) {
    count++;
    double delta = p->v - (mean + c_mean);
    KahanInc(delta / count, &mean, &c_mean);
    KahanInc(delta * (p->v - (mean + c_mean)), &aux, &c_aux);
  }
  return (aux + c_aux) / count;
}

double ExtremeOverTime(const Value::Window& w, bool is_min) {
  double r = w.begin[0].v;
  for (const Point* p = w.begin; p != w.end; ++p) {
    if ((is_min ? p->v < r : p->v > r) || std::isnan(r)) r = p->v;
  }
  return r;
}

double Changes(const Value::Window& w, bool changes) {
  double r = 0;
  double prev = w.begin[0].v;
  for (const Point* p = w.begin + 1; p != w.end; ++p) {
    double cur = p->v;
    if (changes ? (cur != prev && !(std::isnan(cur) && std::isnan(prev))) : cur < prev) r++;
    prev = cur;
  }
  return r;
}

bool HoltWinters(const Value::Window& w, const WindowParams& p, double* r) {
  size_t n = static_cast<size_t>(w.end - w.begin);
  if (n < 2) return false;
  double sf = p.p1, tf = p.p2;
  double s0 = 0, s1 = w.begin[0].v, b = w.begin[1].v - w.begin[0].v;
  for (size_t i = 1; i < n; ++i) {
    double x = sf * w.begin[i].v;
    if (i - 1 != 0) b = tf * (s1 - s0) + (1 - tf) * b;
    double y = (1 - sf) * (s1 + b);
    s0 = s1;
    s1 = x + y;
  }
  *r = s1;
  return true;
}

void CheckHoltWinters(const WindowParams& p) {
  double sf = p.p1, tf = p.p2;
  char buf[96];
  if (sf <= 0 || sf >= 1) {
    std::snprintf(buf, sizeof(buf), "invalid smoothing factor. Expected: 0 < sf < 1, got: %f", sf);
    Fail(buf);
  }
  if (tf <= 0 || tf >= 1) {
    std::snprintf(buf, sizeof(buf), "invalid trend factor. Expected: 0 < tf < 1, got: %f", tf);
    Fail(buf);
  }
}

using W = Value::Window;
using P = ElementParams;
using WP = WindowParams;

const absl::flat_hash_map<std::string_view, Impl>& Impls() {
  static const auto* table = new absl::flat_hash_map<std::string_view, Impl>{
      // Calls.
      {"time",
       {.raw =
            [](Evaluator&, const Expr& e, int64_t t) {
              Value out = Empty(e);
              out.scalar = static_cast<double>(t) / 1000;
              return out;
            }}},
      {"pi",
       {.raw =
            [](Evaluator&, const Expr& e, int64_t) {
              Value out = Empty(e);
              out.scalar = M_PI;
              return out;
            }}},
      {"timestamp", {.raw = Timestamp}},
      {"scalar",
       {.call =
            [](Evaluator&, const Expr& e, Args& a, int64_t) {
              Value out = Empty(e);
              out.scalar = a[0].vector.size() == 1 ? a[0].vector[0].v : NAN;
              return out;
            }}},
      {"vector",
       {.call =
            [](Evaluator& ev, const Expr& e, Args& a, int64_t t) {
              Value out = Empty(e);
              out.vector.push_back({ev.Own({}), a[0].scalar, t});
              return out;
            }}},
      {"absent",
       {.call =
            [](Evaluator& ev, const Expr& e, Args& a, int64_t t) {
              Value out = Empty(e);
              if (a[0].vector.empty())
                out.vector.push_back({ev.Own(AbsentLabels(*e.args[0])), 1, t});
              return out;
            }}},
      {"sort",
       {.call = [](Evaluator&, const Expr& e, Args& a, int64_t) { return Sort(a, e, false); }}},
      {"sort_desc",
       {.call = [](Evaluator&, const Expr& e, Args& a, int64_t) { return Sort(a, e, true); }}},
      {"histogram_quantile", {.call = HistogramQuantile}},
      {"label_replace", {.call = LabelReplace}},
      {"label_join", {.call = LabelJoin}},
      {"clamp",
       {.call =
            [](Evaluator& ev, const Expr& e, Args& a, int64_t t) {
              if (a[2].scalar < a[1].scalar) return Empty(e);
              return MapElements(ev, e, a, t, [](double x, const P& p) {
                return std::fmax(p.p1, std::fmin(p.p2, x));
              });
            }}},
      // Element-wise.
      {"abs", {.element = [](double x, const P&) { return std::fabs(x); }}},
      {"ceil", {.element = [](double x, const P&) { return std::ceil(x); }}},
      {"floor", {.element = [](double x, const P&) { return std::floor(x); }}},
      {"exp", {.element = [](double x, const P&) { return std::exp(x); }}},
      {"sqrt", {.element = [](double x, const P&) { return std::sqrt(x); }}},
      {"ln", {.element = [](double x, const P&) { return std::log(x); }}},
      {"log2", {.element = [](double x, const P&) { return std::log2(x); }}},
      {"log10", {.element = [](double x, const P&) { return std::log10(x); }}},
      {"sin", {.element = [](double x, const P&) { return std::sin(x); }}},
      {"cos", {.element = [](double x, const P&) { return std::cos(x); }}},
      {"tan", {.element = [](double x, const P&) { return std::tan(x); }}},
      {"asin", {.element = [](double x, const P&) { return std::asin(x); }}},
      {"acos", {.element = [](double x, const P&) { return std::acos(x); }}},
      {"atan", {.element = [](double x, const P&) { return std::atan(x); }}},
      {"sinh", {.element = [](double x, const P&) { return std::sinh(x); }}},
      {"cosh", {.element = [](double x, const P&) { return std::cosh(x); }}},
      {"tanh", {.element = [](double x, const P&) { return std::tanh(x); }}},
      {"asinh", {.element = [](double x, const P&) { return std::asinh(x); }}},
      {"acosh", {.element = [](double x, const P&) { return std::acosh(x); }}},
      {"atanh", {.element = [](double x, const P&) { return std::atanh(x); }}},
      {"deg", {.element = [](double x, const P&) { return x * 180 / M_PI; }}},
      {"rad", {.element = [](double x, const P&) { return x * M_PI / 180; }}},
      {"sgn", {.element = [](double x, const P&) { return x < 0 ? -1 : (x > 0 ? 1 : x); }}},
      {"clamp_max", {.element = [](double x, const P& p) { return std::fmin(p.p1, x); }}},
      {"clamp_min", {.element = [](double x, const P& p) { return std::fmax(p.p1, x); }}},
      {"round",
       {.element =
            [](double x, const P& p) {
              double to_nearest_inverse = 1.0 / (p.args > 1 ? p.p1 : 1.0);
              return std::floor(x * to_nearest_inverse + 0.5) / to_nearest_inverse;
            }}},
      {"day_of_month", {.element = [](double x, const P&) -> double { return ToCivil(x).day; }}},
      {"day_of_week", {.element = [](double x, const P&) -> double { return ToCivil(x).wday; }}},
      {"day_of_year", {.element = [](double x, const P&) -> double { return ToCivil(x).yday; }}},
      {"days_in_month", {.element = [](double x, const P&) -> double {
         Civil c = ToCivil(x);
         return DaysInMonth(c.year, c.month);
       }}},
      {"hour", {.element = [](double x, const P&) -> double { return ToCivil(x).hour; }}},
      {"minute", {.element = [](double x, const P&) -> double { return ToCivil(x).minute; }}},
      {"month", {.element = [](double x, const P&) -> double { return ToCivil(x).month; }}},
      {"year", {.element = [](double x, const P&) -> double { return ToCivil(x).year; }}},
      // Over windows.
      {"rate",
       {.window = [](const W& w, const WP& p,
                     double* r) { return ExtrapolatedRate(*p.m, w, true, true, r); }}},
      {"increase",
       {.window = [](const W& w, const WP& p,
                     double* r) { return ExtrapolatedRate(*p.m, w, true, false, r); }}},
      {"delta",
       {.window = [](const W& w, const WP& p,
                     double* r) { return ExtrapolatedRate(*p.m, w, false, false, r); }}},
      {"irate",
       {.window = [](const W& w, const WP&, double* r) { return InstantValue(w, true, r); }}},
      {"idelta",
       {.window = [](const W& w, const WP&, double* r) { return InstantValue(w, false, r); }}},
      {"avg_over_time",
       {.window =
            [](const W& w, const WP&, double* r) {
              *r = AvgOverTime(w);
              return true;
            }}},
      {"sum_over_time",
       {.window =
            [](const W& w, const WP&, double* r) {
              double c = 0;
              for (const Point* p = w.begin; p != w.end; ++p) KahanInc(p->v, r, &c);
              if (!std::isinf(*r)) *r += c;
              return true;
            }}},
      {"count_over_time",
       {.window =
            [](const W& w, const WP&, double* r) {
              *r = static_cast<double>(w.end - w.begin);
              return true;
            }}},
      {"min_over_time",
       {.window =
            [](const W& w, const WP&, double* r) {
              *r = ExtremeOverTime(w, true);
              return true;
            }}},
      {"max_over_time",
       {.window =
            [](const W& w, const WP&, double* r) {
              *r = ExtremeOverTime(w, false);
              return true;
            }}},
      {"last_over_time",
       {.window =
            [](const W& w, const WP&, double* r) {
              *r = w.end[-1].v;
              return true;
            },
        .keep_name = true}},
      {"present_over_time",
       {.window =
            [](const W&, const WP&, double* r) {
              *r = 1;
              return true;
            }}},
      {"quantile_over_time",
       {.window =
            [](const W& w, const WP& p, double* r) {
              std::vector<double> values;
              values.reserve(static_cast<size_t>(w.end - w.begin));
              for (const Point* pt = w.begin; pt != w.end; ++pt) values.push_back(pt->v);
              *r = Quantile(p.p1, std::move(values));
              return true;
            }}},
      {"stdvar_over_time",
       {.window =
            [](const W& w, const WP&, double* r) {
              *r = VarianceOverTime(w);
              return true;
            }}},
      {"stddev_over_time",
       {.window =
            [](const W& w, const WP&, double* r) {
              *r = std::sqrt(VarianceOverTime(w));
              return true;
            }}},
      {"changes",
       {.window =
            [](const W& w, const WP&, double* r) {
              *r = Changes(w, true);
              return true;
            }}},
      {"resets",
       {.window =
            [](const W& w, const WP&, double* r) {
              *r = Changes(w, false);
              return true;
            }}},
      {"deriv",
       {.window =
            [](const W& w, const WP&, double* r) {
              if (w.end - w.begin < 2) return false;
              double slope, intercept;
              LinearRegression(w, w.begin[0].t, &slope, &intercept);
              *r = slope;
              return true;
            }}},
      {"predict_linear",
       {.window =
            [](const W& w, const WP& p, double* r) {
              if (w.end - w.begin < 2) return false;
              double slope, intercept;
              LinearRegression(w, p.t, &slope, &intercept);
              *r = slope * p.p1 + intercept;
              return true;
            }}},
      {"holt_winters", {.window = HoltWinters, .check = CheckHoltWinters}},
  };
  return *table;
}

const Impl& Find(std::string_view name) {
  const auto& impls = Impls();
  auto it = impls.find(name);
  if (it == impls.end()) Fail(StrCat("function ", name, " is not supported"));
  return it->second;
}

}  // namespace

Value Evaluator::Call(const Expr& e, int64_t t) {
  for (size_t i = 0; i < e.args.size(); ++i) {
    const Expr& a = Unparen(*e.args[i]);
    if (a.kind == Expr::Kind::kMatrix || a.kind == Expr::Kind::kSubquery) {
      return MatrixCall(e, t, i);
    }
  }
  const Impl& impl = Find(e.func->name);
  if (impl.raw != nullptr) return impl.raw(*this, e, t);
  Args args(e.args.size());
  for (size_t i = 0; i < e.args.size(); ++i) args[i] = Eval(*e.args[i], t);
  if (impl.call != nullptr) return impl.call(*this, e, args, t);
  if (impl.element == nullptr) Fail(StrCat("function ", e.func->name, " is not supported"));
  return MapElements(*this, e, args, t, impl.element);
}

Value Evaluator::MatrixCall(const Expr& e, int64_t t, size_t matrix_arg) {
  std::string_view name = e.func->name;
  Args args(e.args.size());
  for (size_t i = 0; i < e.args.size(); ++i) args[i] = Eval(*e.args[i], t);
  const Value& m = args[matrix_arg];
  Value out;
  out.type = ValueType::kVector;
  if (name == "absent_over_time") {
    if (m.windows.empty()) out.vector.push_back({Own(AbsentLabels(*e.args[0])), 1, t});
    return out;
  }
  const Impl& impl = Find(name);
  if (impl.window == nullptr) Fail(StrCat("function ", name, " is not supported"));
  WindowParams p{&m, t};
  int scalars = 0;
  for (size_t i = 0; i < args.size(); ++i) {
    if (i == matrix_arg) continue;
    (scalars++ == 0 ? p.p1 : p.p2) = args[i].scalar;
  }
  if (impl.check != nullptr) impl.check(p);
  for (const Value::Window& w : m.windows) {
    double r = 0;
    if (!impl.window(w, p, &r)) continue;
    out.vector.push_back({impl.keep_name ? w.labels : DropName(w.labels), r, t});
  }
  CheckUnique(out.vector);
  return out;
}

}  // namespace bulwark::observe::promql::internal
