// Alert label and annotation templates: the part of Go's text/template that Prometheus rule
// files use, with Prometheus's functions. Supported:
//   {{ .Labels.job }} {{ $labels.job }} {{ $value }} {{ .Value }} {{ $externalLabels.x }}
//   pipelines: {{ $value | humanizePercentage }}, calls: {{ printf "%.2f" $value }}
//   {{ if ... }} / {{ else if ... }} / {{ else }} / {{ end }}, {{ $x := ... }}, {{/* comment */}},
//   trim markers {{- and -}}
// Functions: humanize, humanize1024, humanizeDuration, humanizePercentage, humanizeTimestamp,
// printf, print, toUpper, toLower, title, match, reReplaceAll, stripPort, eq, ne, lt, le, gt,
// ge, and, or, not, len, index, parseDuration. A missing label is the empty string
// (Prometheus runs templates with missingkey=zero). Query functions (`query`, `first`, ...) are
// not supported: a template using them fails to parse, so the rule file is refused at load.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace bulwark::observe::rules {

struct TemplateData {
  const std::map<std::string, std::string>* labels = nullptr;
  const std::map<std::string, std::string>* external_labels = nullptr;
  std::string external_url;
  double value = 0;
};

class Template {
 public:
  // Parses `text`; `name` appears in errors as Go names templates ("__alert_HighLoad").
  static absl::StatusOr<std::unique_ptr<Template>> Parse(std::string_view name,
                                                         std::string_view text);
  ~Template();
  // Expands with `data`. An error (a function refusing its argument) is returned; Prometheus
  // then uses "<error expanding template: ...>" as the text.
  absl::StatusOr<std::string> Expand(const TemplateData& data) const;

  struct Node;

 private:
  Template() = default;
  std::string name_;
  std::unique_ptr<Node> root_;
};

// Prometheus's template functions, exposed for tests.
std::string Humanize(double v);
std::string Humanize1024(double v);
std::string HumanizeDuration(double v);
std::string HumanizePercentage(double v);
// Go's fmt for one verb, e.g. FormatGo("%.4g", 12.5).
std::string FormatGoG4(double v);

}  // namespace bulwark::observe::rules
