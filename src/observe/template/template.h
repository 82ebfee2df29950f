// Alert label and annotation templates: the part of Go's text/template that Prometheus rule
// files use, with Prometheus's functions. Supported:
//   {{ .Labels.job }} {{ $labels.job }} {{ $value }} {{ .Value }} {{ $externalLabels.x }}
//   pipelines: {{ $value | humanizePercentage }}, calls: {{ printf "%.2f" $value }}
//   {{ if ... }} / {{ else if ... }} / {{ else }} / {{ end }}, {{ range .Alerts }} (also
//   {{ range $i, $a := ... }}), {{ $x := ... }}, {{/* comment */}}, trim markers {{- and -}}
//   Alertmanager's helpers on its data: .Alerts.Firing, .Alerts.Resolved, .Labels.SortedPairs,
//   .Labels.Names, .Labels.Values
// Functions: humanize, humanize1024, humanizeDuration, humanizePercentage, humanizeTimestamp,
// printf, print, toUpper, toLower, title, match, reReplaceAll, stripPort, eq, ne, lt, le, gt,
// ge, and, or, not, len, index, parseDuration, join, safeHtml. A missing label is the empty string
// (Prometheus runs templates with missingkey=zero). Query functions (`query`, `first`, ...) are
// not supported: a template using them fails to parse, so the rule file is refused at load.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace bulwark::observe::tmpl {

// A value templates read: what Alertmanager's notification templates get (objects, lists,
// label maps) as well as Prometheus's alert data. Copies share their contents.
struct TemplateValue {
  using Map = std::map<std::string, std::string>;
  using Object = std::map<std::string, TemplateValue>;
  enum class Kind { kNil, kString, kFloat, kInt, kBool, kMap, kObject, kList };
  Kind kind = Kind::kNil;
  std::string s;
  double f = 0;
  int64_t i = 0;
  bool b = false;
  std::shared_ptr<const Map> m;
  std::shared_ptr<const Object> object;
  std::shared_ptr<const std::vector<TemplateValue>> list;

  static TemplateValue Str(std::string v);
  static TemplateValue Float(double v);
  static TemplateValue Int(int64_t v);
  static TemplateValue Bool(bool v);
  static TemplateValue MapOf(Map v);
  // Refers to `*v` without owning it; `v` must outlive the value.
  static TemplateValue MapRef(const Map* v);
  static TemplateValue ObjectOf(Object v);
  static TemplateValue ListOf(std::vector<TemplateValue> v);
};

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
  // Expands with `root` as the dot (Alertmanager's notification data); `vars` are extra
  // variables ("$x") visible to the template.
  absl::StatusOr<std::string> ExpandValue(
      const TemplateValue& root,
      const std::vector<std::pair<std::string, TemplateValue>>& vars = {}) const;

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
// Go's time.Time String() in UTC: "2006-01-02 15:04:05.999999999 +0000 UTC" (the fraction
// without trailing zeros), which templates print for times.
std::string GoTimeString(int64_t seconds, int64_t nanos);
// Go's fmt for one verb, e.g. FormatGo("%.4g", 12.5).
std::string FormatGoG4(double v);

}  // namespace bulwark::observe::tmpl
