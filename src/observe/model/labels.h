// Prometheus's data model (its model/labels and common/model packages): label sets, the names
// and numbers allowed in them, and label matchers. Shared by the series store, PromQL, rules,
// the exposition reader and the Alertmanager, none of which needs the PromQL syntax tree.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace re2 {
class RE2;
}

namespace bulwark::observe {

// Label pairs sorted by name; the metric name is the "__name__" label.
using Labels = std::vector<std::pair<std::string, std::string>>;

// The value of `name`, or null.
const std::string* GetLabel(const Labels& labels, std::string_view name);
// Sets `name` (keeping the order); an empty value removes the label, as Prometheus does.
void SetLabel(Labels* labels, std::string_view name, std::string_view value);

// [a-zA-Z_][a-zA-Z0-9_]* and [a-zA-Z_:][a-zA-Z0-9_:]*.
bool IsValidLabelName(std::string_view name);
bool IsValidMetricName(std::string_view name);

// Go's strconv.ParseFloat, as Prometheus reads `le` labels and sample values: decimal and hex
// numbers, Inf/Infinity/NaN in any case with an optional sign; false for anything else.
bool ParseGoFloat(std::string_view s, double* out);

// A label matcher: {name="value"}, !=, =~, !~.
struct Matcher {
  enum class Op : uint8_t { kEqual, kNotEqual, kRegex, kNotRegex };
  Op op = Op::kEqual;
  std::string name;
  std::string value;
  // For the regex ops: `value` anchored at both ends, as Prometheus anchors label regexes.
  std::shared_ptr<const re2::RE2> re;

  bool Matches(std::string_view v) const;
  // Whether an absent label (the empty value) matches: `{a=""}`, `{a!="x"}`, `{a=~".*"}`.
  bool MatchesEmpty() const { return Matches(""); }
};
const char* MatcherOpName(Matcher::Op op);  // "=", "!=", "=~", "!~"

}  // namespace bulwark::observe
