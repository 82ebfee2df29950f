// Label sets and the names and numbers Prometheus allows in them, shared by the store, the
// evaluator, rule files and the exposition reader.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bulwark::observe::promql {

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

}  // namespace bulwark::observe::promql
