// The `observe:` block of bulwark's configuration: the series store, rule files, alert routing
// and scraping.
//
//   observe:
//     evaluation_interval: 15s      # sampling and rule evaluation (Prometheus's global default)
//     retention: 2h
//     max_series: 200000
//     max_samples: 20000000
//     external_labels: {cluster: eu-1}
//     external_url: https://bulwark.example.com
//     rule_files: [/etc/bulwark/rules/*.yml]   # Prometheus rule files; may carry an
//                                               # Alertmanager config beside their groups
//     alertmanager:
//       config_file: /etc/bulwark/alertmanager.yml
//       forward: [http://alertmanager:9093]     # real Alertmanagers get every alert too
//       resend_delay: 1m
//     scrape:
//       - job: postgres
//         targets: [127.0.0.1:9187]
//         metrics_path: /metrics
//         interval: 15s
//         timeout: 10s
//         sample_limit: 50000
//     disk_mounts: [/, /var/lib/postgresql]      # default: every real filesystem
//
// Rule files and the Alertmanager file are loaded with the configuration, so a bad rule fails
// `bulwark check-config` and a reload, with its file:line.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/config_reader.h"
#include "observe/alerting/config.h"
#include "observe/rules/rule_file.h"

namespace bulwark::observe {

struct ScrapeConfig {
  std::string job;
  std::vector<std::string> targets;        // host:port
  std::vector<std::string> targets_where;  // FILE:LINE:COL of each target
  std::string metrics_path = "/metrics";
  int64_t interval_ms = 0;  // 0: evaluation_interval
  int64_t timeout_ms = 10000;
  size_t sample_limit = 50000;
};

// Limits of the query API (/api/v1/query and query_range), with Prometheus's flag names and
// defaults: --query.max-samples, --query.timeout, --query.max-concurrency.
struct QueryLimitsConfig {
  size_t max_samples = 50000000;  // samples one query may hold, its result included
  int64_t timeout_ms = 120000;    // from arrival, waiting for a free slot included
  int max_concurrency = 20;       // queries running at once; the others wait
};

struct ObserveConfig {
  bool enabled = true;
  QueryLimitsConfig query;
  int64_t evaluation_interval_ms = 15000;
  int64_t retention_ms = 2 * 3600 * 1000;
  size_t max_series = 200000;
  size_t max_samples = 20000000;
  std::map<std::string, std::string> external_labels;
  std::string external_url;             // default: http://<admin listen address>
  std::vector<std::string> rule_files;  // as written (globs)
  std::vector<std::shared_ptr<const rules::RuleGroup>> groups;
  std::string alertmanager_file;
  std::shared_ptr<const alerting::AlertmanagerConfig> alertmanager;  // null: no routing
  std::vector<std::string> forward;
  std::vector<std::string> forward_where;  // FILE:LINE:COL of each URL
  int64_t resend_delay_ms = 60000;
  std::vector<ScrapeConfig> scrape;
  std::vector<std::string> disk_mounts;
};

// Reads `node` (the `observe:` mapping) into `out`, loading rule files and the Alertmanager
// configuration; errors go to `ctx`. Relative paths are taken from
// the configuration file's directory (ConfigContext::Resolve).
void LoadObserveConfig(ConfigContext& ctx, const YAML::Node& node, ObserveConfig* out);

}  // namespace bulwark::observe
