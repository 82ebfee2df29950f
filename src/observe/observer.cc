#include "observe/observer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <thread>

#include "core/clock.h"
#include "core/log.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"
#include "observe/alerting/notify.h"
#include "observe/exposition.h"
#include "observe/promql/engine.h"
#include "observe/promql/parser.h"

namespace bulwark::observe {
namespace {

using json = nlohmann::json;
constexpr int64_t kTickMs = 250;

alerting::LabelMap ToMap(const observe::Labels& l) {
  return alerting::LabelMap(l.begin(), l.end());
}

}  // namespace

Observer::Observer(EventLoop* loop, Registry* registry, std::string instance, HostPins* pins)
    : loop_(loop), registry_(registry), instance_(std::move(instance)), pins_(pins) {
  timer_.set_callback([this] { Tick(); });
  collector_id_ = registry_->AddCollector([this](std::string* out) { Collect(out); });
}

Observer::~Observer() {
  *alive_ = false;
  Stop();
  queries_.reset();  // running queries end at their next step (or sample check) and are joined
  registry_->RemoveCollector(collector_id_);
  // The delivery threads stop before the loop and this object go away; outcomes still in
  // flight find alive_ false.
  notifier_.reset();
  scraper_.reset();
}

std::string Observer::ExternalUrl() const {
  if (config_ && !config_->external_url.empty()) return config_->external_url;
  return StrCat("http://", instance_);
}

rules::EvalContext Observer::Context() const {
  rules::EvalContext ctx;
  ctx.external_labels = config_->external_labels;
  ctx.external_url = ExternalUrl();
  // Subqueries without a step use the evaluation interval, as in Prometheus.
  ctx.query.default_subquery_step_ms = config_->evaluation_interval_ms;
  return ctx;
}

void Observer::Reload(std::shared_ptr<const ObserveConfig> config) {
  config_ = std::move(config);
  if (!store_) {
    tsdb::Store::Options o;
    o.retention_ms = config_->retention_ms;
    o.max_series = config_->max_series;
    o.max_samples = config_->max_samples;
    store_ = std::make_unique<tsdb::Store>(o);
    queries_ = std::make_unique<QueryService>(store_.get(), &gate_);
  }
  if (!system_ || config_->disk_mounts != system_mounts_) {
    system_ = std::make_unique<SystemMetrics>("/proc", config_->disk_mounts);
    system_mounts_ = config_->disk_mounts;
  }
  alerting::Notifier::Options delivery;
  delivery.pins = pins_;
  if (!notifier_) notifier_ = std::make_unique<alerting::Notifier>(delivery);
  if (!scraper_) scraper_ = std::make_unique<alerting::Notifier>(delivery);

  // Rule groups; alert state carries over for unchanged rules (same group, name, expression).
  std::vector<GroupRun> old;
  old.swap(groups_);
  int64_t now = WallMs();
  for (const auto& def : config_->groups) {
    GroupRun g;
    g.def = def;
    g.eval = std::make_unique<rules::GroupEvaluator>(def.get());
    g.interval_ms = def->interval_ms > 0 ? def->interval_ms : config_->evaluation_interval_ms;
    g.next_ms = now + g.interval_ms;
    for (GroupRun& o : old) {
      if (o.def->name != def->name || o.def->file != def->file) continue;
      g.next_ms = o.next_ms;
      g.evaluations = o.evaluations;
      g.failures = o.failures;
      g.missed = o.missed;
      for (size_t i = 0; i < def->rules.size(); ++i) {
        for (size_t j = 0; j < o.def->rules.size(); ++j) {
          const rules::Rule& a = def->rules[i];
          const rules::Rule& b = o.def->rules[j];
          if (a.name == b.name && a.expr_text == b.expr_text && a.kind == b.kind) {
            g.eval->mutable_states()[i] = std::move(o.eval->mutable_states()[j]);
          }
        }
      }
    }
    groups_.push_back(std::move(g));
  }

  if (config_->alertmanager) {
    if (!dispatcher_) {
      std::weak_ptr<bool> alive = alive_;
      dispatcher_ = std::make_unique<alerting::Dispatcher>(
          config_->alertmanager, [this](alerting::Notification n) { Deliver(std::move(n)); });
    } else {
      dispatcher_->SetConfig(config_->alertmanager, now);
    }
  } else {
    dispatcher_.reset();
  }
}

void Observer::Start() {
  if (running_ || !config_ || !config_->enabled) return;
  running_ = true;
  next_sample_ms_ = WallMs();
  loop_->ArmTimer(&timer_, 0);
}

void Observer::Stop() {
  if (!running_) return;
  running_ = false;
  loop_->CancelTimer(&timer_);
  gate_.CancelWriteRequest();
}

void Observer::Tick() {
  // The store is written only here, between query steps: when one is running, new steps hold
  // off and the tick comes back in 2 ms, so neither side waits on the other for long and this
  // thread (health checks, the admin API) never waits at all.
  if (!gate_.TryWriteLock()) {
    ++write_deferrals_;
    if (running_) loop_->ArmTimer(&timer_, 2);
    return;
  }
  for (const ScrapeResult& r : pending_scrapes_) IngestScrape(r);
  pending_scrapes_.clear();
  int64_t now = WallMs();
  if (now >= next_sample_ms_) {
    Sample(now);
    next_sample_ms_ = std::max(next_sample_ms_ + config_->evaluation_interval_ms, now + 1);
    store_->Trim(now);
  }
  for (const ScrapeConfig& job : config_->scrape) {
    int64_t interval = job.interval_ms > 0 ? job.interval_ms : config_->evaluation_interval_ms;
    int64_t& next = next_scrape_ms_[job.job];
    if (now >= next) {
      Scrape(job, now);
      next = std::max(next + interval, now + 1);
    }
  }
  for (GroupRun& g : groups_) {
    if (now < g.next_ms) continue;
    EvalGroup(g, now);
    g.next_ms += g.interval_ms;
    if (g.next_ms <= now) {
      // Evaluation fell behind by whole intervals: skip them, as Prometheus counts
      // prometheus_rule_group_iterations_missed_total.
      g.missed += static_cast<uint64_t>((now - g.next_ms) / g.interval_ms + 1);
      g.next_ms = now + g.interval_ms;
    }
  }
  if (dispatcher_) dispatcher_->Tick(now);
  gate_.WriteUnlock();
  if (running_) loop_->ArmTimer(&timer_, kTickMs);
}

void Observer::Ingest(const observe::Labels& extra, const std::string& text, int64_t now_ms,
                      size_t limit, std::string* error) {
  // First parse everything, so a target over its sample limit adds nothing (Prometheus fails
  // such a scrape as a whole).
  std::vector<ExpositionSample> samples;
  absl::Status st =
      ParseExposition(text, limit, [&](ExpositionSample& s) { samples.push_back(s); });
  if (!st.ok()) {
    *error = std::string(st.message());
    return;
  }
  for (ExpositionSample& s : samples) {
    observe::Labels l = std::move(s.labels);
    for (const auto& [key, v] : extra) {
      // A target's own job/instance labels are kept as exported_job/exported_instance
      // (Prometheus's honor_labels: false).
      const std::string& k = key;
      auto it = std::find_if(l.begin(), l.end(), [&k](const auto& p) { return p.first == k; });
      if (it != l.end()) {
        std::string old = it->second;
        l.erase(it);
        l.emplace_back("exported_" + k, old);
      }
      l.emplace_back(k, v);
    }
    std::sort(l.begin(), l.end());
    if (store_->Append(l, s.timestamp_ms.value_or(now_ms), s.value)) ++samples_ingested_;
  }
}

void Observer::Sample(int64_t now_ms) {
  int64_t start_ns = MonotonicNs();
  observe::Labels extra = {{"instance", instance_}, {"job", "bulwark"}};
  std::string error;
  Ingest(extra, registry_->Render(), now_ms, std::numeric_limits<size_t>::max(), &error);
  if (!error.empty()) LogWarn("observe: reading bulwark's own metrics failed: ", error);
  store_->Append({{"__name__", "up"}, {"instance", instance_}, {"job", "bulwark"}}, now_ms,
                 error.empty() ? 1 : 0);
  last_sample_s_ = static_cast<double>(MonotonicNs() - start_ns) / 1e9;
}

void Observer::Scrape(const ScrapeConfig& job, int64_t now_ms) {
  for (const std::string& target : job.targets) {
    ++scrapes_;
    auto body = std::make_shared<std::string>();
    alerting::Notifier::Job j;
    j.integration = "scrape";
    j.get = true;
    j.url = StrCat("http://", target, job.metrics_path);
    j.timeout_ms = job.timeout_ms;
    j.max_answer = 256 * 1024 * 1024;
    j.on_body = [body](std::string b) { *body = std::move(b); };
    std::weak_ptr<bool> alive = alive_;
    int64_t started = MonotonicMs();
    j.done = [this, alive, body, target, job, now_ms, started](bool ok, const std::string& err,
                                                               int) {
      double took = static_cast<double>(MonotonicMs() - started) / 1000;
      loop_->Post([this, alive, body, target, job, now_ms, ok, err, took] {
        if (alive.expired() || !*alive.lock()) return;
        ScrapeResult r;
        r.extra = {{"instance", target}, {"job", job.job}};
        r.body = std::move(*body);
        r.error = ok ? "" : err;
        r.ok = ok;
        r.sample_limit = job.sample_limit;
        r.now_ms = now_ms;
        r.took = took;
        if (!gate_.TryWriteLock()) {
          pending_scrapes_.push_back(std::move(r));  // a query step holds the store
          return;
        }
        IngestScrape(r);
        gate_.WriteUnlock();
      });
    };
    scraper_->Submit(std::move(j));
  }
}

void Observer::IngestScrape(const ScrapeResult& r) {
  std::string error = r.error;
  if (r.ok) Ingest(r.extra, r.body, r.now_ms, r.sample_limit, &error);
  if (!error.empty()) {
    ++scrape_failures_;
    LogWarn("observe: scrape of ", r.extra[0].second, " (job ", r.extra[1].second,
            ") failed: ", error);
  }
  auto with = [&](const char* name) {
    observe::Labels l = r.extra;
    l.emplace_back("__name__", name);
    std::sort(l.begin(), l.end());
    return l;
  };
  store_->Append(with("up"), r.now_ms, error.empty() ? 1 : 0);
  store_->Append(with("scrape_duration_seconds"), r.now_ms, r.took);
}

void Observer::EvalGroup(GroupRun& g, int64_t now_ms) {
  rules::EvalContext ctx = Context();
  g.eval->Eval(now_ms, store_.get(), ctx);
  ++g.evaluations;
  for (const rules::RuleState& st : g.eval->states()) {
    if (!st.last_error.empty()) ++g.failures;
  }
  SendAlerts(g, now_ms);
}

void Observer::SendAlerts(GroupRun& g, int64_t now_ms) {
  // Prometheus's notifier: an active alert is (re)sent when it fired, when it resolved, and
  // every resend_delay; it stays valid for 4 × max(interval, resend_delay), so two missed
  // evaluations do not resolve it.
  int64_t resend = config_->resend_delay_ms;
  int64_t valid_for = 4 * std::max(g.interval_ms, resend);
  std::vector<alerting::OutgoingAlert> out;
  for (size_t i = 0; i < g.def->rules.size(); ++i) {
    const rules::Rule& rule = g.def->rules[i];
    if (rule.kind != rules::Rule::Kind::kAlert) continue;
    for (auto& [h, a] : g.eval->mutable_states()[i].active) {
      if (a.state == rules::AlertState::kPending) continue;
      bool needs = a.resolved_at > a.last_sent_at || a.last_sent_at + resend < now_ms;
      if (!needs) continue;
      a.last_sent_at = now_ms;
      a.valid_until = now_ms + valid_for;
      alerting::OutgoingAlert o;
      o.labels = ToMap(a.labels);
      for (const auto& [k, v] : config_->external_labels) o.labels.emplace(k, v);
      o.annotations = ToMap(a.annotations);
      o.starts_at_ms = a.fired_at;
      o.ends_at_ms = a.state == rules::AlertState::kInactive ? a.resolved_at : a.valid_until;
      o.generator_url =
          StrCat(ExternalUrl(), "/graph?g0.expr=", UrlQueryEscape(rule.expr_text), "&g0.tab=1");
      out.push_back(std::move(o));
    }
  }
  if (out.empty()) return;
  alerts_sent_ += out.size();
  if (dispatcher_) {
    for (const alerting::OutgoingAlert& o : out) {
      alerting::Alert a;
      a.labels = o.labels;
      a.annotations = o.annotations;
      a.starts_at_ms = o.starts_at_ms;
      a.ends_at_ms = o.ends_at_ms;
      a.generator_url = o.generator_url;
      dispatcher_->Put(std::move(a), now_ms);
    }
  }
  if (!config_->forward.empty()) {
    std::string body = alerting::AlertmanagerV2Payload(out);
    for (const std::string& am : config_->forward) {
      alerting::Notifier::Job j;
      j.integration = "alertmanager";
      j.url = am + "/api/v2/alerts";
      j.body = body;
      j.deadline_ms = MonotonicMs() + 10000;
      std::weak_ptr<bool> alive = alive_;
      j.done = [this, alive, am](bool ok, const std::string& err, int) {
        if (ok) return;
        loop_->Post([this, alive, am, err] {
          if (alive.expired() || !*alive.lock()) return;
          ++alerts_forward_failed_;
          LogWarn("observe: sending alerts to Alertmanager ", am, " failed: ", err);
        });
      };
      notifier_->Submit(std::move(j));
    }
  }
}

void Observer::Deliver(alerting::Notification n) {
  const alerting::Receiver* r =
      config_->alertmanager ? config_->alertmanager->FindReceiver(n.receiver) : nullptr;
  if (r == nullptr) return;
  alerting::Notifier::Job j;
  j.integration = n.integration;
  std::string ext = ExternalUrl();
  bool send_resolved = true;
  size_t i = static_cast<size_t>(n.index);
  if (n.integration == "webhook" && i < r->webhooks.size()) {
    send_resolved = r->webhooks[i].send_resolved;
    j.url = r->webhooks[i].url;
    j.body = alerting::WebhookPayload(n, r->webhooks[i], ext);
  } else if (n.integration == "slack" && i < r->slack.size()) {
    send_resolved = r->slack[i].send_resolved;
    j.url = r->slack[i].api_url;
    j.body = alerting::SlackPayload(n, r->slack[i], ext);
  } else if (n.integration == "email" && i < r->email.size()) {
    const alerting::EmailConfig& c = r->email[i];
    send_resolved = c.send_resolved;
    bool implicit_tls = EndsWith(c.smarthost, ":465");
    j.url = StrCat(implicit_tls ? "smtps://" : "smtp://", c.smarthost);
    j.mail_from = c.from;
    for (const std::string& to : Split(c.to, ',', true)) j.rcpt.emplace_back(Trim(to));
    j.user = c.auth_username;
    j.password = c.auth_password;
    j.require_tls = c.require_tls && !implicit_tls;
    j.body = alerting::EmailMessage(n, c, ext, WallMs(), StrCat(n.id, ".", WallMs()));
  } else if (n.integration == "dingtalk" && i < r->dingtalk.size()) {
    send_resolved = r->dingtalk[i].send_resolved;
    j.url = alerting::DingTalkUrl(r->dingtalk[i], WallMs());
    j.body = alerting::DingTalkPayload(n, r->dingtalk[i], ext);
    j.check = [](const std::string& body, std::string* error) {
      json a = json::parse(body, nullptr, false);
      if (a.is_object() && a.contains("errcode") && a["errcode"].is_number() && a["errcode"] != 0) {
        *error = StrCat("DingTalk refused the message: ", a.value("errmsg", std::string("?")));
        return false;
      }
      return true;
    };
  } else {
    return;
  }
  if (alerting::AlertsToSend(n, send_resolved).empty()) {
    // Only resolved alerts and send_resolved off: nothing goes out, but the notification log
    // records them (Alertmanager's retry stage does the same).
    if (dispatcher_) dispatcher_->Delivered(n, true, WallMs());
    return;
  }
  j.deadline_ms = MonotonicMs() + std::max<int64_t>(n.deadline_ms - n.now_ms, 1000);
  std::weak_ptr<bool> alive = alive_;
  auto shared = std::make_shared<alerting::Notification>(std::move(n));
  j.done = [this, alive, shared](bool ok, const std::string& err, int attempts) {
    loop_->Post([this, alive, shared, ok, err, attempts] {
      if (alive.expired() || !*alive.lock()) return;
      if (!ok) {
        LogWarn("observe: notification to ", shared->receiver, " (", shared->integration,
                ") failed after ", attempts, " attempt", attempts == 1 ? "" : "s", ": ", err);
      }
      if (dispatcher_) dispatcher_->Delivered(*shared, ok, WallMs());
    });
  };
  notifier_->Submit(std::move(j));
}

void Observer::Collect(std::string* out) const {
  if (system_) system_->Collect(out);
  if (!store_) return;
  tsdb::Store::Stats st = store_->stats();
  auto gauge = [out](std::string_view name, std::string_view type, std::string_view help,
                     double v) {
    AppendHeader(out, name, type, help);
    StrAppend(out, name, " ");
    AppendValue(out, v);
    out->push_back('\n');
  };
  gauge("bulwark_tsdb_series", "gauge", "Series in the in-memory store.",
        static_cast<double>(st.series));
  gauge("bulwark_tsdb_samples", "gauge", "Samples in the in-memory store.",
        static_cast<double>(st.samples));
  gauge("bulwark_tsdb_memory_bytes", "gauge", "Estimated memory held by the in-memory store.",
        static_cast<double>(st.bytes));
  gauge("bulwark_tsdb_out_of_order_samples_total", "counter",
        "Samples refused because they were not newer than their series' last one.",
        static_cast<double>(st.out_of_order));
  gauge("bulwark_tsdb_series_refused_total", "counter",
        "New series refused over observe.max_series.", static_cast<double>(st.series_refused));
  gauge("bulwark_tsdb_samples_trimmed_total", "counter",
        "Samples dropped before their retention ended, over observe.max_samples.",
        static_cast<double>(st.samples_trimmed));
  gauge("bulwark_tsdb_samples_ingested_total", "counter",
        "Samples sampled or scraped into the store.", static_cast<double>(samples_ingested_));
  gauge("bulwark_scrapes_total", "counter", "Scrapes of observe.scrape targets.",
        static_cast<double>(scrapes_));
  gauge("bulwark_queries_total", "counter", "Queries received by /api/v1/query and query_range.",
        static_cast<double>(queries_total_));
  gauge("bulwark_queries_running", "gauge", "Queries running on query threads.",
        static_cast<double>(queries_ ? queries_->running() : 0));
  gauge("bulwark_queries_waiting", "gauge",
        "Queries waiting for a place (observe.query.max_concurrency).",
        static_cast<double>(queries_ ? queries_->waiting() : 0));
  gauge("bulwark_tsdb_write_deferrals_total", "counter",
        "Store updates put off for a moment because a query step was reading the store.",
        static_cast<double>(write_deferrals_));
  gauge("bulwark_scrape_failures_total", "counter",
        "Scrapes that failed (network, status, parse, limit).",
        static_cast<double>(scrape_failures_));
  gauge("bulwark_self_sample_duration_seconds", "gauge",
        "Time the last sampling of bulwark's own metrics took.", last_sample_s_);
  gauge("prometheus_notifications_sent_total", "counter",
        "Alerts sent by the rule evaluator (to the built-in and forwarded Alertmanagers).",
        static_cast<double>(alerts_sent_));
  gauge("prometheus_notifications_errors_total", "counter",
        "Batches of alerts a forward Alertmanager refused.",
        static_cast<double>(alerts_forward_failed_));
  // Rule groups, with Prometheus's metric names.
  // One family with a sample per rule group (labelled "file;name", as Prometheus does).
  auto per_group = [&](std::string_view name, std::string_view type, std::string_view help,
                       auto value) {
    AppendHeader(out, name, type, help);
    for (const GroupRun& g : groups_) {
      StrAppend(out, name, "{rule_group=\"");
      AppendLabelValue(out, StrCat(g.def->file, ";", g.def->name));
      out->append("\"} ");
      AppendValue(out, static_cast<double>(value(g)));
      out->push_back('\n');
    }
  };
  per_group("prometheus_rule_group_last_duration_seconds", "gauge",
            "The duration of the last rule group evaluation.",
            [](const GroupRun& g) { return g.eval->last_duration_s(); });
  per_group("prometheus_rule_evaluations_total", "counter", "Rule evaluations.",
            [](const GroupRun& g) { return g.evaluations * g.def->rules.size(); });
  per_group("prometheus_rule_evaluation_failures_total", "counter", "Rule evaluations that failed.",
            [](const GroupRun& g) { return g.failures; });
  per_group("prometheus_rule_group_iterations_missed_total", "counter",
            "Rule group evaluations skipped because the previous ones ran late.",
            [](const GroupRun& g) { return g.missed; });
  if (dispatcher_) {
    const auto& s = dispatcher_->stats();
    gauge("alertmanager_alerts_received_total", "counter",
          "Alerts the built-in Alertmanager received.", static_cast<double>(s.alerts_received));
    gauge("alertmanager_alerts_invalid_total", "counter", "Alerts refused as invalid.",
          static_cast<double>(s.alerts_invalid));
    size_t active = 0, suppressed = 0;
    for (const auto& a : dispatcher_->Alerts(WallMs())) {
      (a.silenced_by.empty() && a.inhibited_by.empty() ? active : suppressed)++;
    }
    AppendHeader(out, "alertmanager_alerts", "gauge", "Alerts by state.");
    StrAppend(out, "alertmanager_alerts{state=\"active\"} ", active, "\n");
    StrAppend(out, "alertmanager_alerts{state=\"suppressed\"} ", suppressed, "\n");
    size_t active_silences = 0;
    for (const auto& si : dispatcher_->silences())
      active_silences += si.State(WallMs()) == "active";
    gauge("alertmanager_silences_active", "gauge", "Active silences.",
          static_cast<double>(active_silences));
  }
  if (notifier_) {
    auto counters = notifier_->counters();
    // Alertmanager's notification families, by integration.
    auto per_integration = [&](std::string_view name, std::string_view help,
                               const std::atomic<uint64_t> alerting::Notifier::Counters::*field) {
      AppendHeader(out, name, "counter", help);
      for (const auto& [k, c] : counters) {
        StrAppend(out, name, "{integration=\"", k, "\"} ", (c->*field).load(), "\n");
      }
    };
    per_integration("alertmanager_notifications_total", "Notifications attempted, by integration.",
                    &alerting::Notifier::Counters::jobs);
    per_integration("alertmanager_notifications_failed_total",
                    "Notifications that failed after every retry, by integration.",
                    &alerting::Notifier::Counters::failed);
    per_integration("alertmanager_notification_requests_total",
                    "Delivery attempts, by integration.", &alerting::Notifier::Counters::requests);
    per_integration("alertmanager_notification_requests_failed_total",
                    "Delivery attempts that failed (each retry counts), by integration.",
                    &alerting::Notifier::Counters::requests_failed);
  }
}

}  // namespace bulwark::observe
