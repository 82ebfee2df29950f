// The observe plane at run time, on the control thread's loop:
//  - every evaluation_interval it samples bulwark's own metrics (the registry's text, with
//    job="bulwark" and instance=<admin address>, plus up=1) into the series store; scrape
//    targets are fetched on a separate thread and appended the same way, with up=0|1;
//  - rule groups are evaluated on their interval; firing and resolved alerts are sent as
//    Prometheus sends them (every resend_delay while active, ends_at = 4 × max(interval,
//    resend_delay) ahead) to the built-in Alertmanager and to the real ones configured under
//    `forward`;
//  - the built-in Alertmanager (Dispatcher) routes, groups, inhibits, silences and hands
//    notifications to the Notifier thread, whose outcomes come back to this loop.
// Not thread-safe: every call happens on the loop's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "admin/admin_server.h"
#include "core/event_loop.h"
#include "observe/alerting/dispatcher.h"
#include "observe/alerting/notifier.h"
#include "observe/config.h"
#include "observe/metrics.h"
#include "observe/query_service.h"
#include "observe/rules/group.h"
#include "observe/system_metrics.h"
#include "observe/tsdb/store.h"

namespace bulwark::observe {

class Observer {
 public:
  // `instance` labels bulwark's own samples (and is the default external URL's host). Scrape
  // targets and receivers written with host names resolve through `pins` (may be null).
  Observer(EventLoop* loop, Registry* registry, std::string instance, HostPins* pins = nullptr);
  ~Observer();
  Observer(const Observer&) = delete;
  Observer& operator=(const Observer&) = delete;

  // Applies a configuration (at start and on every reload). Rule state (pending/firing alerts)
  // carries over for rules whose group, name and expression are unchanged.
  void Reload(std::shared_ptr<const ObserveConfig> config);
  void Start();
  void Stop();

  // Admin API (Prometheus and Alertmanager compatible JSON).
  std::string RulesJson() const;  // GET /api/v1/rules
  // /api/v1/rules, /api/v1/query[_range], /api/v1/observe/status, /api/v2/alerts, silences.
  void RegisterAdminRoutes(admin::AdminServer& admin);
  // GET /api/v1/query and /api/v1/query_range: runs on a query thread (query_service.h) within
  // observe.query's limits; `done` is called on the control loop.
  void SubmitQuery(QueryRequest q, std::function<void(QueryAnswer)> done);
  int64_t query_timeout_ms() const { return config_ ? config_->query.timeout_ms : 120000; }
  std::string AlertsV2Json() const;  // GET /api/v2/alerts
  // POST /api/v2/alerts: alerts from Prometheus or another bulwark. Returns "" or an error.
  std::string PostAlerts(const std::string& body);
  std::string SilencesJson() const;  // GET /api/v2/silences
  // POST /api/v2/silences: returns the id, or sets *error.
  std::string PostSilence(const std::string& body, std::string* error);
  bool ExpireSilence(const std::string& id);
  std::string StatusJson() const;  // store and evaluation summary for the dashboard

  void Collect(std::string* out) const;  // bulwark_rule_*, alertmanager_*, bulwark_tsdb_*

  const tsdb::Store& store() const { return *store_; }

 private:
  // A finished scrape, ingested at once or, while a query step holds the store, at the next tick.
  struct ScrapeResult {
    observe::Labels extra;
    std::string body, error;
    size_t sample_limit = 0;
    int64_t now_ms = 0;
    double took = 0;
    bool ok = false;
  };
  struct GroupRun {
    std::shared_ptr<const rules::RuleGroup> def;
    std::unique_ptr<rules::GroupEvaluator> eval;
    int64_t next_ms = 0;
    int64_t interval_ms = 0;
    uint64_t evaluations = 0, failures = 0, missed = 0;
  };

  void Tick();
  void Sample(int64_t now_ms);
  void Scrape(const ScrapeConfig& job, int64_t now_ms);
  void IngestScrape(const ScrapeResult& r);
  void Ingest(const observe::Labels& extra, const std::string& text, int64_t now_ms, size_t limit,
              std::string* error);
  void EvalGroup(GroupRun& g, int64_t now_ms);
  void SendAlerts(GroupRun& g, int64_t now_ms);
  void Deliver(alerting::Notification n);
  rules::EvalContext Context() const;
  std::string ExternalUrl() const;

  EventLoop* loop_;
  Registry* registry_;
  std::string instance_;
  int collector_id_ = -1;
  std::shared_ptr<const ObserveConfig> config_;
  std::unique_ptr<tsdb::Store> store_;
  StoreGate gate_;
  std::unique_ptr<QueryService> queries_;  // after store_ and gate_: stopped before them
  std::vector<ScrapeResult> pending_scrapes_;
  uint64_t write_deferrals_ = 0;  // ticks put off because a query step held the store
  uint64_t queries_total_ = 0;
  std::unique_ptr<SystemMetrics> system_;
  std::vector<std::string> system_mounts_;
  std::vector<GroupRun> groups_;
  std::unique_ptr<alerting::Dispatcher> dispatcher_;
  HostPins* const pins_;
  std::unique_ptr<alerting::Notifier> notifier_;
  std::unique_ptr<alerting::Notifier> scraper_;
  Timer timer_;
  bool running_ = false;
  int64_t next_sample_ms_ = 0;
  std::map<std::string, int64_t> next_scrape_ms_;
  // Counters.
  uint64_t samples_ingested_ = 0, scrapes_ = 0, scrape_failures_ = 0;
  uint64_t alerts_sent_ = 0, alerts_forward_failed_ = 0;
  double last_sample_s_ = 0;
  // Shared with callbacks that may outlive a reload or this object's destruction.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace bulwark::observe
