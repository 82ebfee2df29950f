// PromQL aggregations (sum, avg, count, min, max, stddev, stdvar, group, topk, bottomk,
// quantile, count_values) with Prometheus's grouping and float order.
#include <charconv>

#include "observe/promql/engine_internal.h"

namespace bulwark::observe::promql::internal {
namespace {

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

// One output group of an aggregation and what it has accumulated.
struct Group {
  const Labels* labels;
  double value = 0;
  double mean = 0;
  double count = 0;
  std::vector<double> values;  // quantile
  GoHeap<ByValue> top;
  GoHeap<ByValueReverse> bottom;
};

// Adds one more sample to a group (Prometheus's aggregation loop, the same float order).
void Accumulate(AggOp op, int64_t k, const Sample& s, Group* g) {
  switch (op) {
    case AggOp::kSum:
      g->value += s.v;
      break;
    case AggOp::kAvg:
      g->count++;
      if (std::isinf(g->mean)) {
        if (std::isinf(s.v) && (g->mean > 0) == (s.v > 0)) break;
        if (!std::isinf(s.v) && !std::isnan(s.v)) break;
      }
      g->mean += s.v / g->count - g->mean / g->count;
      break;
    case AggOp::kGroup:
      break;
    case AggOp::kCount:
    case AggOp::kCountValues:
      g->count++;
      break;
    case AggOp::kMax:
      if (g->value < s.v || std::isnan(g->value)) g->value = s.v;
      break;
    case AggOp::kMin:
      if (g->value > s.v || std::isnan(g->value)) g->value = s.v;
      break;
    case AggOp::kStddev:
    case AggOp::kStdvar: {
      g->count++;
      double delta = s.v - g->mean;
      g->mean += delta / g->count;
      g->value += delta * (s.v - g->mean);
      break;
    }
    case AggOp::kTopk:
      if (static_cast<int64_t>(g->top.h.size()) < k) {
        g->top.Push(s);
      } else if (g->top.h[0].v < s.v || (std::isnan(g->top.h[0].v) && !std::isnan(s.v))) {
        g->top.h[0] = s;
        if (k > 1) g->top.Fix0();
      }
      break;
    case AggOp::kBottomk:
      if (static_cast<int64_t>(g->bottom.h.size()) < k) {
        g->bottom.Push(s);
      } else if (g->bottom.h[0].v > s.v || (std::isnan(g->bottom.h[0].v) && !std::isnan(s.v))) {
        g->bottom.h[0] = s;
        if (k > 1) g->bottom.Fix0();
      }
      break;
    case AggOp::kQuantile:
      g->values.push_back(s.v);
      break;
  }
}

// The group's result samples.
void Emit(AggOp op, double param, int64_t t, Group* g, Vector* out) {
  double v = g->value;
  switch (op) {
    case AggOp::kAvg:
      v = g->mean;
      break;
    case AggOp::kCount:
    case AggOp::kCountValues:
      v = g->count;
      break;
    case AggOp::kStdvar:
      v = g->value / g->count;
      break;
    case AggOp::kStddev:
      v = std::sqrt(g->value / g->count);
      break;
    case AggOp::kTopk:
      std::sort(g->top.h.begin(), g->top.h.end(), ByValueReverse());
      for (Sample& s : g->top.h) out->push_back({s.labels, s.v, t});
      return;
    case AggOp::kBottomk:
      std::sort(g->bottom.h.begin(), g->bottom.h.end(), ByValue());
      for (Sample& s : g->bottom.h) out->push_back({s.labels, s.v, t});
      return;
    case AggOp::kQuantile:
      v = Quantile(param, std::move(g->values));
      break;
    default:
      break;
  }
  out->push_back({g->labels, v, t});
}

}  // namespace

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
    Accumulate(op, k, s, &groups[it->second]);
  }
  for (Group& g : groups) Emit(op, param.scalar, t, &g, &out.vector);
  return out;
}

}  // namespace bulwark::observe::promql::internal
