#include "observe/promql/engine.h"

#include <re2/re2.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <utility>

#include "core/strings.h"
#include "observe/promql/engine_internal.h"

namespace bulwark::observe::promql {
namespace internal {

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

}  // namespace internal

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
  internal::Evaluator ev(store, options, t_ms, out->arena.get());
  try {
    internal::Value v = ev.Eval(expr, t_ms);
    out->type = v.type;
    out->scalar = v.scalar;
    out->str = std::move(v.str);
    out->vector = std::move(v.vector);
    for (const internal::Value::Window& w : v.windows) {
      out->matrix.push_back({w.labels, std::vector<tsdb::Point>(w.begin, w.end)});
    }
  } catch (const internal::EvalError& err) {
    return absl::Status(err.code, err.message);
  }
  return absl::OkStatus();
}

}  // namespace bulwark::observe::promql
