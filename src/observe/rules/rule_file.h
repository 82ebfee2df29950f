// Prometheus rule files, loaded as Prometheus 2.42 loads them (rulefmt): `groups` of
// alerting and recording rules with `interval`, `limit`, `for`, `keep_firing_for`, `labels`
// and `annotations`; the same validation (a recording rule's name must be a metric name, no
// annotations on recording rules, templates must parse, ...) with errors that name
// FILE:LINE:COL, the group and the rule.
//
// A file may also carry an Alertmanager configuration beside its groups (the AlkaidSYS
// alerts.yml mixes them): with `allow_alertmanager` the Alertmanager keys are handed back as
// their own YAML document instead of being refused.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "observe/promql/ast.h"
#include "observe/promql/series_notation.h"
#include "observe/template/template.h"

namespace bulwark::observe::rules {

using tmpl::Template;
using tmpl::TemplateData;

using observe::Labels;

struct Rule {
  enum class Kind { kRecord, kAlert };
  Kind kind = Kind::kRecord;
  std::string name;  // `record` or `alert`
  std::string expr_text;
  std::unique_ptr<promql::Expr> expr;
  int64_t for_ms = 0;
  int64_t keep_firing_for_ms = 0;
  Labels labels;       // sorted by name; values are templates for alerts
  Labels annotations;  // sorted by name
  std::vector<std::unique_ptr<Template>> label_templates;       // alerts: one per label
  std::vector<std::unique_ptr<Template>> annotation_templates;  // one per annotation
  int line = 0;
};

struct RuleGroup {
  std::string name;
  std::string file;
  int64_t interval_ms = 0;  // 0: the global evaluation interval
  int limit = 0;            // 0: no limit on series/alerts per rule
  std::vector<Rule> rules;
};

struct RuleFileOptions {
  bool allow_alertmanager = false;
};

struct RuleFile {
  std::vector<RuleGroup> groups;
  // With allow_alertmanager: the file's Alertmanager keys (route, receivers, ...) as YAML
  // text, with the line numbers of the original file preserved by blank-line padding so
  // errors still point at the right line. Empty when the file has none.
  std::string alertmanager_yaml;
};

// Every error found, one per line, each "FILE:LINE:COL: ...".
absl::StatusOr<RuleFile> LoadRuleFile(const std::string& path, const RuleFileOptions& options = {});
absl::StatusOr<RuleFile> ParseRuleFile(const std::string& path, const std::string& text,
                                       const RuleFileOptions& options = {});

using observe::IsValidLabelName;
using observe::IsValidMetricName;

}  // namespace bulwark::observe::rules
