#include "observe/promql/series_notation.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "core/strings.h"
#include "observe/promql/parser.h"

namespace bulwark::observe::promql {
namespace {

// A signed decimal number, Inf or NaN; false if `s` is anything else.
bool ParseSigned(std::string_view s, double* out) {
  if (s.empty() || s.size() > 64) return false;
  bool neg = false;
  std::string_view body = s;
  if (body[0] == '+' || body[0] == '-') {
    neg = body[0] == '-';
    body.remove_prefix(1);
  }
  if (body.empty()) return false;
  std::string lower = AsciiLower(body);
  double v;
  if (lower == "inf") {
    v = INFINITY;
  } else if (lower == "nan") {
    v = NAN;
  } else {
    for (char c : lower) {
      if (!(c >= '0' && c <= '9') && c != '.' && c != 'e' && c != '+' && c != '-') return false;
    }
    std::string buf(body);
    char* end = nullptr;
    v = std::strtod(buf.c_str(), &end);
    if (end != buf.c_str() + buf.size()) return false;
  }
  *out = neg ? -v : v;
  return true;
}

absl::Status Bad(std::string_view item, std::string_view why) {
  return absl::InvalidArgumentError(StrCat("series values: \"", item, "\": ", why));
}

}  // namespace

absl::StatusOr<std::vector<SeriesValue>> ParseSeriesValues(std::string_view text) {
  std::vector<SeriesValue> out;
  for (const std::string& item : Split(text, ' ', /*skip_empty=*/true)) {
    std::string_view it = Trim(item);
    if (it.empty()) continue;
    // Split off "xN".
    size_t x = it.rfind('x');
    int64_t times = -1;
    std::string_view head = it;
    if (x != std::string_view::npos && x + 1 < it.size()) {
      int64_t n = 0;
      if (ParseInt(it.substr(x + 1), &n) && n >= 0) {
        times = n;
        head = it.substr(0, x);
      }
    }
    auto room = [&](int64_t n) -> absl::Status {
      if (out.size() + static_cast<size_t>(n) > kMaxSeriesValues) {
        return Bad(it, StrCat("more than ", kMaxSeriesValues, " samples"));
      }
      return absl::OkStatus();
    };
    if (head == "_") {
      int64_t n = times < 0 ? 1 : times;  // _xN is N missing samples
      if (auto st = room(n); !st.ok()) return st;
      for (int64_t i = 0; i < n; ++i) out.push_back({SeriesValue::Kind::kMissing, 0});
      continue;
    }
    if (head == "stale") {
      if (times >= 0) return Bad(it, "expected number or \"stale\"");
      out.push_back({SeriesValue::Kind::kStale, 0});
      continue;
    }
    if (times < 0) {
      double v;
      if (!ParseSigned(head, &v)) return Bad(it, "expected number or \"stale\"");
      if (auto st = room(1); !st.ok()) return st;
      out.push_back({SeriesValue::Kind::kValue, v});
      continue;
    }
    // a, a+b or a-b, then N+1 samples. The step's sign is the operator between them.
    double a = 0, b = 0;
    size_t op = std::string_view::npos;
    for (size_t i = 1; i < head.size(); ++i) {
      char prev = static_cast<char>(std::tolower(static_cast<unsigned char>(head[i - 1])));
      if ((head[i] == '+' || head[i] == '-') && prev != 'e') {
        op = i;
        break;
      }
    }
    if (op == std::string_view::npos) {
      if (!ParseSigned(head, &a)) return Bad(it, "expected number or \"stale\"");
    } else {
      std::string_view step = head.substr(op + 1);
      if (step.empty() || step[0] == '+' || step[0] == '-') return Bad(it, "bad step");
      if (!ParseSigned(head.substr(0, op), &a) || !ParseSigned(step, &b)) {
        return Bad(it, "expected number or \"stale\"");
      }
      if (head[op] == '-') b = -b;
    }
    if (auto st = room(times + 1); !st.ok()) return st;
    // Each sample adds the step to the previous one, as promtool does (0.1+0.1x7 ends at
    // 0.7999999999999999, not 0.8): the float error accumulates the same way.
    out.push_back({SeriesValue::Kind::kValue, a});
    for (int64_t j = 1; j <= times; ++j) {
      a += b;
      out.push_back({SeriesValue::Kind::kValue, a});
    }
  }
  return out;
}

absl::StatusOr<Labels> ParseSeriesDesc(std::string_view text) {
  // "{}" is the empty label set (a scalar's, or an aggregation's without labels).
  if (Trim(text) == "{}") return Labels{};
  // A selector with only equality matchers is exactly a series description.
  auto e = Parse(text);
  if (!e.ok()) return e.status();
  if ((*e)->kind != Expr::Kind::kSelector || (*e)->offset_ms != 0 || (*e)->at != Expr::At::kNone) {
    return absl::InvalidArgumentError(
        StrCat("series \"", text, "\": expected name{label=\"value\", ...}"));
  }
  Labels labels;
  for (const Matcher& m : (*e)->matchers) {
    if (m.op != Matcher::Op::kEqual) {
      return absl::InvalidArgumentError(
          StrCat("series \"", text, "\": only label=\"value\" pairs describe a series"));
    }
    if (m.value.empty()) continue;  // an empty label is no label
    labels.emplace_back(m.name, m.value);
  }
  std::sort(labels.begin(), labels.end());
  for (size_t i = 1; i < labels.size(); ++i) {
    if (labels[i].first == labels[i - 1].first) {
      return absl::InvalidArgumentError(
          StrCat("series \"", text, "\": label \"", labels[i].first, "\" given twice"));
    }
  }
  return labels;
}

}  // namespace bulwark::observe::promql
