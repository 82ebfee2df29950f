// `bulwark rules test FILE...`: rule unit tests in the format of `promtool test rules`
// (Prometheus 2.42), run the way promtool runs them:
//  - input series are loaded at 0, interval, 2·interval, ... (`a+bxN` notation, `_` skips a
//    sample, `stale` writes a staleness marker), each only once evaluation reaches its time;
//  - every rule group is evaluated at 0, evaluation_interval, ... up to the largest eval_time
//    (groups in `group_eval_order` if given, else in file order);
//  - an alert_rule_test compares the firing alerts of the named alert (labels, annotations)
//    at the evaluation at or just before its eval_time;
//  - a promql_expr_test runs its expression at eval_time once every evaluation is done and
//    compares the samples exactly (values bit for bit, as promtool does);
//  - subqueries without a step use one minute, the lookback is 5 minutes.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace bulwark::observe::rules {

// Runs every test file; prints promtool-style results to `out`. True when all passed.
bool RunRuleTests(const std::vector<std::string>& files, std::ostream& out);

// `bulwark rules check FILE...`: loads rule files (mixed Alertmanager content allowed) and
// reports every error. True when all loaded.
bool CheckRuleFiles(const std::vector<std::string>& files, std::ostream& out);

}  // namespace bulwark::observe::rules
