// Evaluation of rule groups, as Prometheus 2.42's rule manager evaluates them:
//  - rules run in order at each evaluation time; a recording rule's samples are written to the
//    store at that time (later rules of the group see them), with the metric name replaced and
//    the rule's labels applied;
//  - series a rule returned last time and not this time get a staleness marker;
//  - an alerting rule's result opens an alert per label set: pending, firing once it has been
//    active for `for`, and resolved when it disappears (after `keep_firing_for`, if set); the
//    rule writes ALERTS{alertstate=...} and ALERTS_FOR_STATE series; resolved alerts are kept
//    15 minutes so the notifier can send them as resolved;
//  - labels and annotations are Go templates with $labels, $value, $externalLabels.
//
// A GroupEvaluator is owned by whoever drives evaluation (the observe plane's loop, or the
// unit-test runner); it is not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "observe/promql/engine.h"
#include "observe/rules/rule_file.h"
#include "observe/tsdb/store.h"

namespace bulwark::observe::rules {

enum class AlertState { kInactive, kPending, kFiring };
const char* AlertStateName(AlertState s);  // "inactive", "pending", "firing"

struct Alert {
  Labels labels;       // sorted; includes alertname
  Labels annotations;  // sorted
  AlertState state = AlertState::kPending;
  double value = 0;
  int64_t active_at = 0;  // ms
  int64_t fired_at = 0;   // 0 = never
  int64_t resolved_at = 0;
  int64_t keep_firing_since = 0;
  int64_t last_sent_at = 0;
  int64_t valid_until = 0;
};

struct RuleState {
  std::string last_error;  // empty when healthy
  int64_t last_eval_ms = 0;
  double last_duration_s = 0;
  size_t last_samples = 0;
  // Alerting rules: alerts by label-set hash.
  absl::flat_hash_map<uint64_t, Alert> active;
  // Series written last time (for staleness markers).
  std::vector<Labels> previous;
};

struct EvalContext {
  promql::EvalOptions query;
  std::map<std::string, std::string> external_labels;
  std::string external_url;
};

class GroupEvaluator {
 public:
  explicit GroupEvaluator(const RuleGroup* group);

  // Evaluates every rule at `t_ms`, writing into `store`. Errors are kept per rule.
  void Eval(int64_t t_ms, tsdb::Store* store, const EvalContext& ctx);

  const RuleGroup& group() const { return *group_; }
  const std::vector<RuleState>& states() const { return states_; }
  std::vector<RuleState>& mutable_states() { return states_; }
  double last_duration_s() const { return last_duration_s_; }

 private:
  void EvalAlert(const Rule& rule, RuleState& st, const promql::QueryResult& res, int64_t t,
                 const EvalContext& ctx, std::vector<std::pair<Labels, double>>* out);

  const RuleGroup* group_;
  std::vector<RuleState> states_;
  double last_duration_s_ = 0;
};

// Expands an alert's label/annotation templates (for tests and the notifier).
std::string ExpandTemplate(const Template& t, const Labels& labels, double value,
                           const EvalContext& ctx);

}  // namespace bulwark::observe::rules
